"""Reading jobs back from MLflow: finding training runs and downloading their tables."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from manymodels import lineage

if TYPE_CHECKING:
    from mlflow.entities import Run

    from manymodels.tracking.store import Tracking

__all__ = ["download_table", "read_table", "training_runs"]


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
    with tempfile.TemporaryDirectory() as scratch:
        path = download_table(session, run_id, name, Path(scratch))
        if path is None:
            return None
        return pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)


def download_table(session: Tracking, run_id: str, name: str, folder: Path) -> Path | None:
    """Copy a table artifact of the run into ``folder``; None when the run has none."""
    if name not in {item.path for item in session.client.list_artifacts(run_id)}:
        return None
    # MLflow draws a progress bar for every download; one table needs none.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return Path(session.client.download_artifacts(run_id, name, str(folder)))
