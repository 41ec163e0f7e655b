"""What a training job logs for people to explore in the MLflow UI, beside its own tables.

* ``entity_results.csv``: the per-entity table in a form the UI previews (the Parquet copy
  stays for programs); tracebacks are left to ``failures.csv``.
* numeric spread metrics (``median_mase``, ``p90_mase``, ``failure_share``...), which runs can
  be filtered and sorted by, where model version tags are strings;
* ``report.html``: the job's report (see :mod:`manymodels.exploration.html_report`), which the
  UI displays in its artifact view.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from manymodels.config import Config
from manymodels.data import Partition
from manymodels.exploration.jobdata import SKILL_COL, JobData
from manymodels.metrics import METRICS

if TYPE_CHECKING:
    from manymodels.jobs.backtests import BacktestFiles
    from manymodels.tracking.runs import JobRun
    from manymodels.tracking.store import Tracking

__all__ = ["job_data", "log_exploration", "spread_metrics"]

logger = logging.getLogger(__name__)

RESULTS_CSV = "entity_results.csv"
REPORT_ARTIFACT = "report.html"


def spread_metrics(entities: pd.DataFrame) -> dict[str, float]:
    """Median and 90th percentile of each holdout metric over the trained entities, and the
    share of entities that beat seasonal naive when the table has ``skill_mase``."""
    trained = entities[entities["status"] == "ok"] if "status" in entities else entities
    metrics: dict[str, float] = {}
    for name in [*METRICS, SKILL_COL]:
        if name not in trained:
            continue
        values = pd.to_numeric(trained[name], errors="coerce").to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if len(values):
            metrics[f"median_{name}"] = float(np.median(values))
            metrics[f"p90_{name}"] = float(np.quantile(values, 0.9))
    if SKILL_COL in trained and trained[SKILL_COL].notna().any():
        skill = pd.to_numeric(trained[SKILL_COL], errors="coerce").dropna()
        metrics["share_beating_naive"] = float((skill > 0).mean())
    return metrics


def log_exploration(run: JobRun, job: JobData, session: Tracking | None = None) -> None:
    """Log the CSV table, the spread metrics and the HTML report to the job's run.

    Never raises for the report: a job that trained its models has succeeded, whether or not
    its report could be drawn (missing plotting libraries, an odd series); the reason is
    logged as a warning instead.
    """
    readable = job.entities.drop(columns=["traceback"], errors="ignore")
    run.log_table(readable, RESULTS_CSV)
    run.log_metrics(spread_metrics(job.entities))
    try:
        from manymodels.exploration.html_report import render_report

        page = render_report(job, session)
    except Exception as exc:  # noqa: BLE001 - see the docstring: the report is best effort
        logger.warning("the job's report.html was not made: %s: %s", type(exc).__name__, exc)
        return
    run.log_text(page, REPORT_ARTIFACT)


def job_data(
    config: Config,
    job_id: str,
    run_id: str,
    kind: str,
    entities: pd.DataFrame,
    metrics: dict[str, float],
    params: dict[str, str],
    backtest: BacktestFiles | None = None,
    partitions: list[Partition] | None = None,
) -> JobData:
    """The :class:`JobData` of a job that is finishing, from what its driver holds (its
    listing of the dataset too, so that the report does not list it again)."""
    return JobData(
        config=config,
        job_id=job_id,
        run_id=run_id,
        kind=kind,
        status="FINISHED",
        started=None,
        params=params,
        metrics=metrics,
        entities=entities.copy(),
        backtest=backtest if backtest is not None and backtest.paths else None,
        partitions=partitions,
    )
