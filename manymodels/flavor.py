"""Saving entity models as MLflow pyfunc models, and loading them back.

Each entity's :class:`~manymodels.entity_model.EntityModel` is pickled into an MLflow model
folder whose ``loader_module`` is this module, so ``mlflow.pyfunc.load_model`` works on it
wherever manymodels is installed. The pyfunc input is a DataFrame:

* rows with only the time column (and exogenous columns) are the periods to forecast, from the
  history the model was trained on;
* rows that also carry the target are taken as newer history to forecast from, and the rows
  after them without a target as the periods to forecast;
* an empty frame (or ``params={"horizon": n}``) forecasts the next periods.

The output has the time column and ``prediction``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd
import yaml

from manymodels.entity_model import EntityModel

__all__ = [
    "ModelFiles",
    "ModelWriter",
    "PyfuncEntityModel",
    "entity_model_files",
    "environment_files",
    "load_entity_model",
    "requirements",
]

_DATA_FILE = "entity_model.pkl"
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
    """What every pyfunc model folder of a job holds besides its data: the ``MLmodel`` content
    and the environment files.

    Made once with MLflow (on the driver, :meth:`make`), then written into each folder
    without it (:meth:`write`): workers that save thousands of models need not import MLflow,
    which costs each of them seconds of start-up, and only the model's id and creation time
    differ from one folder to the next.
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


def entity_model_files(pip_requirements: list[str]) -> ModelFiles:
    """The :class:`ModelFiles` of entity model folders (see :class:`ModelWriter`)."""
    return ModelFiles.make(__name__, f"data/{_DATA_FILE}", pip_requirements)


class ModelWriter:
    """Saves entity models as MLflow pyfunc model folders, without importing MLflow.

    Args:
        files: from :func:`entity_model_files`, made once per job.
    """

    def __init__(self, files: ModelFiles) -> None:
        self.files = files

    def save(self, model: EntityModel, path: str | os.PathLike[str]) -> None:
        """Save one model as an MLflow pyfunc model folder at ``path`` (replacing it)."""
        target = Path(path)
        if target.exists():
            shutil.rmtree(target)
        (target / "data").mkdir(parents=True)
        _dump(model, target / "data" / _DATA_FILE)
        self.files.write(target)


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

    with tempfile.TemporaryDirectory(prefix="manymodels-env-") as scratch:
        folder = Path(scratch) / "model"
        mlflow.pyfunc.save_model(str(folder), loader_module=__name__,
                                 pip_requirements=pip_requirements)  # fmt: skip
        return {name: (folder / name).read_text(encoding="utf-8") for name in _ENV_FILES}


def load_entity_model(path: str | os.PathLike[str]) -> EntityModel:
    """Unpickle the :class:`EntityModel` inside a saved model folder."""
    data = Path(path) / "data" / _DATA_FILE
    with open(data if data.exists() else path, "rb") as handle:
        return cloudpickle.load(handle)


class PyfuncEntityModel:
    """What ``mlflow.pyfunc.load_model`` returns for an entity model."""

    def __init__(self, model: EntityModel) -> None:
        self.entity_model = model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Forecast; see the module docstring for the input format."""
        model = self.entity_model
        ctx = model.context
        frame = pd.DataFrame(model_input) if model_input is not None else pd.DataFrame()
        horizon = int((params or {}).get("horizon") or ctx.horizon)
        if frame.empty:
            return model.forecast(horizon=horizon)
        frame = frame.copy()
        frame[ctx.time_col] = pd.to_datetime(frame[ctx.time_col])
        frame = frame.sort_values(ctx.time_col).reset_index(drop=True)
        if ctx.target_col in frame and frame[ctx.target_col].notna().any():
            observed = frame[ctx.target_col].notna().to_numpy()
            last = int(observed.nonzero()[0][-1])
            history, future = frame.iloc[: last + 1], frame.iloc[last + 1 :]
            if future.empty:
                return model.forecast(history=history, horizon=horizon)
            return model.forecast(history=history, future=future.reset_index(drop=True))
        return model.forecast(future=frame)


def _load_pyfunc(data_path: str) -> PyfuncEntityModel:
    # The entry point MLflow calls, named by the ``loader_module`` of every saved model.
    return PyfuncEntityModel(load_entity_model(data_path))


def _write_mlmodel(payload: dict[str, Any], path: Path) -> None:
    # What ``Model.save`` writes, through PyYAML's C emitter when it is built: the pure-Python
    # one MLflow uses costs about 2 ms a model, more than pickling the model itself.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    with open(path, "w", encoding="utf-8") as out:
        yaml.dump(payload, out, Dumper=dumper, default_flow_style=False)


def _dump(model: EntityModel, path: Path) -> None:
    with open(path, "wb") as handle:
        cloudpickle.dump(model, handle)
