"""Built-in template ``seasonal_naive``: each period repeats the same period one season ago.

Parameters (``model.params``):
    season_length: periods per season; defaults to the one derived from the data's frequency.

With less than one season of history it repeats the last value (the naive forecast). It is the
baseline that every other model should beat, and the fastest way to a forecast for every entity.

As a candidate of automatic selection it is tried only on series that a seasonality test finds
seasonal (it is still scored beside every entity as the baseline).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from manymodels.templates import TrainContext
from manymodels.timeseries import is_seasonal


class PARAMS(BaseModel):
    """Parameters of the ``seasonal_naive`` template."""

    model_config = ConfigDict(extra="forbid")

    season_length: int | None = Field(default=None, ge=1)


def suits(history: pd.DataFrame, context: TrainContext) -> bool:
    """Only seasonal series (or series too short to tell). On the others, repeating last
    season's noise loses to the naive and smoothing candidates on new data, yet wins a few
    short backtests by chance: on the quarterly prison panel it won 5 of 64 series' backtests
    and lost every one of them on the final window."""
    return is_seasonal(history[context.target_col].to_numpy(dtype=float), _season(context))


def train(history: pd.DataFrame, context: TrainContext) -> dict[str, int]:
    """Nothing to fit: remember the season length."""
    return {"season_length": _season(context)}


def predict(
    model: dict[str, int], history: pd.DataFrame, future: pd.DataFrame, context: TrainContext
) -> np.ndarray:
    """Repeat the last season of ``history`` over ``future``."""
    values = history[context.target_col].to_numpy(dtype=float)
    season = model["season_length"] if len(values) >= model["season_length"] else 1
    last_season = values[-season:]
    return np.resize(last_season, len(future))


def _season(context: TrainContext) -> int:
    return int(context.params.get("season_length") or context.season_length)
