"""Choosing among backtested candidates: the metric that decides, the winner, a combination.

All candidates were scored on the same windows (see :mod:`manymodels.backtesting`); the one
with the lowest mean metric wins. Intermittent series are judged by ``intermittent_metric``
(RMSE by default), as an MAE-based metric is lowest for a forecast of zero there whatever the
demand rate. With ``model.combine``, the mean of the best few is scored on the same windows and
kept where it beats the single best. Pure: no Dask, no MLflow.
"""

from __future__ import annotations

import math

import numpy as np

from manymodels.backtesting import Backtest, Windows, mean_metrics, score_windows
from manymodels.priors import Prior
from manymodels.timeseries import is_intermittent

__all__ = ["COMBINATION", "choose", "combination", "selection_metric"]

# The name of the mean of the best candidates (model.combine), in results and tags.
COMBINATION = "combination"


def selection_metric(observed_values: np.ndarray, metric: str, intermittent: str | None) -> str:
    """``metric``, or ``intermittent`` for an intermittent series (see
    :func:`~manymodels.timeseries.is_intermittent`)."""
    if intermittent is not None and is_intermittent(observed_values):
        return intermittent
    return metric


def choose(results: dict[str, Backtest], metric: str, prior: Prior | None = None) -> Backtest:
    """The candidate with the lowest mean ``metric`` (MAE where it is undefined for all),
    each multiplied by its ``prior`` factor (see :mod:`manymodels.priors`); ties and undefined
    scores go to the earlier candidate in the list."""
    ordered = list(results.values())
    for name in (metric, "mae"):
        scored = [r for r in ordered if math.isfinite(r.metrics.get(name, math.nan))]
        if scored:
            return min(scored, key=lambda r: _weighed(r, name, prior))
    return ordered[0]


def combination(
    results: dict[str, Backtest], winner: Backtest, metric: str, size: int, values: np.ndarray,
    observed: np.ndarray, windows: Windows, season_length: int, prior: Prior | None = None,
) -> Backtest | None:  # fmt: skip
    """The mean of the best ``size`` candidates (ranked as :func:`choose` ranks them) on the
    same windows, where its own mean ``metric`` beats the winner's; None otherwise (or with
    fewer than two candidates to combine)."""
    ranked = sorted(
        (r for r in results.values() if math.isfinite(r.metrics.get(metric, math.nan))),
        key=lambda r: _weighed(r, metric, prior),
    )[:size]
    if size < 2 or len(ranked) < 2 or not len(windows):
        return None
    predictions = np.mean([r.predictions for r in ranked], axis=0)
    per_window = score_windows(predictions, values, observed, windows, season_length)
    metrics = mean_metrics(per_window)
    if not metrics[metric] < winner.metrics[metric]:
        return None
    return Backtest(COMBINATION, predictions, per_window, metrics, None, None,
                    members=tuple(r.candidate for r in ranked))  # fmt: skip


def _weighed(result: Backtest, metric: str, prior: Prior | None) -> float:
    factor = prior.get(result.candidate, 1.0) if prior else 1.0
    return result.metrics[metric] * factor
