"""Built-in template ``croston``: forecasts of intermittent demand (many zero periods).

Croston's method smooths the sizes of the non-zero demands and the intervals between them
separately and forecasts their ratio, a demand *rate*; the Syntetos-Boylan approximation
(``sba``, the default) corrects its upward bias. ``adida`` aggregates the series into periods
with about one demand each and smooths those; ``optimized`` fits Croston's smoothing weights.
statsforecast fits each in microseconds. On series without zeros they reduce to simple
exponential smoothing.

Parameters (``model.params``):
    variant: ``sba`` (default), ``classic``, ``optimized`` or ``adida``.

The methods have no state worth keeping between fits: a forecast refits on the history it is
given. Exogenous columns are ignored.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from manymodels.templates import TrainContext
from manymodels.timeseries import is_intermittent

_MODELS = {
    "sba": "CrostonSBA",
    "classic": "CrostonClassic",
    "optimized": "CrostonOptimized",
    "adida": "ADIDA",
}


class PARAMS(BaseModel):
    """Parameters of the ``croston`` template."""

    model_config = ConfigDict(extra="forbid")

    variant: Literal["sba", "classic", "optimized", "adida"] = "sba"


def suits(history: pd.DataFrame, context: TrainContext) -> bool:
    """Only intermittent series: on others, the bias correction would pull forecasts down."""
    return is_intermittent(history[context.target_col].to_numpy(dtype=float))


def min_history(context: TrainContext) -> int:
    """Two periods: one demand and one interval."""
    return 2


def train(history: pd.DataFrame, context: TrainContext) -> dict[str, str]:
    """Check that the method fits; it is fitted again on whatever history a forecast uses."""
    _forecast(history, context.target_col, context.params["variant"], 1)
    return {"variant": context.params["variant"]}


def predict(
    model: dict[str, str], history: pd.DataFrame, future: pd.DataFrame, context: TrainContext
) -> np.ndarray:
    """The demand rate of ``history``, for every row of ``future``."""
    return _forecast(history, context.target_col, model["variant"], len(future))


def _forecast(history: pd.DataFrame, target_col: str, variant: str, steps: int) -> np.ndarray:
    import statsforecast.models

    values = history[target_col].to_numpy(dtype=float)
    if not np.any(values != 0):
        return np.zeros(steps)  # no demand yet: the rate is zero, and the methods divide by it
    method = getattr(statsforecast.models, _MODELS[variant])()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forecast = method.fit(values).predict(h=steps)["mean"]
    return np.asarray(forecast, dtype=float)

