"""Built-in template ``ets``: Holt-Winters exponential smoothing from statsmodels.

Parameters (``model.params``):
    trend: ``add``, ``mul`` or null (no trend). Default ``add``.
    damped_trend: damp the trend towards a flat line. Default true.
    seasonal: ``add``, ``mul``, null, or ``auto`` (additive when the series holds two full
        seasons, none otherwise). Default ``auto``.
    season_length: periods per season; derived from the data's frequency when null.

``auto`` is decided once, when the model is first trained; :func:`update` fits the same
specification again on other data, so that the backtest scores and the registered model belong
to one specification.

Exogenous columns are ignored. When asked to forecast from a history longer than the one it was
fitted on, the model keeps its fitted smoothing parameters and re-estimates only the starting
state on the new history.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from manymodels.templates import TrainContext


class PARAMS(BaseModel):
    """Parameters of the ``ets`` template."""

    model_config = ConfigDict(extra="forbid")

    trend: Literal["add", "mul"] | None = "add"
    damped_trend: bool = True
    seasonal: Literal["add", "mul", "auto"] | None = "auto"
    season_length: int | None = Field(default=None, ge=1)


@dataclass
class EtsModel:
    """The specification and fitted smoothing parameters of one entity."""

    spec: dict[str, Any]
    smoothing: dict[str, float]
    fitted_until: pd.Timestamp
    results: Any


def min_history(context: TrainContext) -> int:
    """Enough rows to estimate a level and a trend, and two full seasons for a seasonal model."""
    season = _season_length(context)
    if context.params["seasonal"] in ("add", "mul") and season > 1:
        # statsmodels initialises the seasonal terms from the first two seasons.
        return max(6, 2 * season)
    return 6


def train(history: pd.DataFrame, context: TrainContext) -> EtsModel:
    """Fit level, trend and season by maximum likelihood."""
    values = history[context.target_col].to_numpy(dtype=float)
    spec = _specification(context.params, len(values), _season_length(context), values)
    return _fitted(history, context, spec)


def update(model: EtsModel, history: pd.DataFrame, context: TrainContext) -> EtsModel:
    """Fit the same specification (trend, damping, season) again on ``history``."""
    spec = dict(model.spec)
    values = history[context.target_col].to_numpy(dtype=float)
    if spec["seasonal"] and len(values) < 2 * spec["seasonal_periods"]:
        raise ValueError(
            f"the seasonal specification needs {2 * spec['seasonal_periods']} rows, got "
            f"{len(values)}"
        )
    if not np.all(values > 0):  # multiplicative terms need positive values
        spec["trend"] = "add" if spec["trend"] == "mul" else spec["trend"]
        spec["seasonal"] = "add" if spec["seasonal"] == "mul" else spec["seasonal"]
    return _fitted(history, context, spec)


def _season_length(context: TrainContext) -> int:
    return int(context.params.get("season_length") or context.season_length)


def _fitted(history: pd.DataFrame, context: TrainContext, spec: dict[str, Any]) -> EtsModel:
    values = history[context.target_col].to_numpy(dtype=float)
    results = _fit(values, spec)
    smoothing = {
        name: float(results.params[name])
        for name in ("smoothing_level", "smoothing_trend", "smoothing_seasonal", "damping_trend")
        if results.params.get(name) is not None and np.isfinite(results.params[name])
    }
    return EtsModel(spec, smoothing, pd.Timestamp(history[context.time_col].iloc[-1]), results)


def predict(
    model: EtsModel, history: pd.DataFrame, future: pd.DataFrame, context: TrainContext
) -> np.ndarray:
    """Forecast ``len(future)`` periods after the end of ``history``."""
    steps = len(future)
    if pd.Timestamp(history[context.time_col].iloc[-1]) == model.fitted_until:
        return np.asarray(model.results.forecast(steps), dtype=float)
    values = history[context.target_col].to_numpy(dtype=float)
    results = _fit(values, model.spec, fixed=model.smoothing)
    return np.asarray(results.forecast(steps), dtype=float)


def _specification(
    params: Mapping[str, Any], length: int, season_length: int, values: np.ndarray
) -> dict[str, Any]:
    seasonal = params["seasonal"]
    if seasonal == "auto":
        seasonal = "add" if season_length > 1 and length >= 2 * season_length + 2 else None
    elif season_length <= 1:
        seasonal = None  # statsmodels needs at least two periods per season
    positive = bool(np.all(values > 0))
    trend = params["trend"] if (params["trend"] != "mul" or positive) else "add"
    if seasonal == "mul" and not positive:
        seasonal = "add"
    return {
        "trend": trend,
        "damped_trend": bool(params["damped_trend"] and trend is not None),
        "seasonal": seasonal,
        "seasonal_periods": season_length if seasonal else None,
    }


def _fit(values: np.ndarray, spec: dict[str, Any], fixed: dict[str, float] | None = None) -> Any:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    with warnings.catch_warnings():
        # Convergence chatter on short series is expected and not actionable per entity.
        warnings.simplefilter("ignore")
        model = ExponentialSmoothing(values, initialization_method="estimated", **spec)
        return model.fit(**(fixed or {}))
