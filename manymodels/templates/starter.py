"""A starter manymodels template: edit it, then point ``model.template`` at this file.

manymodels calls ``train`` once per entity (one store, one well, one user) on a Dask worker,
scores the model on a holdout with ``predict``, refits on all the data, and saves the result as
an MLflow model. This file knows nothing of Dask or MLflow, so you can test it on a DataFrame:

    >>> import starter, pandas as pd
    >>> history = pd.DataFrame({"week": pd.date_range("2024-01-07", periods=20, freq="W"),
    ...                         "sales": range(20)})

The contract:

* ``train(history, context)`` gets one entity's rows, sorted by time, on a regular grid, gaps
  filled: the columns ``context.time_col``, ``context.target_col`` and ``context.exog_cols``.
  It returns any picklable object: your fitted model.
* ``predict(model, history, future, context)`` gets the fitted model, the entity's history up
  to the forecast origin, and ``future``: the rows to forecast (``context.time_col`` plus the
  exogenous columns). It returns one number per row of ``future``.
* ``context`` (a ``manymodels.templates.TrainContext``) also holds ``keys`` (the entity's key
  values), ``params`` (``model.params`` from the config), ``freq``, ``horizon`` and
  ``season_length``.
* Optional: ``min_history(context)`` says how many rows ``train`` needs; shorter series are
  recorded as failures without calling it. ``PARAMS`` (a pydantic model) validates
  ``model.params`` before the job starts.

Anything ``train`` or ``predict`` raises fails only that entity; the job goes on and lists it.
Only the imports at the top of this file are available where the model is loaded later, so
import what you need here (numpy, pandas, scikit-learn, statsmodels are always there).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field


class PARAMS(BaseModel):
    """model.params for this template; unknown keys are rejected before the job starts."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(default=0.3, gt=0, le=1, description="weight of the newest period")
    trend_window: int = Field(default=8, ge=2, description="periods used to estimate the trend")


def min_history(context) -> int:
    """Fewest rows ``train`` can work with."""
    return context.params["trend_window"]


def train(history: pd.DataFrame, context) -> dict:
    """Smooth the level exponentially and estimate a linear trend over the last periods."""
    values = history[context.target_col].to_numpy(dtype=float)
    alpha = context.params["alpha"]
    level = values[0]
    for value in values[1:]:
        level = alpha * value + (1 - alpha) * level
    recent = values[-context.params["trend_window"] :]
    slope = float(np.polyfit(np.arange(len(recent)), recent, 1)[0])
    return {"level": float(level), "slope": slope, "alpha": alpha}


def predict(model: dict, history: pd.DataFrame, future: pd.DataFrame, context) -> np.ndarray:
    """Level plus trend, one step further for each future row."""
    values = history[context.target_col].to_numpy(dtype=float)
    level = values[0]
    for value in values[1:]:
        level = model["alpha"] * value + (1 - model["alpha"]) * level
    steps = np.arange(1, len(future) + 1)
    return level + model["slope"] * steps
