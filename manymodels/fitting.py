"""Fitting and scoring one entity: the pure core of a training job.

:func:`fit_entity` regularises one entity's rows, trains the template on all but the last
``holdout`` periods, scores the holdout forecast, and (by default) refits on everything. It
knows nothing of Dask or MLflow and raises for a bad entity; the caller records the failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from manymodels.entity_model import EntityModel, checked_predictions
from manymodels.errors import EntityError
from manymodels.metrics import score
from manymodels.templates import Template, TrainContext
from manymodels.timeseries import regularize, season_length_for

__all__ = ["FitSpec", "EntityFit", "fit_entity", "score_model"]


@dataclass(frozen=True)
class FitSpec:
    """Everything :func:`fit_entity` needs besides the data, built once per job."""

    template: Template
    params: Mapping[str, Any]
    time_col: str
    target_col: str
    exog_cols: tuple[str, ...]
    freq: str | None
    fill_missing: str
    horizon: int
    holdout: int
    refit: bool
    season_length: int | None


@dataclass
class EntityFit:
    """The outcome of fitting one entity."""

    model: EntityModel
    metrics: dict[str, float]
    observations: int
    filled: int
    holdout_start: pd.Timestamp
    trained_until: pd.Timestamp


def fit_entity(frame: pd.DataFrame, keys: Mapping[str, str], spec: FitSpec) -> EntityFit:
    """Fit, score and refit one entity.

    Args:
        frame: the entity's raw rows (any order, possibly with gaps and trailing future rows).
        keys: the entity's key values.
        spec: the job's fitting specification.

    Raises:
        EntityError: the data cannot be modelled, or the template broke its contract.
        Exception: whatever the template raised.
    """
    series = regularize(
        frame, spec.time_col, spec.target_col, list(spec.exog_cols), spec.freq, spec.fill_missing
    )
    history = series.history
    context = _context(keys, spec, series.freq)
    _require_length(len(history), spec, context)

    train_part, test_part = history.iloc[: -spec.holdout], history.iloc[-spec.holdout :]
    fitted = _train(spec.template, train_part, context)
    future = _future_rows(test_part, spec)
    predicted = checked_predictions(
        spec.template.predict(fitted, train_part, future, context), len(future)
    )
    metrics = score(
        test_part[spec.target_col].to_numpy(), predicted,
        train_part[spec.target_col].to_numpy(), context.season_length,
    )  # fmt: skip
    if spec.refit:
        fitted, fitted_on = _train(spec.template, history, context), history
    else:
        fitted_on = train_part
    model = EntityModel(spec.template.name, spec.template.predict, fitted, context, fitted_on)
    return EntityFit(
        model=model,
        metrics=metrics,
        observations=len(history),
        filled=series.filled,
        holdout_start=pd.Timestamp(test_part[spec.time_col].iloc[0]),
        trained_until=model.trained_until,
    )


def score_model(
    model: EntityModel, frame: pd.DataFrame, spec: FitSpec
) -> tuple[dict[str, float], pd.Timestamp]:
    """Score an already fitted model on the last ``holdout`` periods of ``frame``.

    Used to compare a champion with a challenger on the same holdout.

    Returns:
        The metrics and the first timestamp of the holdout.
    """
    series = regularize(
        frame, spec.time_col, spec.target_col, list(spec.exog_cols), spec.freq, spec.fill_missing
    )
    history = series.history
    if len(history) <= spec.holdout:
        raise EntityError(f"only {len(history)} observed periods; cannot hold out {spec.holdout}")
    train_part, test_part = history.iloc[: -spec.holdout], history.iloc[-spec.holdout :]
    future = _future_rows(test_part, spec)
    predicted = model.forecast(history=train_part, future=future)["prediction"].to_numpy()
    metrics = score(
        test_part[spec.target_col].to_numpy(), predicted,
        train_part[spec.target_col].to_numpy(), model.context.season_length,
    )  # fmt: skip
    return metrics, pd.Timestamp(test_part[spec.time_col].iloc[0])


def _future_rows(rows: pd.DataFrame, spec: FitSpec) -> pd.DataFrame:
    """The time and exogenous columns of ``rows``, as a template's ``future`` argument."""
    columns = [spec.time_col, *spec.exog_cols]
    return pd.DataFrame({column: rows[column].to_numpy() for column in columns})


def _context(keys: Mapping[str, str], spec: FitSpec, freq: str) -> TrainContext:
    return TrainContext(
        keys=dict(keys),
        params=spec.params,
        time_col=spec.time_col,
        target_col=spec.target_col,
        exog_cols=spec.exog_cols,
        freq=freq,
        horizon=spec.horizon,
        season_length=spec.season_length or season_length_for(freq),
    )


def _require_length(length: int, spec: FitSpec, context: TrainContext) -> None:
    needed = spec.template.min_history(context)
    if length < spec.holdout + needed:
        raise EntityError(
            f"series too short: {length} observed periods, needs at least {spec.holdout + needed} "
            f"({spec.holdout} holdout + {needed} for template '{spec.template.name}'); lower "
            "evaluation.holdout or the template's lags, or leave this entity out"
        )


def _train(template: Template, history: pd.DataFrame, context: TrainContext) -> Any:
    fitted = template.train(history.reset_index(drop=True), context)
    if fitted is None:
        raise EntityError("train() returned None; it must return the fitted model")
    return fitted
