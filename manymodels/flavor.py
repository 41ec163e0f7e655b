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

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd
import yaml

from manymodels.entity_model import EntityModel

__all__ = ["ModelWriter", "load_entity_model", "PyfuncEntityModel", "requirements"]

_DATA_FILE = "entity_model.pkl"
_ENV_FILES = ("conda.yaml", "python_env.yaml", "requirements.txt")


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


class ModelWriter:
    """Writes many entity models quickly: the environment files are made once and copied.

    Args:
        pip_requirements: from :func:`requirements`, computed once per job.
    """

    def __init__(self, pip_requirements: list[str]) -> None:
        self.pip_requirements = pip_requirements
        self._env_dir: str | None = None

    def save(self, model: EntityModel, path: str | os.PathLike[str]) -> None:
        """Save one model as an MLflow pyfunc model folder at ``path`` (replacing it)."""
        import mlflow
        from mlflow.models import Model

        target = Path(path)
        if target.exists():
            shutil.rmtree(target)
        if self._env_dir is None:
            self._save_first(model, target)
            return
        (target / "data").mkdir(parents=True)
        _dump(model, target / "data" / _DATA_FILE)
        for name in _ENV_FILES:
            shutil.copyfile(os.path.join(self._env_dir, name), target / name)
        mlflow_model = Model()
        mlflow.pyfunc.add_to_model(
            mlflow_model,
            loader_module=__name__,
            data=f"data/{_DATA_FILE}",
            conda_env="conda.yaml",
            python_env="python_env.yaml",
        )
        _write_mlmodel(mlflow_model, target / "MLmodel")

    def _save_first(self, model: EntityModel, target: Path) -> None:
        import mlflow

        with tempfile.TemporaryDirectory() as scratch:
            data_file = Path(scratch) / _DATA_FILE
            _dump(model, data_file)
            mlflow.pyfunc.save_model(
                str(target),
                loader_module=__name__,
                data_path=str(data_file),
                pip_requirements=self.pip_requirements,
            )
        self._env_dir = tempfile.mkdtemp(prefix="manymodels-env-")
        for name in _ENV_FILES:
            shutil.copyfile(target / name, os.path.join(self._env_dir, name))

    def close(self) -> None:
        """Remove the cached environment files."""
        if self._env_dir:
            shutil.rmtree(self._env_dir, ignore_errors=True)
            self._env_dir = None

    def __enter__(self) -> ModelWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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


def _write_mlmodel(mlflow_model: Any, path: Path) -> None:
    # What ``Model.save`` writes, through PyYAML's C emitter when it is built: the pure-Python
    # one MLflow uses costs about 2 ms a model, more than pickling the model itself.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    with open(path, "w", encoding="utf-8") as out:
        yaml.dump(mlflow_model.to_dict(), out, Dumper=dumper, default_flow_style=False)


def _dump(model: EntityModel, path: Path) -> None:
    with open(path, "wb") as handle:
        cloudpickle.dump(model, handle)
