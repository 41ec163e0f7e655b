"""The files every MLflow pyfunc model folder of a job holds besides its data.

``MLmodel`` and the environment files (``conda.yaml``, ``python_env.yaml``,
``requirements.txt``) are made once per job with MLflow, on the driver, then written into each
folder without it: workers that save thousands of models need not import MLflow, which costs
each of them seconds of start-up.
"""

from __future__ import annotations

import functools
import re
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ModelFiles", "environment_files", "requirements"]

_ENV_FILES = ("conda.yaml", "python_env.yaml", "requirements.txt")
_PER_MODEL_FIELDS = ("model_uuid", "utc_time_created")


def requirements() -> list[str]:
    """Pinned pip requirements of a saved model, computed once (inference costs seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("manymodels", "mlflow", "pandas", "numpy", "scikit-learn", "statsmodels",
                    "cloudpickle", "pyarrow"):  # fmt: skip
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


@dataclass(frozen=True)
class ModelFiles:
    """The ``MLmodel`` content and the environment files of a job's model folders.

    Made once with MLflow (:meth:`make`), then written into each folder without it
    (:meth:`write`): only the model's id and creation time differ from one folder to the next.
    """

    mlmodel: dict[str, Any]
    environment: dict[str, str]

    @classmethod
    def make(cls, loader_module: str, data: str, pip_requirements: list[str]) -> ModelFiles:
        """The files of models loaded by ``loader_module`` from ``data`` (a path inside the
        folder), as ``mlflow.pyfunc.save_model`` would write them."""
        from mlflow.models import Model
        from mlflow.pyfunc import add_to_model

        mlflow_model = Model()
        add_to_model(mlflow_model, loader_module=loader_module, data=data, conda_env="conda.yaml",
                     python_env="python_env.yaml", streamable=False)  # fmt: skip
        mlmodel = mlflow_model.to_dict()
        mlmodel["flavors"]["python_function"].setdefault("code", None)  # as save_model records
        for key in _PER_MODEL_FIELDS:
            mlmodel.pop(key, None)
        return cls(mlmodel, environment_files(tuple(pip_requirements)))

    def write(self, target: Path) -> None:
        """Write the files into ``target``, whose data is already in place."""
        for name, text in self.environment.items():
            (target / name).write_text(text, encoding="utf-8")
        # What MLflow stamps on each new model: a fresh id, and the UTC time without a zone.
        created = datetime.now(UTC).replace(tzinfo=None)
        mlmodel = {**self.mlmodel, "model_uuid": uuid.uuid4().hex, "utc_time_created": str(created)}
        _write_mlmodel(mlmodel, target / "MLmodel")


@functools.lru_cache(maxsize=4)
def environment_files(pip_requirements: tuple[str, ...]) -> dict[str, str]:
    """The text of ``conda.yaml``, ``python_env.yaml`` and ``requirements.txt`` for a saved
    model, computed once per process.

    ``mlflow.pyfunc.save_model`` makes the same files, but first compares each requirement with
    the installed packages by listing the files of every installed distribution: about 1.5 s of
    CPU in each process that saves a model, on the driver's critical path for a job bundle.
    MLflow's own environment helpers make the files without that scan; where a future MLflow
    lacks them, a throwaway ``save_model`` makes them instead.
    """
    try:
        return _environment_files_from_helpers(list(pip_requirements))
    except (ImportError, AttributeError, TypeError):
        return _environment_files_from_save_model(list(pip_requirements))


def _environment_files_from_helpers(pip_requirements: list[str]) -> dict[str, str]:
    from mlflow.utils.environment import _mlflow_conda_env, _PythonEnv

    conda = _mlflow_conda_env(additional_pip_deps=pip_requirements)
    # As ``_PythonEnv.to_yaml`` writes it: empty entries left out, keys in their own order.
    python_env = {key: value for key, value in _PythonEnv.current().to_dict().items() if value}
    return {
        "conda.yaml": yaml.safe_dump(conda, default_flow_style=False),
        "python_env.yaml": yaml.safe_dump(python_env, sort_keys=False, default_flow_style=False),
        "requirements.txt": "\n".join(_with_mlflow_pin(pip_requirements)),
    }


def _with_mlflow_pin(pip_requirements: list[str]) -> list[str]:
    # As save_model does: a model's requirements always name MLflow.
    names = {re.split(r"[^A-Za-z0-9._-]", line.strip(), maxsplit=1)[0].lower()
             for line in pip_requirements}  # fmt: skip
    if "mlflow" in names:
        return pip_requirements
    from importlib.metadata import version

    return [f"mlflow=={version('mlflow')}", *pip_requirements]


def _environment_files_from_save_model(pip_requirements: list[str]) -> dict[str, str]:
    import mlflow

    from manymodels.artifacts.entity_folder import LOADER_MODULE

    with tempfile.TemporaryDirectory(prefix="manymodels-env-") as scratch:
        folder = Path(scratch) / "model"
        mlflow.pyfunc.save_model(str(folder), loader_module=LOADER_MODULE,
                                 pip_requirements=pip_requirements)  # fmt: skip
        return {name: (folder / name).read_text(encoding="utf-8") for name in _ENV_FILES}


def _write_mlmodel(payload: dict[str, Any], path: Path) -> None:
    # What ``Model.save`` writes, through PyYAML's C emitter when it is built: the pure-Python
    # one MLflow uses costs about 2 ms a model, more than pickling the model itself.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    with open(path, "w", encoding="utf-8") as out:
        yaml.dump(payload, out, Dumper=dumper, default_flow_style=False)
