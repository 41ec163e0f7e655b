"""The failure budget: how many entities may fail before a job counts as failed.

``failures.max_count`` (absolute) or ``failures.max_share`` (of all entities) sets it. A training
job also stops early, before the end, when failures are clearly systematic: at least
``EARLY_STOP_MIN_FAILED`` entities and at least half of everything so far.
"""

from __future__ import annotations

import math
from typing import Any

from manymodels.config import Config
from manymodels.errors import JobError
from manymodels.jobs.results import TrainResult

__all__ = ["allowed_failures", "require_within_budget", "systematic_failure"]

# Stop early only on clear evidence of a systematic failure, not on a few bad entities.
EARLY_STOP_MIN_FAILED = 20


def allowed_failures(config: Config, total: int) -> int:
    """How many failed entities the failure budget allows out of ``total``."""
    if config.failures.max_count is not None:
        return config.failures.max_count
    return math.floor(config.failures.max_share * total + 1e-9)


def systematic_failure(config: Config, rows: list[dict[str, Any]], partitions: int) -> bool:
    """Whether the results so far already spend the budget of the whole job, with failures
    too many and too common to be a few bad entities."""
    failed = sum(row["status"] == "failed" for row in rows)
    if failed < EARLY_STOP_MIN_FAILED or failed < 0.5 * len(rows):
        return False
    return failed > allowed_failures(config, max(len(rows), partitions))


def require_within_budget(result: TrainResult, config: Config) -> None:
    """Raise when a training job's failures exceed the budget (the CLI's exit status).

    Raises:
        JobError: naming how many failed, the budget, and where the failures are listed.
    """
    if not result.budget_exceeded:
        return
    where = f"see failures.csv in run {result.run_id}, fix the data or template, then rerun"
    if result.stopped_early:
        raise JobError(
            f"stopped early: {result.failed} of the first {result.total} entities failed, which "
            f"looks systematic rather than a few bad entities; {where} to resume."
        )
    allowed = allowed_failures(config, result.total)
    raise JobError(
        f"{result.failed} of {result.total} entities failed, more than the {allowed} allowed "
        f"by failures.max_share/max_count; {where} to retry the failed ones."
    )
