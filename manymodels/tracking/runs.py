"""The MLflow run of a job: opened, resumed or claimed, logged to, and finished.

A job is "the same command" as an earlier one when its :func:`config_hash` is equal. An
unfinished run of the same command whose driver is gone is resumed (claimed by this driver);
``--resume`` names one; ``--fresh`` always starts a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manymodels import lineage
from manymodels.errors import ResumeError
from manymodels.tracking import run_logs

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from manymodels.config import Config
    from manymodels.tracking.store import Tracking

__all__ = ["JobRun", "config_hash", "open_job_run", "retire_abandoned"]


@dataclass
class JobRun:
    """The MLflow run of a job, new or resumed, and what a job records on it.

    Attributes:
        job_id: the job's id (also the run's name).
        run: the MLflow run as it was opened.
        resumed: whether an earlier driver started it.
        client: the MLflow client the run was opened with.
    """

    job_id: str
    run: Run
    resumed: bool
    client: MlflowClient

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def artifact_uri(self) -> str:
        return self.run.info.artifact_uri

    @property
    def experiment_id(self) -> str:
        return self.run.info.experiment_id

    def log_config(self, config: Config, extra: dict[str, Any]) -> None:
        """The config as parameters and as ``config.yaml``, with credentials masked."""
        run_logs.log_config(self.client, self.run_id, config, extra)

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Summary metrics, in one batch (undefined values are left out)."""
        run_logs.log_metrics(self.client, self.run_id, metrics)

    def log_table(self, frame: pd.DataFrame, name: str) -> None:
        """A table artifact: Parquet, or CSV when ``name`` ends in ``.csv``."""
        run_logs.log_table(self.client, self.run_id, frame, name)

    def log_json(self, data: Any, name: str) -> None:
        """A JSON artifact."""
        run_logs.log_json(self.client, self.run_id, data, name)

    def log_text(self, text: str, name: str) -> None:
        """A text artifact."""
        run_logs.log_text(self.client, self.run_id, text, name)

    def log_file(self, path: str) -> None:
        """A local file as an artifact, under its own name."""
        run_logs.log_file(self.client, self.run_id, path)

    def end(self, status: str) -> None:
        """End the run: ``FINISHED``, ``FAILED``, or ``KILLED`` to leave it resumable."""
        self.client.set_terminated(self.run_id, status=status)

    def read_json_of(self, job_id: str, name: str) -> Any | None:
        """A JSON artifact that another job of this experiment logged; None where that job or
        its artifact cannot be found."""
        run = _job_run(self.client, self.experiment_id, job_id)
        if run is None:
            return None
        with tempfile.TemporaryDirectory() as folder:
            try:
                local = self.client.download_artifacts(run.info.run_id, name, folder)
                return json.loads(Path(local).read_text(encoding="utf-8"))
            except Exception:  # noqa: BLE001 - never logged, unreadable, or its store is down
                return None


def config_hash(config: Config, kind: str, extra: str = "") -> str:
    """Identifies "the same command": equal for reruns of one job, different otherwise."""
    payload = config.model_dump(mode="json", exclude={"source", "compute", "failures"})
    text = json.dumps({"kind": kind, "config": payload, "extra": extra}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def open_job_run(
    session: Tracking, config: Config, kind: str, digest: str, resume: str | None, fresh: bool
) -> JobRun:
    """Resume the named job, or an unfinished job of the same command, or start a new one.

    Raises:
        ResumeError: ``resume`` names a job that does not exist or already finished.
    """
    job = _find_or_start(session, config, kind, digest, resume, fresh)
    fallback = session.registry.fallback
    if fallback is not None:
        # The registry is written one model at a time: slower, and said where it is seen.
        job.client.set_tag(job.run_id, lineage.REGISTRY_FALLBACK, fallback[:500])
    return job


def _find_or_start(
    session: Tracking, config: Config, kind: str, digest: str, resume: str | None, fresh: bool
) -> JobRun:
    client = session.client
    if resume:
        return JobRun(resume, _named_run(session, resume, kind, digest), True, client)
    if not fresh:
        run = _unfinished_run(session, kind, digest)
        if run is not None:
            return JobRun(run.data.tags[lineage.JOB_ID], _claim(session, run), True, client)
    job_id = f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    tags = {
        lineage.JOB_ID: job_id,
        lineage.JOB_KIND: kind,
        lineage.CONFIG_HASH: digest,
        lineage.DRIVER: _driver(),
        **config.tracking.tags,
    }
    run = client.create_run(session.experiment_id, run_name=job_id, tags=tags)
    return JobRun(job_id, run, False, client)


def _job_run(client: MlflowClient, experiment_id: str, job_id: str) -> Run | None:
    """The run of job ``job_id`` in the experiment, if there is one."""
    query = f"tags.`{lineage.JOB_ID}` = '{job_id}'"
    runs = client.search_runs([experiment_id], query, max_results=1)
    return runs[0] if runs else None


def _named_run(session: Tracking, job_id: str, kind: str, digest: str) -> Run:
    run = _job_run(session.client, session.experiment_id, job_id)
    if run is None:
        raise ResumeError(f"--resume: no job {job_id} in this experiment. Hint: copy the job id "
                       "from the summary of the job to resume.")  # fmt: skip
    found = run.data.tags.get(lineage.JOB_KIND)
    if found != kind:
        raise ResumeError(f"--resume: job {job_id} is a {found} job, not {kind}.")
    if run.info.status == "FINISHED":
        raise ResumeError(
            f"--resume: job {job_id} already finished; run without --resume for a new one."
        )
    started_with = run.data.tags.get(lineage.CONFIG_HASH)
    if started_with != digest:
        # Resuming with another template, horizon or data layout would mix two jobs in one.
        raise ResumeError(
            f"--resume: job {job_id} was started with another config (digest {started_with}, "
            f"this config's is {digest}); resume it with the config it started with, or run "
            "without --resume to start a new job."
        )
    return _claim(session, run)


def retire_abandoned(session: Tracking, kind: str) -> list[str]:
    """Mark KILLED the RUNNING runs of ``kind`` whose driver, on this machine, is gone (a
    SIGKILLed forecast could not end its own run); a driver on another machine is left alone.

    Returns:
        The ids of the runs marked KILLED.
    """
    runs = session.client.search_runs(
        [session.experiment_id],
        filter_string=f"tags.`{lineage.JOB_KIND}` = '{kind}' and attributes.status = 'RUNNING'",
        max_results=100,
    )
    retired = []
    for run in runs:
        host, _, pid = (run.data.tags.get(lineage.DRIVER) or "").rpartition(":")
        here = host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid()
        if here and not _driver_alive(run.data.tags.get(lineage.DRIVER)):
            session.client.set_terminated(run.info.run_id, status="KILLED")
            retired.append(run.info.run_id)
    return retired


def _unfinished_run(session: Tracking, kind: str, digest: str) -> Run | None:
    runs = session.client.search_runs(
        [session.experiment_id],
        filter_string=(
            f"tags.`{lineage.CONFIG_HASH}` = '{digest}' and attributes.status != 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=10,
    )
    for run in runs:
        tags = run.data.tags
        if tags.get(lineage.JOB_KIND) == kind and not _driver_alive(tags.get(lineage.DRIVER)):
            return run
    return None


def _claim(session: Tracking, run: Run) -> Run:
    session.client.set_tag(run.info.run_id, lineage.DRIVER, _driver())
    session.client.update_run(run.info.run_id, status="RUNNING")
    return session.client.get_run(run.info.run_id)


def _driver() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _driver_alive(tag: str | None) -> bool:
    """Whether the driver that owns a RUNNING job still lives (only knowable on its host)."""
    if not tag or ":" not in tag:
        return False
    host, _, pid = tag.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
