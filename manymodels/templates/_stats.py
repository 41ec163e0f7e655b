"""Shared plumbing of the built-in statistical templates, which wrap statsforecast's models.

statsforecast fits ETS, ARIMA and Theta models in compiled code, a few milliseconds per series,
and every model it fits can forecast from a newer history with its parameters kept
(``forward``), which is what a saved model does when it forecasts from data it has not seen.
The templates here add one thing to its models: a frozen *specification* (which ETS components,
which ARIMA orders, which Theta variant), chosen once by information criterion and kept when
the model is fitted again on more data, so that a version's backtest scores always belong to
the specification it registers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from manymodels.templates import TrainContext

__all__ = ["StatsModel", "fit_stats", "forecast_stats", "target_values", "usable_season"]


@dataclass
class StatsModel:
    """A fitted statsforecast model, its frozen specification and what it was fitted on.

    Attributes:
        model: the fitted statsforecast model object.
        spec: the keyword arguments that rebuild the same specification.
        fitted_until: the last timestamp it was fitted on.
        uses_exog: whether it was fitted with the exogenous columns as regressors.
    """

    model: Any
    spec: dict[str, Any]
    fitted_until: pd.Timestamp
    uses_exog: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def target_values(history: pd.DataFrame, context: TrainContext) -> np.ndarray:
    """The target column as a float array."""
    return history[context.target_col].to_numpy(dtype=float)


def exog_matrix(frame: pd.DataFrame, context: TrainContext) -> np.ndarray | None:
    """The exogenous columns as a float matrix, or None when there are none."""
    if not context.exog_cols:
        return None
    return np.column_stack([frame[col].to_numpy(dtype=float) for col in context.exog_cols])


def fit_stats(
    build: Callable[[], Any],
    history: pd.DataFrame,
    context: TrainContext,
    spec: dict[str, Any],
    use_exog: bool = False,
) -> StatsModel:
    """Fit ``build()`` on ``history`` (with the exogenous columns when ``use_exog``)."""
    y = target_values(history, context)
    x = exog_matrix(history, context) if use_exog else None
    with warnings.catch_warnings():
        # Optimiser chatter on short or flat series is expected and not actionable per entity.
        warnings.simplefilter("ignore")
        model = build().fit(y, X=x) if x is not None else build().fit(y)
    until = pd.Timestamp(history[context.time_col].iloc[-1])
    return StatsModel(model, spec, until, uses_exog=x is not None)


def forecast_stats(
    fitted: StatsModel, history: pd.DataFrame, future: pd.DataFrame, context: TrainContext
) -> np.ndarray:
    """Forecast ``future`` after ``history``: from the fitted state when ``history`` ends where
    the model was fitted, else from the new history with the fitted parameters kept."""
    steps = len(future)
    x_future = exog_matrix(future, context) if fitted.uses_exog else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if pd.Timestamp(history[context.time_col].iloc[-1]) == fitted.fitted_until:
            result = fitted.model.predict(h=steps, X=x_future)
        else:
            y = target_values(history, context)
            x = exog_matrix(history, context) if fitted.uses_exog else None
            result = fitted.model.forward(y=y, h=steps, X=x, X_future=x_future)
    return np.asarray(result["mean"], dtype=float)


def usable_season(context: TrainContext, length: int, extra: int = 0) -> int:
    """The season length a model can use on ``length`` rows: the ``season_length`` parameter
    or the data's, or 1 (no season) unless the history holds two full seasons and ``extra``
    rows more."""
    season = int(context.params.get("season_length") or context.season_length)
    return season if season > 1 and length >= 2 * season + extra else 1
