"""One entity's model as an MLflow pyfunc model folder: written, and loaded back.

Each entity's :class:`~manymodels.entity_model.EntityModel` is pickled into an MLflow model
folder whose ``loader_module`` is ``manymodels.flavor`` (a stable name that every saved model
records; that module hands over to this one), so ``mlflow.pyfunc.load_model`` works on it
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
import pandas as pd

from manymodels.artifacts.model_files import ModelFiles
from manymodels.entity_model import EntityModel

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

__all__ = [
    "LOADER_MODULE",
    "ModelWriter",
    "PyfuncEntityModel",
    "entity_model_files",
    "load_entity_model",
]

# Written into every saved model's MLmodel file, so it never moves: models saved by earlier
# releases name it too.
LOADER_MODULE = "manymodels.flavor"
_DATA_FILE = "entity_model.pkl"


def entity_model_files(
    pip_requirements: list[str], signature: ModelSignature | None = None
) -> ModelFiles:
    """The :class:`ModelFiles` of entity model folders (see :class:`ModelWriter`), with the
    signature from :func:`~manymodels.artifacts.signature.forecast_signature`."""
    return ModelFiles.make(LOADER_MODULE, f"data/{_DATA_FILE}", pip_requirements, signature)


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
    # What MLflow calls, through the ``loader_module`` of every saved model.
    return PyfuncEntityModel(load_entity_model(data_path))


def _dump(model: EntityModel, path: Path) -> None:
    with open(path, "wb") as handle:
        cloudpickle.dump(model, handle)
