"""Calibrating a panel's prediction intervals on its most recent backtest window.

Each entity's conformal intervals (see :mod:`manymodels.intervals`) are learnt from its own
backtest errors: a few windows that share one stretch of history. Whether intervals learnt that
way hold on the *next* stretch is a question about the panel: when a whole panel's errors grew
lately, every entity's intervals are too narrow at once, and no entity's three windows can say
so. The first phase of a job that chooses among candidates answers it as a forecaster would,
without looking past its data: for each entity it chooses a candidate and learns intervals from
every backtest window but the last, as the final model's are learnt from all of them, and
measures by how much each interval would have had to be widened to hold the last window's
observed values. Pooled over the panel, the conformal quantile of those ratios at each level is
the factor by which every entity's final intervals at that level are widened. A factor below
one is not applied: an entity's own intervals are the floor.

On the development panels (see benchmarks/README.md) the factor at 80% is 1.56 on ``prison``,
whose last years broke from its past (final-window coverage 64% before, 78% after), 1.08 on
orange juice (82% before, 84% after) and 1.00 on ``aus_livestock``.

The ratios are pooled in a histogram per level, summed on the workers, so the driver receives
one small array per batch of entities. Pure: no Dask, no MLflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from manymodels.intervals import Calibration, conformal_share, extended_scale, fit_scores
from manymodels.priors import MIN_ENTITIES

__all__ = ["LEVELS", "RatioHistogram", "forward_ratios"]

LEVELS = (50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0, 97.5, 99.0)
"""The levels a calibration has a factor for; others are interpolated between them."""

# Ratios from 1/32 to 32, in bins 1.4% wide: a factor is the upper edge of its bin.
_EDGES = np.geomspace(1 / 32, 32, 513)


def forward_ratios(errors: np.ndarray) -> np.ndarray | None:
    """How much an entity's intervals, learnt without its last backtest window, would have had
    to widen to hold that window's observed values.

    Args:
        errors: ``actual - prediction`` of the candidate chosen without the last window, one
            row per window (the last one last), one column per step; ``nan`` where unobserved.

    Returns:
        One row per level of :data:`LEVELS`, one column per observed value of the last window;
        None with fewer than two windows or nothing observed to learn from or to check.
    """
    errors = np.atleast_2d(np.asarray(errors, dtype=float))
    last = errors[-1]
    seen = np.isfinite(last)
    earlier = fit_scores(errors[:-1]) if len(errors) >= 2 else None
    if earlier is None or not seen.any():
        return None
    # The final intervals take a share of all windows' scores; the check takes the same share
    # of the earlier ones, so that it measures intervals built as the final ones are.
    count = int(np.isfinite(errors).sum())
    scale = extended_scale(earlier.scale, len(last))[seen]
    ratios = []
    for level in LEVELS:
        quantile = float(np.quantile(earlier.scores, conformal_share(count, level / 100.0)))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(last[seen]) / (quantile * scale)
        ratios.append(np.where(np.abs(last[seen]) == 0, 0.0, ratio))
    return np.vstack(ratios)


@dataclass
class RatioHistogram:
    """The forward ratios of many entities, pooled per level (see :func:`forward_ratios`).

    Attributes:
        counts: per level of :data:`LEVELS`, the number of ratios in each bin (below the
            first edge, between edges, above the last).
        entities: how many entities contributed.
    """

    counts: np.ndarray = field(
        default_factory=lambda: np.zeros((len(LEVELS), len(_EDGES) + 1), dtype=np.int64)
    )
    entities: int = 0

    def add(self, ratios: np.ndarray | None) -> None:
        """Count one entity's :func:`forward_ratios` (None: nothing to count)."""
        if ratios is None:
            return
        for row, level_ratios in enumerate(ratios):
            np.add.at(self.counts[row], np.searchsorted(_EDGES, level_ratios), 1)
        self.entities += 1

    def __add__(self, other: RatioHistogram) -> RatioHistogram:
        return RatioHistogram(self.counts + other.counts, self.entities + other.entities)

    def calibration(self) -> Calibration:
        """Each level's widening factor: the conformal quantile of the pooled ratios at that
        level, at least 1; empty with fewer than :data:`~manymodels.priors.MIN_ENTITIES`
        entities, which say too little about a panel."""
        if self.entities < MIN_ENTITIES:
            return ()
        return tuple((level, max(1.0, self._quantile(row, level / 100.0)))
                     for row, level in enumerate(LEVELS))  # fmt: skip

    def _quantile(self, row: int, level: float) -> float:
        counts = self.counts[row]
        total = int(counts.sum())
        rank = min(math.ceil((total + 1) * level), total)
        index = int(np.searchsorted(np.cumsum(counts), rank))
        return float(_EDGES[min(index, len(_EDGES) - 1)])
