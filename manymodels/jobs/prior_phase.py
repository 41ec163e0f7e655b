"""The first phase of a training job that chooses with a prior (see :mod:`manymodels.priors`).

Every entity to train is backtested first, and the backtests stay on the workers; the driver
gets each entity's relative candidate scores only, and makes the job's prior from them. The
training tasks then choose and refit where those backtests are, without running them again
(a task run again after a lost worker runs them itself). The prior is kept beside the job's
ledger, so a resumed job chooses its remaining entities with the same prior, and logged to the
job's run as ``prior.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from manymodels.config import Config
from manymodels.data import Partition
from manymodels.engine import Kept, release, submit_kept, summaries
from manymodels.priors import MIN_ENTITIES, job_prior
from manymodels.report import progress_bar
from manymodels.tasks import TrainTask, backtest_batch, backtest_scores
from manymodels.tracking.runs import JobRun

__all__ = ["FirstPhase", "chooses_with_prior", "first_phase"]


FirstPhase = tuple[TrainTask, list[Kept | None] | None]
"""The task with its prior, and per batch the future of its backtests (None: none kept)."""


def chooses_with_prior(config: Config, task: TrainTask, partitions: int) -> bool:
    """Whether the job weighs its candidates by a prior: automatic selection among several
    candidates, a positive ``model.prior``, and possibly enough entities for one (a job of
    fewer partitions than :data:`~manymodels.priors.MIN_ENTITIES`, one entity each, has not).
    """
    one_per_partition = config.data.entity_cols == list(config.data.partition_by)
    return (
        len(task.template.candidates) > 1
        and config.model.prior > 0
        and not (one_per_partition and partitions < MIN_ENTITIES)
    )


def first_phase(
    client: Any, batches: Sequence[list[Partition]], task: TrainTask, job: JobRun,
    progress: bool, name: str,
) -> FirstPhase:  # fmt: skip
    """Backtest the batches' entities and make the job's prior; a resumed job reuses its own.

    Returns:
        The task to train with, and per batch the future of its backtests.
    """
    config = task.config
    stored = _prior_file(config, job)
    if stored.exists():
        return replace(task, prior=json.loads(stored.read_text(encoding="utf-8"))), None
    to_backtest = [index for index, batch in enumerate(batches)
                   if any(partition.keys not in task.carry for partition in batch)]  # fmt: skip
    submitted = submit_kept(client, backtest_batch, [batches[i] for i in to_backtest], task,
                            name=f"{name}-backtest")  # fmt: skip
    kept: list[Kept | None] = list(submitted)
    entities: list[dict[str, float]] = []
    total = sum(len(batches[i]) for i in to_backtest)
    with progress_bar("backtest", total, progress) as bar:
        for position, outcome in summaries(client, backtest_scores, submitted):
            if isinstance(outcome, BaseException):
                # Its training task backtests these entities itself.
                release([kept[position]])
                kept[position], outcome = None, []
            entities.extend(outcome)
            bar.advance(len(batches[to_backtest[position]]), len(outcome), 0)
    prior = job_prior(entities, config.model.prior)
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(prior), encoding="utf-8")
    job.log_json({"strength": config.model.prior, "entities": len(entities), "factors": prior},
                 "prior.json")  # fmt: skip
    inputs: list[Kept | None] = [None] * len(batches)
    for position, index in enumerate(to_backtest):
        inputs[index] = kept[position]
    return replace(task, prior=prior), inputs


def _prior_file(config: Config, job: JobRun) -> Path:
    return Path(config.work_dir) / "jobs" / f"{job.job_id}.prior.json"
