"""Target transforms for lag regressors: log, per-entity scaling and differencing.

A regressor on raw lags drifts to the series' long-run mean over long horizons; on differences
it follows a trend, and on a log scale a multiplicative season becomes additive. Scaling by the
entity's mean absolute value makes one regularisation strength fit every entity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["TargetTransform", "fit_transform", "refit_transform"]

Kind = Literal["none", "log1p", "diff", "log1p_diff", "auto"]


@dataclass(frozen=True)
class TargetTransform:
    """How an entity's target was transformed before its lags were taken.

    Attributes:
        log: values went through ``log1p`` first.
        diff: first differences were modelled.
        scale: the (logged) values were divided by it.
    """

    log: bool
    diff: bool
    scale: float

    def apply(self, values: np.ndarray) -> np.ndarray:
        """The modelled series of ``values`` (one shorter when differencing)."""
        level = self._level(values)
        return np.diff(level) if self.diff else level

    def invert(self, modelled: np.ndarray, history: np.ndarray) -> np.ndarray:
        """Forecasts on the original scale from forecasts of the modelled series that follow
        ``history`` (the original values)."""
        level = modelled
        past = self._level(history)
        if self.diff:
            level = past[-1] + np.cumsum(modelled)
        level = _within_reach(level, past[np.isfinite(past)]) * self.scale
        return np.expm1(level) if self.log else level

    def _level(self, values: np.ndarray) -> np.ndarray:
        logged = np.log1p(values) if self.log else values
        return logged / self.scale


def _within_reach(level: np.ndarray, past: np.ndarray) -> np.ndarray:
    """``level`` kept within the history's range widened on either side by its width (at
    least a tenth of its largest absolute value).

    A recursive forecast whose lag coefficients sum past one grows without bound, and on a log
    scale it reaches infinity within a season; no series of the development panels moved that
    far within one horizon.
    """
    if not len(past):
        return level
    low, high = float(past.min()), float(past.max())
    width = max(high - low, abs(high) * 0.1, 1e-9)
    return np.clip(level, low - width, high + width)


def fit_transform(values: np.ndarray, kind: Kind, scale: bool) -> TargetTransform:
    """The transform of ``kind`` for one entity's ``values``.

    ``auto`` takes ``log1p`` of a series without negative values (counts, sales, volumes, whose
    seasons and promotions act by multiplication), and differences where a KPSS test rejects a
    stationary level at 5% (a trend or a random walk, which lags of the level would pull back to
    the mean; the test auto.arima uses to choose its ``d``).

    Raises:
        ValueError: a log transform of values at or below -1.
    """
    if kind == "auto":
        kind = _automatic(values)
    log = kind in ("log1p", "log1p_diff")
    if log and np.nanmin(values) <= -1:
        raise ValueError("the log1p transform needs values above -1; use transform: none or diff")
    logged = np.log1p(values) if log else values
    size = float(np.nanmean(np.abs(logged))) if scale else 1.0
    return TargetTransform(log=log, diff=kind in ("diff", "log1p_diff"),
                           scale=size if np.isfinite(size) and size > 0 else 1.0)  # fmt: skip


def _automatic(values: np.ndarray) -> Kind:
    from statsforecast.arima import ndiffs

    log = bool(np.nanmin(values) >= 0)
    level = np.log1p(values) if log else values
    level = level[np.isfinite(level)]
    trending = len(level) >= 8 and np.ptp(level) > 0 and ndiffs(level, max_d=1) > 0
    if trending:
        return "log1p_diff" if log else "diff"
    return "log1p" if log else "none"


def refit_transform(values: np.ndarray, fitted: TargetTransform, scale: bool) -> TargetTransform:
    """``fitted``'s choice of log and differencing, with the scale of ``values``: what a later
    backtest cutoff or the final refit uses, so that every fit of an entity models the same
    series."""
    kind: Kind = {(True, True): "log1p_diff", (True, False): "log1p",
                  (False, True): "diff", (False, False): "none"}[(fitted.log, fitted.diff)]  # fmt: skip
    return fit_transform(values, kind, scale)
