"""The first phase of a training job that chooses with a prior (see :mod:`manymodels.priors`).

Every entity to train is backtested first, and the backtests stay on the workers; the driver
gets a small summary per batch (each entity's relative candidate scores, and a histogram of
how its intervals held on its last backtest window) and makes the job's prior and interval
calibration (see :mod:`manymodels.calibration`) from them. The training tasks then choose and
refit where those backtests are, without running them again (a task run again after a lost
worker runs them itself). Both are kept beside the job's ledger, so a resumed job trains its
remaining entities with the same ones, and logged to the job's run as ``prior.json``.

A retrain that trains too few entities to learn a panel of its own (a few changed partitions)
takes the one of the job that trained most of its champions with the same plan.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from manymodels import lineage
from manymodels.config import Config
from manymodels.data import Partition
from manymodels.engine import Kept, release, submit_kept, summaries
from manymodels.priors import MIN_ENTITIES, job_prior
from manymodels.report import progress_bar
from manymodels.tasks import PanelEvidence, TrainTask, backtest_batch, backtest_evidence
from manymodels.tracking.runs import JobRun

__all__ = ["FirstPhase", "first_phase", "inherited_panel", "runs_first_phase", "wants_panel"]


FirstPhase = tuple[TrainTask, list[Kept | None] | None]
"""The task with its prior, and per batch the future of its backtests (None: none kept)."""


def wants_panel(config: Config, task: TrainTask) -> bool:
    """Whether the job chooses with a prior or calibrates its intervals: automatic selection
    among several candidates, with a positive ``model.prior`` or ``evaluation.calibrate``."""
    return len(task.template.candidates) > 1 and (
        config.model.prior > 0 or config.evaluation.calibrate
    )


def runs_first_phase(config: Config, task: TrainTask, partitions: int) -> bool:
    """Whether the job backtests every entity first: it :func:`wants_panel`, and has possibly
    enough entities to learn one (a job of fewer partitions than
    :data:`~manymodels.priors.MIN_ENTITIES`, one entity each, has not)."""
    one_per_partition = config.data.entity_cols == list(config.data.partition_by)
    return wants_panel(config, task) and not (
        one_per_partition and partitions < MIN_ENTITIES
    )


def first_phase(
    client: Any, batches: Sequence[list[Partition]], task: TrainTask, job: JobRun,
    progress: bool, name: str,
) -> FirstPhase:  # fmt: skip
    """Backtest the batches' entities and make the job's prior and calibration; a resumed job
    reuses its own.

    Returns:
        The task to train with, and per batch the future of its backtests.
    """
    config = task.config
    stored = _prior_file(config, job)
    if stored.exists():
        return _with_panel(task, _read(stored)), None
    to_backtest = [index for index, batch in enumerate(batches)
                   if any(partition.keys not in task.carry for partition in batch)]  # fmt: skip
    submitted = submit_kept(client, backtest_batch, [batches[i] for i in to_backtest], task,
                            name=f"{name}-backtest")  # fmt: skip
    sizes = [len(batches[index]) for index in to_backtest]
    evidence, failed = _gather(client, submitted, sizes, progress)
    panel = _panel(config, evidence)
    if not panel["factors"] and not panel["calibration"]["factors"]:
        panel = _champions_panel(task, job) or panel
    _keep(panel, stored, job)
    inputs: list[Kept | None] = [None] * len(batches)
    for position, index in enumerate(to_backtest):
        if position not in failed:  # else its training task backtests these entities itself
            inputs[index] = submitted[position]
    return _with_panel(task, panel), inputs


def _gather(
    client: Any, submitted: list[Kept], sizes: list[int], progress: bool
) -> tuple[PanelEvidence, set[int]]:
    """The evidence of every batch of kept backtests, computed where they are, and the
    positions of the batches whose backtests failed (released)."""
    evidence, failed = PanelEvidence(), set()
    with progress_bar("backtest", sum(sizes), progress) as bar:
        for position, outcome in summaries(client, backtest_evidence, submitted):
            if isinstance(outcome, BaseException):
                release([submitted[position]])
                failed.add(position)
                outcome = PanelEvidence()
            evidence.relative.extend(outcome.relative)
            evidence.ratios = evidence.ratios + outcome.ratios
            bar.advance(sizes[position], len(outcome.relative), 0)
    return evidence, failed


def inherited_panel(task: TrainTask, job: JobRun) -> TrainTask:
    """A retrain with too few entities for a first phase chooses and calibrates with the
    panel of the job that trained most of its champions with the same plan (candidates and
    their params): what the whole panel said then is a better guide than nothing."""
    stored = _prior_file(task.config, job)
    if stored.exists():
        return _with_panel(task, _read(stored))
    panel = _champions_panel(task, job)
    if panel is None:
        return task
    _keep(panel, stored, job)
    return _with_panel(task, panel)


def _champions_panel(task: TrainTask, job: JobRun) -> dict[str, Any] | None:
    trained_by = Counter(
        champion.tags[lineage.JOB_ID] for champion in task.champions.values()
        if champion.tags.get(lineage.TEMPLATE_DIGEST) == task.template.digest
        and lineage.JOB_ID in champion.tags
    )  # fmt: skip
    if not trained_by:
        return None
    source = trained_by.most_common(1)[0][0]
    logged = job.read_json_of(source, "prior.json")
    if not isinstance(logged, dict) or "factors" not in logged:
        return None
    return _adapted(logged, task.config) | {"inherited_from": source}


def _adapted(panel: dict[str, Any], config: Config) -> dict[str, Any]:
    """An earlier job's panel under this job's settings: each prior factor's distance from 1
    is proportional to the strength, and a calibration is dropped where this job wants none."""
    before, now = float(panel.get("strength", 0.0)), config.model.prior
    factors = ({name: 1.0 + (factor - 1.0) * now / before
                for name, factor in panel["factors"].items()}
               if before > 0 and now > 0 else {})  # fmt: skip
    calibration = panel.get("calibration", {"entities": 0, "factors": {}})
    if not config.evaluation.calibrate:
        calibration = {**calibration, "factors": {}}
    return {**panel, "strength": now, "factors": factors, "calibration": calibration}


def _read(stored: Path) -> dict[str, Any]:
    """A panel kept by :func:`_keep`; one kept before calibrations existed was the prior's
    factors alone."""
    panel = json.loads(stored.read_text(encoding="utf-8"))
    return panel if "factors" in panel else {"factors": panel}


def _keep(panel: dict[str, Any], stored: Path, job: JobRun) -> None:
    """Beside the ledger, for a resumed job, and on the job's run."""
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(panel), encoding="utf-8")
    job.log_json(panel, "prior.json")


def _panel(config: Config, evidence: PanelEvidence) -> dict[str, Any]:
    """What the job learnt of its panel, as stored and logged."""
    calibration = evidence.ratios.calibration() if config.evaluation.calibrate else ()
    return {
        "strength": config.model.prior,
        "entities": len(evidence.relative),
        "factors": job_prior(evidence.relative, config.model.prior),
        "calibration": {"entities": evidence.ratios.entities,
                        "factors": {str(level): factor for level, factor in calibration}},
    }  # fmt: skip


def _with_panel(task: TrainTask, panel: dict[str, Any]) -> TrainTask:
    calibration = panel.get("calibration", {}).get("factors", {})
    return replace(
        task, prior=panel.get("factors", {}),
        calibration=tuple(sorted((float(level), factor) for level, factor in calibration.items())),
        panel_from=panel.get("inherited_from"),
    )  # fmt: skip


def _prior_file(config: Config, job: JobRun) -> Path:
    return Path(config.work_dir) / "jobs" / f"{job.job_id}.prior.json"
