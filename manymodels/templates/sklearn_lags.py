"""Built-in template ``sklearn_lags``: a scikit-learn regressor on lag, calendar and exogenous
features, forecasting several steps ahead recursively (each prediction becomes the next lag).

Parameters (``model.params``):
    estimator: a short name (ridge, linear, lasso, elastic_net, gradient_boosting,
        hist_gradient_boosting, random_forest, extra_trees, knn) or the dotted path of any
        scikit-learn-style regressor class, e.g. ``sklearn.svm.SVR``. Default ``ridge``.
    estimator_params: keyword arguments for the estimator, e.g. ``{alpha: 0.5}``.
    lags: the lags of the target to use, a list such as ``[1, 2, 52]``, N for 1..N,
        ``season`` for one full season (1..season length), or ``auto``: one full season where
        the series has ten rows per lag, else 1, 2, 3 and the season length (52 lags of a
        two-year weekly series overfit). Chosen once per entity and kept. Default 8.
    fourier_terms: sine/cosine pairs of the yearly cycle (0 to turn off). Default 3.
    use_exog: whether ``data.exog_cols`` are features. Default true.
    transform: what the lags are taken of: ``none`` (default), ``log1p``, ``diff`` (first
        differences: follows a trend instead of drifting to the mean over long horizons),
        ``log1p_diff``, or ``auto`` (``log1p`` for a series without negative values, and
        differences where a KPSS test finds a trend or random walk). Chosen once per entity
        (at the first backtest cutoff) and kept for the later fits.
    scale: divide each entity's (transformed) target by its mean absolute value, so that one
        regularisation strength suits every entity. Default false.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sklearn import config_context

from manymodels.templates import TrainContext
from manymodels.templates.features import (
    calendar_features,
    is_sub_weekly,
    lag_matrix,
    next_lag_row,
    numeric_columns,
)  # fmt: skip
from manymodels.templates.transforms import TargetTransform, fit_transform, refit_transform

ESTIMATORS = {
    "ridge": "sklearn.linear_model.Ridge",
    "linear": "sklearn.linear_model.LinearRegression",
    "lasso": "sklearn.linear_model.Lasso",
    "elastic_net": "sklearn.linear_model.ElasticNet",
    "gradient_boosting": "sklearn.ensemble.GradientBoostingRegressor",
    "hist_gradient_boosting": "sklearn.ensemble.HistGradientBoostingRegressor",
    "random_forest": "sklearn.ensemble.RandomForestRegressor",
    "extra_trees": "sklearn.ensemble.ExtraTreesRegressor",
    "knn": "sklearn.neighbors.KNeighborsRegressor",
}


# Estimators whose prediction is exactly ``X @ coef_ + intercept_`` (not GLMs, whose link
# function transforms it).
_LINEAR = frozenset({"LinearRegression", "Ridge", "Lasso", "ElasticNet"})


class PARAMS(BaseModel):
    """Parameters of the ``sklearn_lags`` template."""

    model_config = ConfigDict(extra="forbid")

    estimator: str = "ridge"
    estimator_params: dict[str, Any] = Field(default_factory=dict)
    lags: list[int] | Literal["season", "auto"] = Field(default_factory=lambda: list(range(1, 9)))
    fourier_terms: int = Field(default=3, ge=0, le=26)
    use_exog: bool = True
    transform: Literal["none", "log1p", "diff", "log1p_diff", "auto"] = "none"
    scale: bool = False

    @field_validator("lags", mode="before")
    @classmethod
    def _expand_count(cls, value: Any) -> Any:
        if value in ("season", "auto") or isinstance(value, list):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError("a lag count must be at least 1")
            return list(range(1, value + 1))
        raise ValueError(
            "lags must be a list of positive integers, a count N, 'season' or 'auto'"
        )

    @field_validator("lags")
    @classmethod
    def _positive_lags(cls, value: list[int] | str) -> list[int] | str:
        if isinstance(value, str):
            return value
        if not value or min(value) < 1:
            raise ValueError("lags must be a non-empty list of positive integers")
        return sorted(set(value))

    @field_validator("estimator")
    @classmethod
    def _estimator_exists(cls, value: str) -> str:
        estimator_class(value)
        return value

    @field_validator("estimator_params")
    @classmethod
    def _estimator_builds(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # estimator is declared first; it is absent from info.data only when it is invalid itself.
        if "estimator" in info.data:
            make_estimator(info.data["estimator"], value)
        return value


@dataclass
class LagModel:
    """A fitted regressor and the feature recipe it was fitted with."""

    estimator: Any
    lags: list[int]
    fourier_terms: int
    weekdays: bool
    exog_cols: list[str]
    transform: TargetTransform | None = None


def make_estimator(name: str, params: dict[str, Any]) -> Any:
    """Build a regressor from a short name or a dotted class path.

    Raises:
        ValueError: the class cannot be imported or refuses the parameters.
    """
    cls = estimator_class(name)
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise ValueError(f"{cls.__name__} refused estimator_params: {exc}") from None
    if "random_state" in estimator.get_params() and "random_state" not in params:
        estimator.set_params(random_state=0)
    return estimator


def estimator_class(name: str) -> type:
    """The regressor class that a short name or a dotted class path names.

    Raises:
        ValueError: nothing by that name can be imported, or it is not a class with ``fit``
            and ``predict``.
    """
    path = ESTIMATORS.get(name, name)
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(
            f"unknown estimator {name!r}; use one of {', '.join(ESTIMATORS)} or a dotted class path"
        ) from None
    if not (isinstance(cls, type) and hasattr(cls, "fit") and hasattr(cls, "predict")):
        raise ValueError(f"{path} is not a regressor class with fit and predict methods")
    return cls


def lags_of(context: TrainContext, rows: int | None = None) -> list[int]:
    """The lags the parameters ask for, for a series of ``rows`` rows (None: the longest list
    that ``auto`` may choose)."""
    lags, season = context.params["lags"], max(context.season_length, 2)
    if lags == "season" or (lags == "auto" and (rows is None or rows >= _ROWS_PER_LAG * season)):
        return list(range(1, season + 1))
    if lags == "auto":
        return sorted({1, 2, 3, season})
    return list(lags)


# Rows per lag coefficient below which ``lags: auto`` keeps only the recent and seasonal lags.
_ROWS_PER_LAG = 10


def min_history(context: TrainContext) -> int:
    """The largest lag plus a few rows to fit on (one more when differencing)."""
    return max(lags_of(context)) + 3 + ("diff" in context.params.get("transform", "none"))


def train(history: pd.DataFrame, context: TrainContext) -> LagModel:
    """Choose the lags and the transform for this series, and fit the regressor."""
    params = context.params
    raw = history[context.target_col].to_numpy(dtype=float)
    transform = fit_transform(raw, params.get("transform", "none"), params.get("scale", False))
    return _fit(history, context, lags_of(context, len(history)), transform)


def update(model: LagModel, history: pd.DataFrame, context: TrainContext) -> LagModel:
    """Fit the regressor again on ``history`` with the lags and transform chosen by ``train``."""
    raw = history[context.target_col].to_numpy(dtype=float)
    transform = model.transform or fit_transform(raw, "none", False)
    transform = refit_transform(raw, transform, context.params.get("scale", False))
    return _fit(history, context, model.lags, transform)


def _fit(
    history: pd.DataFrame, context: TrainContext, lags: list[int], transform: TargetTransform
) -> LagModel:
    params = context.params
    model = LagModel(
        estimator=make_estimator(params["estimator"], params["estimator_params"]),
        lags=lags,
        fourier_terms=params["fourier_terms"],
        weekdays=is_sub_weekly(context.freq),
        exog_cols=list(context.exog_cols) if params["use_exog"] else [],
        transform=transform,
    )
    target = transform.apply(history[context.target_col].to_numpy(dtype=float))
    # Differencing drops the first row: features line up with the rows of the modelled series.
    rows = history.iloc[len(history) - len(target) :]
    start = max(lags)
    features = np.hstack(
        [
            lag_matrix(target, lags),
            calendar_features(
                rows[context.time_col].iloc[start:], model.fourier_terms, model.weekdays
            ),
            numeric_columns(rows, model.exog_cols)[start:],
        ]
    )
    model.estimator.fit(features, target[start:])
    return model


def predict(
    model: LagModel, history: pd.DataFrame, future: pd.DataFrame, context: TrainContext
) -> np.ndarray:
    """Forecast ``future`` one step at a time, feeding each prediction back as a lag."""
    raw = history[context.target_col].to_numpy(dtype=float)
    # Models saved before transforms existed have none (the attribute defaults on the class).
    transform = model.transform
    modelled = transform.apply(raw) if transform is not None else raw
    recent = list(modelled[-max(model.lags) :])
    known = np.hstack(
        [
            calendar_features(future[context.time_col], model.fourier_terms, model.weekdays),
            numeric_columns(future, model.exog_cols),
        ]
    )
    predictions = np.empty(len(future))
    predict_row = _row_predictor(model.estimator)
    # One row per call: skipping scikit-learn's finiteness scan of each row saves a fifth of
    # the time; the features are finite by construction and the result is checked anyway.
    with config_context(assume_finite=True):
        for step in range(len(future)):
            row = np.concatenate([next_lag_row(recent, model.lags), known[step]])
            predictions[step] = predict_row(row)
            recent.append(predictions[step])
    return transform.invert(predictions, raw) if transform is not None else predictions


def _row_predictor(estimator: Any) -> Callable[[np.ndarray], float]:
    """Predicts one feature row. For the plain linear models, whose prediction is the row times
    the coefficients plus the intercept, that product is computed directly: ``predict`` costs a
    hundred times more in input checks, which for small models is most of a forecast."""
    if type(estimator).__name__ in _LINEAR and type(estimator).__module__.startswith(
        "sklearn.linear_model"
    ):
        coef = np.asarray(estimator.coef_, dtype=float)
        intercept = float(np.asarray(estimator.intercept_, dtype=float).reshape(-1)[0])
        if coef.ndim == 1:
            return lambda row: float(row @ coef) + intercept
    return lambda row: float(estimator.predict(row[np.newaxis, :])[0])
