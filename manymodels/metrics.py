"""Forecast accuracy metrics: MAE, RMSE, sMAPE, MASE, WAPE and bias.

All take plain arrays and return floats; ``nan`` means "undefined for this series" (for example
MASE on a constant history, or a window without one observed value), never an error.

Only observed values are scored: callers pass the mask of values that were really observed,
and a value the fill policy made up is never compared with a forecast, nor used in the MASE
scale.
"""

from __future__ import annotations

import numpy as np

__all__ = ["METRICS", "bias", "mae", "mase", "mase_scale", "rmse", "score", "smape", "wape"]


def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error."""
    return _mean(np.abs(actual - predicted))


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(_mean((actual - predicted) ** 2)))


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
    return 100.0 * _mean(ratio)


def wape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Weighted absolute percentage error: total absolute error over total absolute actual, in
    percent; ``nan`` when every actual is zero."""
    total = float(np.sum(np.abs(actual)))
    if not len(actual) or total == 0:
        return float("nan")
    return 100.0 * float(np.sum(np.abs(actual - predicted))) / total


def bias(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean error of the forecast (prediction minus actual): positive means too high."""
    return _mean(predicted - actual)


def mase_scale(history: np.ndarray, season_length: int, observed: np.ndarray | None = None) -> float:
    """The MASE denominator: the in-sample mean absolute seasonal difference.

    Uses a lag of ``season_length`` when the history holds two seasons, else a lag of one, and
    only the pairs whose two values were both observed.

    Args:
        history: the series the model was fitted on.
        season_length: periods per season.
        observed: which values of ``history`` were observed (all when None).
    """
    history = np.asarray(history, dtype=float)
    lag = season_length if len(history) >= 2 * season_length else 1
    if len(history) <= lag:
        return float("nan")
    diffs = np.abs(history[lag:] - history[:-lag])
    if observed is not None:
        observed = np.asarray(observed, dtype=bool)
        diffs = diffs[observed[lag:] & observed[:-lag]]
    if not len(diffs):
        return float("nan")
    scale = float(np.mean(diffs))
    return scale if np.isfinite(scale) and scale > 0 else float("nan")


def mase(
    actual: np.ndarray, predicted: np.ndarray, history: np.ndarray, season_length: int
) -> float:
    """Mean absolute scaled error against the in-sample seasonal naive forecast.

    Falls back to a lag of one when the history is shorter than two seasons; ``nan`` when the
    history is constant (the scale is zero).
    """
    return mae(actual, predicted) / mase_scale(history, season_length)


METRICS = ("mae", "rmse", "smape", "mase", "wape", "bias")


def score(
    actual: np.ndarray,
    predicted: np.ndarray,
    history: np.ndarray,
    season_length: int,
    observed: np.ndarray | None = None,
    history_observed: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of one window at once, keyed by name, on the observed values only.

    Args:
        actual, predicted: the window's values and forecasts.
        history: the series before the window (for the MASE scale).
        season_length: periods per season.
        observed: which of ``actual`` were observed; filled-in values are left out.
        history_observed: which of ``history`` were observed.
    """
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if observed is not None:
        keep = np.asarray(observed, dtype=bool)
        actual, predicted = actual[keep], predicted[keep]
    scale = mase_scale(history, season_length, history_observed)
    return metrics_with_scale(actual, predicted, scale)


def metrics_with_scale(actual: np.ndarray, predicted: np.ndarray, scale: float) -> dict[str, float]:
    """Every metric of already-masked values, with a given MASE scale."""
    error = mae(actual, predicted)
    return {
        "mae": error,
        "rmse": rmse(actual, predicted),
        "smape": smape(actual, predicted) if len(actual) else float("nan"),
        "mase": error / scale if np.isfinite(scale) and scale > 0 else float("nan"),
        "wape": wape(actual, predicted),
        "bias": bias(actual, predicted),
    }


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")
