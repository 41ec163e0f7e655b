"""Reading jobs back from MLflow: finding training runs and downloading their tables."""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

import pandas as pd

from manymodels import lineage

if TYPE_CHECKING:
    from mlflow.entities import Run

    from manymodels.tracking.store import Tracking

__all__ = ["read_table", "training_runs"]


def training_runs(session: Tracking, job_id: str | None, max_results: int) -> list[Run]:
    """The training and retraining runs of the experiment, newest first; or the run of
    ``job_id``."""
    # Tag filters know no IN; "%train" matches both training kinds and no forecast job.
    query = f"tags.`{lineage.JOB_KIND}` LIKE '%train'"
    if job_id:
        query = f"tags.`{lineage.JOB_ID}` = '{job_id.replace(chr(39), '')}'"
    return list(
        session.client.search_runs(
            [session.experiment_id],
            filter_string=query,
            order_by=["attributes.start_time DESC"],
            max_results=max_results,
        )
    )


def read_table(session: Tracking, run_id: str, name: str) -> pd.DataFrame | None:
    """A table artifact of the run (Parquet, or CSV by its name), or None when it has none."""
    listed = {item.path for item in session.client.list_artifacts(run_id)}
    if name not in listed:
        return None
    # MLflow draws a progress bar for every download; one small table needs none.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as scratch:
        path = session.client.download_artifacts(run_id, name, scratch)
        return pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)
