"""The files every MLflow pyfunc model folder of a job holds besides its data.

``MLmodel`` (with the signature), the environment files (``conda.yaml``, ``python_env.yaml``,
``requirements.txt``) and the package code under ``code/`` are made once per job with MLflow, on the driver, then written into each
folder without it: workers that save thousands of models need not import MLflow, which costs
each of them seconds of start-up.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from manymodels.artifacts.model_code import (
    CODE_DIR,
    loader_code,
    model_code,
    third_party_imports,
)

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

__all__ = [
    "INPUT_EXAMPLE",
    "SERVING_INPUT_EXAMPLE",
    "ModelFiles",
    "environment_files",
    "requirements",
]

_ENV_FILES = ("conda.yaml", "python_env.yaml", "requirements.txt")
# Where MLflow keeps a model's input example, and the same as a /invocations request body.
INPUT_EXAMPLE = "input_example.json"
SERVING_INPUT_EXAMPLE = "serving_input_example.json"
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
        signature: ModelSignature | None = None, input_example: bool = False,
    ) -> ModelFiles:  # fmt: skip
        """The files of models loaded by ``loader_module`` from ``data`` (a path inside the
        folder), as ``mlflow.pyfunc.save_model`` would write them with ``code_paths`` holding
        the package code the model needs and a loader module that hands over to
        ``loader_module`` (see :mod:`~manymodels.artifacts.model_code`), ``signature`` when given, and, with
        ``input_example``, the record of an input example that each folder holds in
        :data:`INPUT_EXAMPLE` and :data:`SERVING_INPUT_EXAMPLE` (written by its writer)."""
        from mlflow.models import Model
        from mlflow.pyfunc import add_to_model

        loader, loader_source = loader_code(loader_module)
        mlflow_model = Model(signature=signature)
        add_to_model(mlflow_model, loader_module=loader, data=data, code=CODE_DIR,
                     conda_env="conda.yaml", python_env="python_env.yaml", streamable=False)  # fmt: skip
        mlmodel = mlflow_model.to_dict()
        for key in _PER_MODEL_FIELDS:
            mlmodel.pop(key, None)
        if input_example:
            mlmodel["saved_input_example_info"] = {
                "artifact_path": INPUT_EXAMPLE, "pandas_orient": "split",
                "serving_input_path": SERVING_INPUT_EXAMPLE, "type": "dataframe",
            }  # fmt: skip
        code = {f"{loader}.py": loader_source, **model_code()}
        return cls(mlmodel, environment_files(tuple(pip_requirements)), code)

    def write(self, target: Path, code_from: Path | None = None) -> None:
        """Write the files into ``target``, whose data is already in place.

        Args:
            target: the model folder.
            code_from: the ``code`` folder of a model written before on the same filesystem,
                whose files are hard-linked rather than written again where possible: a job's
                models then share one copy of the package code on disk.
        """
        for name, text in self.environment.items():
            (target / name).write_text(text, encoding="utf-8")
        self._write_code(target / CODE_DIR, code_from)
        # What MLflow stamps on each new model: a fresh id, and the UTC time without a zone.
        created = datetime.now(UTC).replace(tzinfo=None)
        mlmodel = {**self.mlmodel, "model_uuid": uuid.uuid4().hex, "utc_time_created": str(created)}
        _write_mlmodel(mlmodel, target / "MLmodel")

    def _write_code(self, folder: Path, linked_from: Path | None) -> None:
        for relative, text in self.code.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if linked_from is not None:
                try:
                    os.link(linked_from / relative, path)
                    continue
                except OSError:  # moved away, another filesystem, or no hard links there
                    linked_from = None
            path.write_text(text, encoding="utf-8")


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
