"""The files every MLflow pyfunc model folder of a job holds besides its data.

``MLmodel`` (with the signature), the environment files (``conda.yaml``, ``python_env.yaml``,
``requirements.txt``) and the package code under ``code/`` are made once per job with MLflow, on the driver, then written into each
folder without it: workers that save thousands of models need not import MLflow, which costs
each of them seconds of start-up.
"""

from __future__ import annotations

import functools
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from manymodels.artifacts.model_code import CODE_DIR, model_code, third_party_imports

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

__all__ = ["ModelFiles", "environment_files", "requirements"]

_ENV_FILES = ("conda.yaml", "python_env.yaml", "requirements.txt")
_PER_MODEL_FIELDS = ("model_uuid", "utc_time_created")


def requirements() -> list[str]:
    """Pinned pip requirements of a saved model: published distributions only, computed once.

    They are the libraries that the shipped package code (see
    :mod:`~manymodels.artifacts.model_code`) imports, each pinned to its installed version,
    and never ``manymodels`` itself: the model carries the code it needs. (Inferring them with
    MLflow instead costs seconds per model.)
    """
    return list(_requirements())


@functools.lru_cache(maxsize=1)
def _requirements() -> tuple[str, ...]:
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    providers = packages_distributions()
    # pandas reads a bundle's Parquet manifest through pyarrow, an import no source names.
    names = {"mlflow", "pyarrow"}
    for module in third_party_imports():
        # A module several distributions provide (mlflow's is also in mlflow-skinny and
        # mlflow-tracing) is pinned as the distribution of its own name.
        candidates = providers.get(module, [module])
        names.add(module if module in candidates else sorted(candidates)[0])
    pins = []
    for name in sorted(names, key=str.lower):
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return tuple(pins)


@dataclass(frozen=True)
class ModelFiles:
    """The ``MLmodel`` content, the environment files and the shipped package code of a job's
    model folders.

    Made once with MLflow (:meth:`make`), then written into each folder without it
    (:meth:`write`): only the model's id and creation time differ from one folder to the next.
    """

    mlmodel: dict[str, Any]
    environment: dict[str, str]
    code: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(
        cls, loader_module: str, data: str, pip_requirements: list[str],
        signature: ModelSignature | None = None,
    ) -> ModelFiles:  # fmt: skip
        """The files of models loaded by ``loader_module`` from ``data`` (a path inside the
        folder), as ``mlflow.pyfunc.save_model`` would write them with ``code_paths`` holding
        the package code the model needs, and ``signature`` when given."""
        from mlflow.models import Model
        from mlflow.pyfunc import add_to_model

        mlflow_model = Model(signature=signature)
        add_to_model(mlflow_model, loader_module=loader_module, data=data, code=CODE_DIR,
                     conda_env="conda.yaml", python_env="python_env.yaml", streamable=False)  # fmt: skip
        mlmodel = mlflow_model.to_dict()
        for key in _PER_MODEL_FIELDS:
            mlmodel.pop(key, None)
        return cls(mlmodel, environment_files(tuple(pip_requirements)), model_code())

    def write(self, target: Path) -> None:
        """Write the files into ``target``, whose data is already in place."""
        for name, text in self.environment.items():
            (target / name).write_text(text, encoding="utf-8")
        for relative, text in self.code.items():
            path = target / CODE_DIR / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
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
