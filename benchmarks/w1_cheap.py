"""W1, cheap models: 2,000 entities x 156 weeks, Ridge on lags 1-8, Fourier terms and price, deal.

Targets: at least 50 registered models per second end to end (default ``per_entity``
registration), and within 1.5x of the 2-core floor with ``tracking.registration: per_job``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import (
    REFERENCE,
    RIDGE,
    Outcome,
    Row,
    job_extra,
    joblib_row,
    measure_fit_workload,
    per_job_in_place,
    registration_note,
)

N_WEEKS = 156
MIN_MODELS_PER_SECOND = 50.0
MAX_PER_JOB_RATIO = 1.5


def run(root: Path, n_entities: int, state: dict[str, Any]) -> Outcome:
    """Measure W1; leaves the trained ``per_entity`` store in ``state`` for W4 to reuse."""
    work = measure_fit_workload(root, "w1", n_entities, N_WEEKS, RIDGE, ["per_entity", "per_job"])
    floor = work.loop.floor
    spark = REFERENCE["spark_apply_in_pandas_ratio"]["W1"]
    tuned = REFERENCE["tuned_mlflow_loop_ratio"]["W1"]
    reference = f"Spark {spark}x; tuned MLflow loop {tuned:.0f}x"
    outcome = Outcome()

    _, job = work.jobs["per_entity"]
    registered = job.counts.model_versions if job.ok and job.counts else 0
    rate = registered / job.seconds if job.ok else None
    outcome.rows.append(Row(
        workload="W1 cheap: train per_entity", entities=n_entities, floor_s=floor,
        seconds=job.seconds if job.ok else None, rate=rate,
        target=f">= {MIN_MODELS_PER_SECOND:.0f} registered models/s",
        met=rate is not None and rate >= MIN_MODELS_PER_SECOND, detail=_error(job),
        reference=reference, extra={**job_extra(job), "sequential_s": work.loop.seconds},
    ))  # fmt: skip
    state["w1"] = {
        "entities": n_entities,
        "floor_s": floor,
        "floor_per_entity_s": floor / n_entities,
    }
    for mode, (trained_config, trained) in work.jobs.items():
        if trained.ok and trained.trained:
            state["w1"][mode] = {"config": trained_config, "entities": n_entities}
    outcome.notes.append("W1 " + registration_note("per_entity", job))

    _, per_job = work.jobs["per_job"]
    ratio = per_job.seconds / floor if per_job.ok else None
    in_place = per_job_in_place(per_job)
    outcome.rows.append(Row(
        workload="W1 cheap: train per_job", entities=n_entities, floor_s=floor,
        seconds=per_job.seconds if per_job.ok else None,
        rate=per_job.trained / per_job.seconds if per_job.ok else None,
        target=f"<= {MAX_PER_JOB_RATIO}x floor",
        met=ratio is not None and ratio <= MAX_PER_JOB_RATIO,
        detail=_error(per_job) or ("" if in_place else "registered per entity"),
        reference=reference, extra={**job_extra(per_job), "per_job_in_place": in_place},
    ))  # fmt: skip
    outcome.notes.append("W1 " + registration_note("per_job", per_job))
    state["per_job_in_place"] = in_place
    outcome.rows.append(joblib_row("W1", work, REFERENCE["joblib_ratio"]["W1"]))
    return outcome


def _error(job: Any) -> str:
    return "" if job.ok else "job failed"
