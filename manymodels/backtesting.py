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
from manymodels.metrics import METRICS, mase_scale, metrics_with_scale
from manymodels.templates import Template, TrainContext

__all__ = ["Backtest", "Candidate", "Windows", "plan_windows", "run_backtest"]


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
    """

    candidate: str
    predictions: np.ndarray
    per_window: list[dict[str, float]]
    metrics: dict[str, float]
    first_model: Any = field(repr=False)
    last_model: Any = field(repr=False)


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
) -> Backtest:
    """Fit ``candidate`` at every cutoff of ``windows`` and score its forecasts.

    Raises:
        EntityError: the template broke its contract (None model, wrong predictions).
        Exception: whatever the template raised.
    """
    template, target = candidate.template, context.target_col
    values = history[target].to_numpy(dtype=float)
    rows, per_window = [], []
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
        rows.append(predicted)
        keep = observed[cutoff : cutoff + windows.length]
        scale = mase_scale(values[:cutoff], context.season_length, observed[:cutoff])
        per_window.append(metrics_with_scale(values[cutoff : cutoff + len(future)][keep],
                                             predicted[keep], scale))  # fmt: skip
    predictions = np.vstack(rows) if rows else np.empty((0, windows.length))
    return Backtest(candidate.name, predictions, per_window, mean_metrics(per_window),
                    first, model)  # fmt: skip


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
