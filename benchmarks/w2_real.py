"""W2, real models: 1,000 entities, gradient boosting (100 trees of depth 3) on the W1 features.

Target: within 1.15x of the 2-core floor end to end, with the default ``per_entity``
registration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import (
    GRADIENT_BOOSTING,
    REFERENCE,
    Outcome,
    Row,
    job_extra,
    joblib_row,
    measure_fit_workload,
    registration_note,
)

N_WEEKS = 156
MAX_RATIO = 1.15


def run(root: Path, n_entities: int, state: dict[str, Any]) -> Outcome:
    work = measure_fit_workload(root, "w2", n_entities, N_WEEKS, GRADIENT_BOOSTING, ["per_entity"])
    floor = work.loop.floor
    _, job = work.jobs["per_entity"]
    ratio = job.seconds / floor if job.ok else None
    spark = REFERENCE["spark_apply_in_pandas_ratio"]["W2"]
    tuned = REFERENCE["tuned_mlflow_loop_ratio"]["W2"]
    registered = job.counts.model_versions if job.ok and job.counts else 0
    row = Row(
        workload="W2 real: train per_entity", entities=n_entities, floor_s=floor,
        seconds=job.seconds if job.ok else None,
        rate=registered / job.seconds if job.ok else None,
        target=f"<= {MAX_RATIO}x floor", met=ratio is not None and ratio <= MAX_RATIO,
        detail="" if job.ok else "job failed",
        reference=f"Spark {spark}x; tuned MLflow loop {tuned:.0f}x",
        extra={**job_extra(job), "sequential_s": work.loop.seconds},
    )  # fmt: skip
    return Outcome(
        rows=[row, joblib_row("W2", work, REFERENCE["joblib_ratio"]["W2"])],
        notes=["W2 " + registration_note("per_entity", job)],
    )
