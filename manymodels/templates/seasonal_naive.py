"""Built-in template ``seasonal_naive``: each period repeats the same period one season ago.

Parameters (``model.params``):
    season_length: periods per season; defaults to the one derived from the data's frequency.

With less than one season of history it repeats the last value (the naive forecast). It is the
baseline that every other model should beat, and the fastest way to a forecast for every entity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from manymodels.templates import TrainContext


class PARAMS(BaseModel):
    """Parameters of the ``seasonal_naive`` template."""

    model_config = ConfigDict(extra="forbid")

    season_length: int | None = Field(default=None, ge=1)


def train(history: pd.DataFrame, context: TrainContext) -> dict[str, int]:
    """Nothing to fit: remember the season length."""
    return {"season_length": context.params.get("season_length") or context.season_length}


def predict(
    model: dict[str, int], history: pd.DataFrame, future: pd.DataFrame, context: TrainContext
) -> np.ndarray:
    """Repeat the last season of ``history`` over ``future``."""
    values = history[context.target_col].to_numpy(dtype=float)
    season = model["season_length"] if len(values) >= model["season_length"] else 1
    last_season = values[-season:]
    return np.resize(last_season, len(future))
