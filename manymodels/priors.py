"""A job-level prior on the candidates: what the whole panel says about each one.

Three backtest windows per entity choose noisily among several candidates: a candidate that is
weak on nearly every series of a panel still wins some entities by luck, and loses them on new
data. The prior is each candidate's mean backtest error relative to the best candidate of the
same entity, over every entity of the job (relative, so RMSE-judged and MASE-judged entities
mix); a candidate ``d`` above the best job-wide mean has its own backtest metric multiplied by
``1 + strength * d`` when an entity chooses. A candidate that wins most series is not
penalised; the entity's own backtests still decide between candidates close on the panel.

The default strength, 0.5, was chosen on the development panels (see benchmarks/README.md),
from each entity's stored backtests and final-window forecasts: from 0.35 to 1 it moves the
final-window MASE of ``prison`` from 2.061 to 2.03-2.05 and of ``aus_livestock`` from 0.967 to
0.950-0.955, and orange juice by less than 0.005; below 0.3 ``aus_livestock`` gains less
(0.958-0.962), above 1.5 it loses again. Pure: no Dask, no MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["MIN_ENTITIES", "RELATIVE_CAP", "Prior", "job_prior", "relative_scores"]

Prior = Mapping[str, float]
"""Each candidate's penalty factor (1 for the best), by candidate name."""

MIN_ENTITIES = 20
"""Fewer entities than this say too little about a panel: no prior."""

RELATIVE_CAP = 10.0
"""A candidate's relative score is capped, so that one wild series cannot rule it out."""


def relative_scores(metrics: Mapping[str, float]) -> dict[str, float]:
    """Each candidate's backtest metric divided by the entity's best (1 for the winner).

    Args:
        metrics: the deciding metric of each candidate that has one, by candidate name.

    Returns:
        The ratios, capped at :data:`RELATIVE_CAP`; empty when no metric is finite. Where
        the best is 0 (a series every candidate forecasts perfectly), 1 for a tie, else the cap.
    """
    finite = {name: value for name, value in metrics.items() if math.isfinite(value)}
    if not finite:
        return {}
    best = min(finite.values())
    if best <= 0:
        return {name: 1.0 if value <= best else RELATIVE_CAP for name, value in finite.items()}
    return {name: min(value / best, RELATIVE_CAP) for name, value in finite.items()}


def job_prior(entities: Iterable[Mapping[str, float]], strength: float) -> dict[str, float]:
    """The penalty factor of each candidate from the relative scores of a job's entities.

    Args:
        entities: each entity's :func:`relative_scores`.
        strength: how much the panel weighs against an entity's own backtests (0: not at all).

    Returns:
        ``{candidate: 1 + strength * (its mean - the lowest mean)}``; empty with fewer than
        :data:`MIN_ENTITIES` entities or a strength of 0.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    scored = 0
    for scores in entities:
        if not scores:
            continue
        scored += 1
        for name, value in scores.items():
            sums[name] = sums.get(name, 0.0) + value
            counts[name] = counts.get(name, 0) + 1
    if scored < MIN_ENTITIES or strength <= 0:
        return {}
    means = {name: sums[name] / counts[name] for name in sums}
    best = min(means.values())
    return {name: 1.0 + strength * (mean - best) for name, mean in sorted(means.items())}
