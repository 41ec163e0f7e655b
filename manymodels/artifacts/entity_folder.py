"""One entity's model as an MLflow pyfunc model folder: written, and loaded back.

Each entity's :class:`~manymodels.entity_model.EntityModel` is pickled into an MLflow model
folder whose loader ends in ``manymodels.flavor`` (a stable name that models of every release
reach; that module hands over to this one). The folder carries the manymodels code it needs
(see :mod:`~manymodels.artifacts.model_code`), so ``mlflow.pyfunc.load_model`` works on it
with or without manymodels installed. The pyfunc input (declared by its signature, see
:mod:`~manymodels.artifacts.signature`) is a DataFrame:

* rows with only the time column (and exogenous columns) are the periods to forecast, from the
  history the model was trained on;
* rows that also carry the target are taken as newer history to forecast from, and the rows
  after them without a target as the periods to forecast;
* an empty frame (or ``params={"horizon": n}``) forecasts the next periods.

The output has the time column, ``prediction`` and the interval columns (``lo-80``, ...).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
import pandas as pd

from manymodels.artifacts.model_code import CODE_DIR
from manymodels.artifacts.model_files import INPUT_EXAMPLE, SERVING_INPUT_EXAMPLE, ModelFiles
from manymodels.entity_model import EntityModel
from manymodels.timeseries import future_frame

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

__all__ = [
    "LOADER_MODULE",
    "ModelWriter",
    "PyfuncEntityModel",
    "entity_model_files",
    "load_entity_model",
]

# The loader module that models of earlier releases name in their MLmodel file, and that the
# loader shipped inside newer ones hands over to (see manymodels.artifacts.model_code): it never
# moves.
LOADER_MODULE = "manymodels.flavor"
_DATA_FILE = "entity_model.pkl"


def entity_model_files(
    pip_requirements: list[str], signature: ModelSignature | None = None
) -> ModelFiles:
    """The :class:`ModelFiles` of entity model folders (see :class:`ModelWriter`), with the
    signature from :func:`~manymodels.artifacts.signature.forecast_signature`."""
    return ModelFiles.make(LOADER_MODULE, f"data/{_DATA_FILE}", pip_requirements, signature,
                           input_example=signature is not None)  # fmt: skip


class ModelWriter:
    """Saves entity models as MLflow pyfunc model folders, without importing MLflow.

    Args:
        files: from :func:`entity_model_files`, made once per job.
    """

    def __init__(self, files: ModelFiles) -> None:
        self.files = files
        self._last_code: Path | None = None

    def save(self, model: EntityModel, path: str | os.PathLike[str]) -> None:
        """Save one model as an MLflow pyfunc model folder at ``path`` (replacing it)."""
        target = Path(path)
        if target.exists():
            shutil.rmtree(target)
        (target / "data").mkdir(parents=True)
        _dump(model, target / "data" / _DATA_FILE)
        self.files.write(target, code_from=self._last_code)
        self._last_code = target / CODE_DIR
        if "saved_input_example_info" in self.files.mlmodel:
            _write_input_example(model, target)


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


def _write_input_example(model: EntityModel, target: Path) -> None:
    """The model's next periods (time and exogenous columns, carried forward), as MLflow
    writes an input example: a split frame, and the same as a ``/invocations`` body."""
    ctx = model.context
    future = future_frame(model.history, model.history.iloc[:0], ctx.time_col,
                          list(ctx.exog_cols), ctx.freq, ctx.horizon)  # fmt: skip
    split = json.loads(future.to_json(orient="split", index=False, date_format="iso"))
    (target / INPUT_EXAMPLE).write_text(json.dumps(split), encoding="utf-8")
    serving = json.dumps({"dataframe_split": split}, indent=2)
    (target / SERVING_INPUT_EXAMPLE).write_text(serving, encoding="utf-8")


def _dump(model: EntityModel, path: Path) -> None:
    with open(path, "wb") as handle:
        cloudpickle.dump(model, handle)
