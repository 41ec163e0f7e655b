"""Built-in template ``auto_arima``: a (seasonal) ARIMA model with its orders chosen per entity.

The orders are chosen by a stepwise search on the corrected Akaike information criterion
(statsforecast's ``AutoARIMA``, after Hyndman and Khandakar) on the target alone; with
exogenous columns, the chosen orders are then fitted as a regression with ARIMA errors. (Searching
with the regressors in every candidate model costs two to three times as much for orders that
are nearly always the same.) Once chosen, the orders are kept: :func:`update` fits the same
orders again on more data, so the backtest of a specification and the registered model agree.

Parameters (``model.params``):
    season_length: periods per season; derived from the data's frequency when null.
    use_exog: use ``data.exog_cols`` as regressors. Default true.
    max_order: the largest p + q + P + Q the search considers. Default 5.
    approximation: search the orders on conditional-sum-of-squares fits, then fit the chosen
        ones exactly; null (default) does so for series longer than 150 periods or seasons
        longer than 12, as R's auto.arima does (a search with exact likelihoods costs three
        times as much on 20 years of monthly data).

Seasonal terms need two full seasons of history; shorter series get a non-seasonal model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from manymodels.templates import TrainContext
from manymodels.templates._stats import StatsModel, fit_stats, forecast_stats, usable_season


class PARAMS(BaseModel):
    """Parameters of the ``auto_arima`` template."""

    model_config = ConfigDict(extra="forbid")

    season_length: int | None = Field(default=None, ge=1)
    use_exog: bool = True
    max_order: int = Field(default=5, ge=1, le=10)
    approximation: bool | None = None


def min_history(context: TrainContext) -> int:
    """Enough rows to difference and estimate a few coefficients."""
    return 12


def train(history: pd.DataFrame, context: TrainContext) -> StatsModel:
    """Search the ARIMA orders by AICc and fit the best."""
    from statsforecast.models import AutoARIMA

    params = context.params
    season = usable_season(context, len(history), extra=2)
    approximate = params["approximation"]
    if approximate is None:
        approximate = len(history) > 150 or season > 12
    settings = {"season_length": season, "seasonal": season > 1,
                "max_order": params["max_order"], "approximation": approximate}  # fmt: skip
    searched = fit_stats(lambda: AutoARIMA(**settings), history, context, {})
    searched.spec = _orders(searched.model.model_, season)
    if params["use_exog"] and context.exog_cols and _varies(history, context):
        searched.uses_exog = True
        return update(searched, history, context)
    return searched


def update(model: StatsModel, history: pd.DataFrame, context: TrainContext) -> StatsModel:
    """Fit the chosen orders again on ``history``: the coefficients change, the orders do not."""
    if model.uses_exog and _varies(history, context):
        try:
            return _fit_orders(model.spec, history, context, use_exog=True)
        except (ValueError, np.linalg.LinAlgError):
            # Regressors that make the likelihood undefined over this stretch (seen on one
            # orange juice series): the same orders without them still forecast.
            pass
    return _fit_orders(model.spec, history, context, use_exog=False)


def _fit_orders(
    spec: dict[str, Any], history: pd.DataFrame, context: TrainContext, use_exog: bool
) -> StatsModel:
    from statsforecast.models import ARIMA

    try:
        return fit_stats(lambda: ARIMA(**spec), history, context, spec, use_exog)
    except (ValueError, np.linalg.LinAlgError):
        # The conditional-sum-of-squares start fails on some short series (three prison
        # series at 24 quarters); maximum likelihood alone fits them.
        return fit_stats(lambda: ARIMA(**spec, method="ML"), history, context, spec, use_exog)


def predict(
    model: StatsModel, history: pd.DataFrame, future: pd.DataFrame, context: TrainContext
) -> np.ndarray:
    """Forecast ``future`` after ``history``."""
    return forecast_stats(model, history, future, context)


def _orders(fitted: dict[str, Any], season: int) -> dict[str, Any]:
    p, q, seasonal_p, seasonal_q, _, d, seasonal_d = fitted["arma"]
    coef = fitted["coef"]
    return {
        "order": (p, d, q),
        "seasonal_order": (seasonal_p, seasonal_d, seasonal_q),
        "season_length": season,
        "include_mean": "intercept" in coef,
        "include_drift": "drift" in coef,
    }


def _varies(history: pd.DataFrame, context: TrainContext) -> bool:
    # A regressor that never changes is collinear with the mean: ARIMA cannot estimate it.
    return all(history[col].nunique() > 1 for col in context.exog_cols)
