"""Forecasts that stay non-negative where the target does (``data.non_negative``).

Sales, counts and demand are never below zero, but a trend, a lag regressor or an interval's
lower bound can be. With ``auto`` (the default), an entity whose observed history has no
negative value gets its forecasts and interval bounds floored at zero; ``true`` floors every
entity, ``false`` none. The floor is decided from the history a forecast is made from, and
applied wherever forecasts are made: in every backtest window (so that the scores that choose
and judge a model are those of what it serves), in each member of a combination, and in the
saved model's forecasts.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["NonNegative", "floor_for", "floored"]

NonNegative = bool | Literal["auto"]


def floor_for(history: pd.DataFrame, target_col: str, non_negative: NonNegative) -> float | None:
    """The floor of forecasts made from ``history``: 0.0, or None for no floor."""
    if non_negative is True:
        return 0.0
    if non_negative != "auto" or target_col not in history:
        return None
    values = pd.to_numeric(history[target_col], errors="coerce").to_numpy(dtype=float)
    observed = values[np.isfinite(values)]
    return 0.0 if len(observed) and observed.min() >= 0 else None


def floored(values: np.ndarray, floor: float | None) -> np.ndarray:
    """``values`` raised to ``floor`` where below it (unchanged without a floor)."""
    return values if floor is None else np.maximum(values, floor)
