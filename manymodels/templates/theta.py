"""Built-in template ``theta``: the Theta method, the M3 competition's winner, with its variant
chosen per entity.

statsforecast's ``AutoTheta`` deseasonalises the series when a seasonality test says so and
chooses among the standard, optimised and dynamic Theta variants by in-sample error. Once
chosen, the variant is kept: :func:`update` fits the same variant again on more data.

Parameters (``model.params``):
    season_length: periods per season; derived from the data's frequency when null.
    decomposition_type: ``multiplicative`` (default; additive is used where values are not
        all positive) or ``additive``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from manymodels.templates import TrainContext
from manymodels.templates._stats import (
    StatsModel,
    fit_stats,
    forecast_stats,
    target_values,
    usable_season,
)


class PARAMS(BaseModel):
    """Parameters of the ``theta`` template."""

    model_config = ConfigDict(extra="forbid")

    season_length: int | None = Field(default=None, ge=1)
    decomposition_type: Literal["multiplicative", "additive"] = "multiplicative"


def min_history(context: TrainContext) -> int:
    """A few points to fit a drift and a level."""
    return 5


def train(history: pd.DataFrame, context: TrainContext) -> StatsModel:
    """Choose the Theta variant and fit it."""
    params = context.params
    season = usable_season(context, len(history))
    decomposition = params["decomposition_type"]
    if decomposition == "multiplicative" and not np.all(target_values(history, context) > 0):
        decomposition = "additive"
    spec: dict[str, Any] = {"season_length": season, "decomposition_type": decomposition}
    fitted = _fit(history, context, spec)
    fitted.spec = {**spec, "model": fitted.model.model_["modeltype"]}
    return fitted


def update(model: StatsModel, history: pd.DataFrame, context: TrainContext) -> StatsModel:
    """Fit the chosen variant again on ``history``."""
    spec = dict(model.spec)
    if spec["decomposition_type"] == "multiplicative" and not np.all(
        target_values(history, context) > 0
    ):
        spec["decomposition_type"] = "additive"
    return _fit(history, context, spec)


def predict(
    model: StatsModel, history: pd.DataFrame, future: pd.DataFrame, context: TrainContext
) -> np.ndarray:
    """Forecast ``future`` after ``history``."""
    return forecast_stats(model, history, future, context)


def _fit(history: pd.DataFrame, context: TrainContext, spec: dict[str, Any]) -> StatsModel:
    from statsforecast.models import AutoTheta

    return fit_stats(lambda: AutoTheta(**spec), history, context, spec)

