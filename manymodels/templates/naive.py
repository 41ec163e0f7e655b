"""Built-in template ``naive``: every future period repeats the last observed value.

The simplest forecast there is, and the one that every entity can have: it needs a single
observation. It has no parameters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from manymodels.templates import TrainContext


def train(history: pd.DataFrame, context: TrainContext) -> dict[str, str]:
    """Nothing to fit."""
    return {"method": "naive"}


def predict(
    model: dict[str, str], history: pd.DataFrame, future: pd.DataFrame, context: TrainContext
) -> np.ndarray:
    """The last value of ``history``, for every row of ``future``."""
    last = float(history[context.target_col].iloc[-1])
    return np.full(len(future), last)
