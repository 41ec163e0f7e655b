"""Rolling-origin backtests of one entity: every candidate fitted at every window's cutoff.

A window is ``length`` periods after a cutoff; windows are ``step`` periods apart and end with
the series. Each candidate is trained at the first cutoff and fitted again (keeping the
specification it chose there, see :meth:`Template.refit`) at each later one, then forecasts its
window. Only observed values are scored: a value that the fill policy made up is left out of
every metric, and out of the MASE scale. Pure: no Dask, no MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from manymodels.entity_model import checked_predictions
from manymodels.errors import EntityError
from manymodels.floors import NonNegative, floor_for, floored
from manymodels.metrics import METRICS, mase_scale, metrics_with_scale
from manymodels.templates import Template, TrainContext

__all__ = [
    "Backtest",
    "Candidate",
    "Windows",
    "backtest_table",
    "mean_metrics",
    "plan_windows",
    "run_backtest",
    "score_windows",
    "window_errors",
]


@dataclass(frozen=True)
class Candidate:
    """A template and its validated parameters, under the name that results use."""

    name: str
    template: Template
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Windows:
    """The backtest windows of one entity: ``cutoffs`` are the positions of each window's
    first period, ascending; every window is ``length`` periods long."""

    cutoffs: tuple[int, ...]
    length: int

    def __len__(self) -> int:
        return len(self.cutoffs)


@dataclass
class Backtest:
    """One candidate's backtest on one entity.

    Attributes:
        predictions: one row per window, one column per period of the window.
        per_window: the metrics of each window.
        metrics: the mean of each metric over the windows (undefined windows left out).
        first_model: what ``train`` returned at the first cutoff, whose specification later
            fits keep.
        last_model: the model fitted at the last cutoff.
        members: for a combination of candidates, their names.
    """

    candidate: str
    predictions: np.ndarray
    per_window: list[dict[str, float]]
    metrics: dict[str, float]
    first_model: Any = field(repr=False)
    last_model: Any = field(repr=False)
    members: tuple[str, ...] = ()


def plan_windows(length: int, window: int, windows: int, step: int, needed: int) -> Windows:
    """The backtest windows that a series of ``length`` periods affords.

    Args:
        length: periods in the series.
        window: periods per window (the evaluation holdout).
        windows: windows wanted.
        step: periods between two cutoffs.
        needed: fewest periods before the first cutoff.

    Returns:
        Up to ``windows`` windows, the latest ones, each with at least ``needed`` periods
        before it; none when the series is too short for one.
    """
    cutoffs = [length - window - back * step for back in range(windows - 1, -1, -1)]
    return Windows(tuple(cutoff for cutoff in cutoffs if cutoff >= needed), window)


def run_backtest(
    candidate: Candidate,
    history: pd.DataFrame,
    observed: np.ndarray,
    context: TrainContext,
    windows: Windows,
    future_cols: list[str],
    non_negative: NonNegative = False,
) -> Backtest:
    """Fit ``candidate`` at every cutoff of ``windows`` and score its forecasts, floored as
    ``non_negative`` says (see :mod:`manymodels.floors`).

    Raises:
        EntityError: the template broke its contract (None model, wrong predictions).
        Exception: whatever the template raised.
    """
    template = candidate.template
    rows = []
    first = model = None
    for index, cutoff in enumerate(windows.cutoffs):
        train_part = history.iloc[:cutoff].reset_index(drop=True)
        test_part = history.iloc[cutoff : cutoff + windows.length]
        model = _fit(template, first, train_part, context) if index else _train(template,
                                                                                train_part,
                                                                                context)
        first = model if index == 0 else first
        future = pd.DataFrame({col: test_part[col].to_numpy() for col in future_cols})
        predicted = checked_predictions(
            template.predict(model, train_part, future, context), len(future)
        )
        rows.append(floored(predicted, floor_for(train_part, context.target_col, non_negative)))
    predictions = np.vstack(rows) if rows else np.empty((0, windows.length))
    values = history[context.target_col].to_numpy(dtype=float)
    per_window = score_windows(predictions, values, observed, windows, context.season_length)
    return Backtest(candidate.name, predictions, per_window, mean_metrics(per_window),
                    first, model)  # fmt: skip


def score_windows(
    predictions: np.ndarray, values: np.ndarray, observed: np.ndarray, windows: Windows,
    season_length: int,
) -> list[dict[str, float]]:  # fmt: skip
    """The metrics of each window's predictions, on observed values only, each scaled (MASE) by
    the series before its cutoff."""
    per_window = []
    for index, cutoff in enumerate(windows.cutoffs):
        span = slice(cutoff, cutoff + windows.length)
        keep = observed[span]
        actual = values[span]
        scale = mase_scale(values[:cutoff], season_length, observed[:cutoff])
        per_window.append(
            metrics_with_scale(actual[keep], predictions[index][: len(actual)][keep], scale)
        )
    return per_window


def mean_metrics(per_window: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the windows where it is defined (``nan`` where it never is)."""
    if not per_window:
        return dict.fromkeys(METRICS, float("nan"))
    names = per_window[0]
    means = {}
    for name in names:
        values = np.array([window[name] for window in per_window], dtype=float)
        finite = values[np.isfinite(values)]
        means[name] = float(finite.mean()) if len(finite) else float("nan")
    return means


def _train(template: Template, history: pd.DataFrame, context: TrainContext) -> Any:
    fitted = template.train(history, context)
    if fitted is None:
        raise EntityError("train() returned None; it must return the fitted model")
    return fitted


def _fit(template: Template, first: Any, history: pd.DataFrame, context: TrainContext) -> Any:
    fitted = template.refit(first, history, context)
    if fitted is None:
        raise EntityError("update() returned None; it must return the fitted model")
    return fitted


def window_errors(
    backtest: Backtest, values: np.ndarray, observed: np.ndarray, windows: Windows
) -> np.ndarray:
    """``actual - prediction`` per window and step; ``nan`` where the actual was filled in."""
    rows = []
    for index, cutoff in enumerate(windows.cutoffs):
        actual = _observed_actuals(values, observed, cutoff, windows.length)
        rows.append(actual - backtest.predictions[index][: len(actual)])
    return np.vstack(rows) if rows else np.empty((0, windows.length))


def _observed_actuals(
    values: np.ndarray, observed: np.ndarray, cutoff: int, length: int
) -> np.ndarray:
    """A window's actual values, ``nan`` where the fill policy made them up."""
    span = slice(cutoff, cutoff + length)
    return np.where(observed[span], values[span], np.nan)


def backtest_table(
    backtests: Mapping[str, Backtest], history: pd.DataFrame, observed: np.ndarray,
    windows: Windows, time_col: str, target_col: str,
) -> pd.DataFrame | None:  # fmt: skip
    """Every backtest's predictions in every window, long: ``cutoff`` (the last period fitted
    on), the time column, ``actual`` (``nan`` where it was filled in), ``prediction``,
    ``candidate`` and ``window``."""
    if not len(windows) or not backtests:
        return None
    times = history[time_col]
    values = history[target_col].to_numpy(dtype=float)
    parts = []
    for index, cutoff in enumerate(windows.cutoffs):
        span = slice(cutoff, cutoff + windows.length)
        actual = _observed_actuals(values, observed, cutoff, windows.length)
        for name, backtest in backtests.items():
            parts.append(pd.DataFrame({
                "cutoff": times.iloc[cutoff - 1], time_col: times.iloc[span].to_numpy(),
                "actual": actual, "prediction": backtest.predictions[index][: len(actual)],
                "candidate": name, "window": index,
            }))  # fmt: skip
    return pd.concat(parts, ignore_index=True)
