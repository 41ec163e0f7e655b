"""Conformal prediction intervals from backtest residuals, for any template.

The backtest leaves a matrix of out-of-sample errors: one row per window, one column per step
ahead. Each step's typical error size (its mean absolute error, made non-decreasing in the step,
as errors grow with the horizon) is the scale; every error divided by its step's scale is a
score, and the scores of all windows and steps are pooled, so that a handful of windows still
gives a usable quantile. A window's errors are divided by the scale learnt from the *other*
windows (leave one window out): divided by a scale that includes them, three windows' scores
could never exceed 3, and the intervals would be too narrow exactly where few windows make the
scale uncertain. The interval at level L around a forecast ``y`` at step ``h`` is
``y +/- q_L * scale_h``, with ``q_L`` the conformal quantile of the pooled scores. Any level
can be asked for later: the scores are kept, not the widths.

A job may widen every entity's intervals by what its panel's most recent backtest window says
(see :mod:`manymodels.calibration`): a factor per level, never below one, kept with the scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Calibration", "ConformalScores", "conformal_share", "coverage", "extended_scale",
    "fit_scores", "interval_columns", "level_label", "nested_half_widths", "widening",
]  # fmt: skip

Calibration = tuple[tuple[float, float], ...]
"""A panel's widening factor of each interval level, as ``(level, factor)`` pairs by level."""


def widening(calibration: Calibration, level: float) -> float:
    """The factor by which ``calibration`` widens the ``level``% interval: interpolated
    between its levels, the nearest one's beyond them, 1 without a calibration."""
    if not calibration:
        return 1.0
    levels, factors = zip(*calibration, strict=True)
    return float(np.interp(level, levels, factors))


@dataclass(frozen=True)
class ConformalScores:
    """What an entity's intervals are made from.

    Attributes:
        scale: the error scale of each backtested step ahead.
        scores: the pooled absolute errors divided by their step's scale, sorted.
        calibration: the job's widening factors (see :mod:`manymodels.calibration`); empty
            for none.
    """

    scale: np.ndarray
    scores: np.ndarray
    calibration: Calibration = ()

    def half_widths(self, level: float, steps: int) -> np.ndarray:
        """Half-widths of the ``level``% interval for ``steps`` steps ahead. Beyond the
        backtested steps, the last scale grows with the square root of the step, as a random
        walk's error does."""
        quantile = _quantile(self.scores, level / 100.0) * widening(self.calibration, level)
        return quantile * extended_scale(self.scale, steps)


def fit_scores(errors: np.ndarray, calibration: Calibration = ()) -> ConformalScores | None:
    """The conformal scores of backtest errors.

    Args:
        errors: ``actual - prediction``, one row per window, one column per step; ``nan``
            where the actual was not observed.
        calibration: the job's widening factors, kept with the scores.

    Returns:
        The scores, or None when there is no observed error to learn from.
    """
    absolute = np.abs(np.atleast_2d(np.asarray(errors, dtype=float)))
    if absolute.size == 0 or not np.isfinite(absolute).any():
        return None
    scale = _step_scale(absolute)
    held_out = np.vstack([_held_out_scores(absolute, held) for held in range(len(absolute))])
    if not np.isfinite(held_out).any():  # one window with observed values: nothing to hold out
        held_out = absolute / scale
    return ConformalScores(scale=scale, scores=np.sort(held_out[np.isfinite(held_out)]),
                           calibration=calibration)  # fmt: skip


def _held_out_scores(absolute: np.ndarray, held: int) -> np.ndarray:
    others = np.delete(absolute, held, axis=0)
    if not np.isfinite(others).any():
        return np.full(absolute.shape[1], np.nan)
    return absolute[held] / _step_scale(others)


def interval_columns(
    predictions: np.ndarray, scores: ConformalScores, levels: Sequence[float]
) -> dict[str, np.ndarray]:
    """``lo-80``/``hi-80``-style columns around ``predictions``, lower levels first."""
    columns = {}
    for level, half in nested_half_widths(scores, levels, len(predictions)).items():
        label = level_label(level)
        columns[f"lo-{label}"] = predictions - half
        columns[f"hi-{label}"] = predictions + half
    return columns


def nested_half_widths(
    scores: ConformalScores, levels: Sequence[float], steps: int
) -> dict[float, np.ndarray]:
    """Each level's half-widths, lowest level first, none narrower than a lower level's: a
    calibration can widen a lower level more than a higher one, and the higher interval must
    still hold the lower."""
    widths: dict[float, np.ndarray] = {}
    below = np.zeros(steps)
    for level in sorted(float(level) for level in levels):
        below = np.maximum(below, scores.half_widths(level, steps))
        widths[level] = below
    return widths


def coverage(
    errors: np.ndarray, levels: Sequence[float], calibration: Calibration = ()
) -> dict[float, float]:
    """Each level's empirical coverage over the backtest, out of sample window by window: the
    intervals that judge a window are learnt from the other windows only (and widened by
    ``calibration``, as the model's are).

    Returns:
        ``{level: share of observed values inside their interval}``; ``nan`` with fewer than
        two windows.
    """
    errors = np.asarray(errors, dtype=float)
    inside: dict[float, list[bool]] = {float(level): [] for level in levels}
    if len(errors) >= 2:
        for held in range(len(errors)):
            scores = fit_scores(np.delete(errors, held, axis=0), calibration)
            row = errors[held]
            seen = np.isfinite(row)
            if scores is None or not seen.any():
                continue
            widths = nested_half_widths(scores, list(inside), len(row))
            for level, hits in inside.items():
                half = widths[level]
                hits.extend((np.abs(row[seen]) <= half[seen]).tolist())
    return {level: float(np.mean(hits)) if hits else math.nan for level, hits in inside.items()}


def level_label(level: float) -> str:
    """``80`` for 80.0, ``97.5`` for 97.5: how a level appears in column names."""
    return str(int(level)) if float(level).is_integer() else str(level)


def _step_scale(absolute: np.ndarray) -> np.ndarray:
    overall = float(np.nanmean(absolute))
    with np.errstate(all="ignore"):
        counts = np.isfinite(absolute).sum(axis=0)
        per_step = np.where(counts > 0, np.nansum(absolute, axis=0) / np.maximum(counts, 1),
                            overall)  # fmt: skip
    floor = overall * 1e-3 if overall > 0 else 1e-9
    return np.maximum(np.maximum.accumulate(per_step), floor)


def extended_scale(scale: np.ndarray, steps: int) -> np.ndarray:
    """``scale`` for ``steps`` steps ahead: cut, or grown beyond its last step with the square
    root of the step."""
    if steps <= len(scale):
        return scale[:steps]
    known = len(scale)
    beyond = scale[-1] * np.sqrt(np.arange(known + 1, steps + 1) / known)
    return np.concatenate([scale, beyond])


def conformal_share(count: int, level: float) -> float:
    """The share of ``count`` sorted scores below the split-conformal quantile at ``level``
    (a fraction): the rank that :meth:`ConformalScores.half_widths` takes, over ``count``."""
    return min(math.ceil((count + 1) * level), count) / count


def _quantile(scores: np.ndarray, level: float) -> float:
    # The split-conformal quantile: the ceil((n + 1) * level)-th smallest score, so that a new
    # score falls below it with probability at least ``level``; the largest when n is small.
    rank = min(math.ceil((len(scores) + 1) * level), len(scores))
    return float(scores[max(rank, 1) - 1])
