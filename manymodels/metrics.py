"""Forecast accuracy metrics: MAE, RMSE, sMAPE and MASE.

All take plain arrays and return floats; ``nan`` means "undefined for this series" (for example
MASE on a constant history), never an error.
"""

from __future__ import annotations

import numpy as np

__all__ = ["METRICS", "mae", "rmse", "smape", "mase", "score"]


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(actual - predicted)))


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((actual - predicted) ** 2)))


def smape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Symmetric mean absolute percentage error, in percent (0 to 200).

    Periods where both the actual and the prediction are zero count as a perfect forecast, so
    intermittent series do not divide by zero.
    """
    denominator = np.abs(actual) + np.abs(predicted)
    ratio = np.divide(
        2.0 * np.abs(actual - predicted),
        denominator,
        out=np.zeros_like(denominator, dtype=float),
        where=denominator > 0,
    )
    return float(100.0 * np.mean(ratio))


def mase(
    actual: np.ndarray, predicted: np.ndarray, history: np.ndarray, season_length: int
) -> float:
    """Mean absolute scaled error against the in-sample seasonal naive forecast.

    Falls back to a lag of one when the history is shorter than two seasons; ``nan`` when the
    history is constant (the scale is zero).
    """
    lag = season_length if len(history) >= 2 * season_length else 1
    if len(history) <= lag:
        return float("nan")
    scale = np.mean(np.abs(history[lag:] - history[:-lag]))
    if not np.isfinite(scale) or scale == 0:
        return float("nan")
    return float(np.mean(np.abs(actual - predicted)) / scale)


METRICS = ("mae", "rmse", "smape", "mase")


def score(
    actual: np.ndarray, predicted: np.ndarray, history: np.ndarray, season_length: int
) -> dict[str, float]:
    """All metrics of one holdout at once, keyed by name."""
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    return {
        "mae": mae(actual, predicted),
        "rmse": rmse(actual, predicted),
        "smape": smape(actual, predicted),
        "mase": mase(actual, predicted, np.asarray(history, dtype=float), season_length),
    }
