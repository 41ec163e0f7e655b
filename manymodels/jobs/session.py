"""What every job does before its first task: validate, open tracking, find or start its run.

Validation (template, parameters, dataset layout and columns) happens before the tracking store
is touched, so bad input leaves nothing behind in the registry or the outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import yaml

from manymodels import tracking
from manymodels.candidates import ModelPlan, plan_models
from manymodels.config import Config
from manymodels.data import Partition, check_columns, discover_partitions
from manymodels.engine import MLFLOW_MODULES
from manymodels.errors import ManyModelsError, ResumeError, UnreadableFileError
from manymodels.registry import Registry
from manymodels.secrets import remember_config, scrub

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = [
    "Inputs",
    "JobRun",
    "Tracking",
    "open_job_run",
    "open_tracking",
    "validate_inputs",
    "worker_modules",
]

JOB_ID_TAG = "manymodels.job_id"
KIND_TAG = "manymodels.job_kind"
HASH_TAG = "manymodels.config_hash"
# Partitions whose footers validation tries before it gives up on the dataset.
_SCHEMA_PROBES = 5
DRIVER_TAG = "manymodels.driver"


@dataclass(frozen=True)
class Inputs:
    """A job's validated inputs (a forecast needs no template: ``plan`` is None)."""

    config: Config
    plan: ModelPlan | None
    params: dict[str, Any]
    partitions: list[Partition]

    @property
    def trained_plan(self) -> ModelPlan:
        """The model plan of a training job (validated with ``needs_template=True``)."""
        if self.plan is None:
            raise TypeError("these inputs were validated without a template")
        return self.plan


@dataclass
class Tracking:
    """An open connection to the tracking store and registry."""

    target: tracking.TrackingTarget
    client: MlflowClient
    experiment_id: str
    registry: Registry


def validate_inputs(config: Config, needs_template: bool = True) -> Inputs:
    """Check the template and its parameters (when ``needs_template``) and the dataset's
    layout and columns, before anything is written.

    Raises:
        ManyModelsError: with the config file's name in front of the message.
    """
    remember_config(config)
    plan, params = None, {}
    try:
        if needs_template:
            plan = plan_models(config.model)
            params = plan.params
        data = config.data
        partitions = discover_partitions(data.path, data.partition_by, data.storage_options)
        required = {col: "data.id_cols" for col in data.entity_cols}
        required.update({col: "data.exog_cols" for col in data.exog_cols})
        required.update({data.time_col: "data.time_col", data.target_col: "data.target_col"})
        _check_columns(partitions, required, [data.target_col, *data.exog_cols], config)
        if needs_template or not config.tracking.uri:  # the ledger, or the embedded store
            _check_writable(config.work_dir)
    except ManyModelsError as exc:
        raise type(exc)(f"{config.label()}: {exc}") from None
    return Inputs(config, plan, params, partitions)


def _check_columns(
    partitions: list[Partition], required: dict[str, str], numeric: list[str], config: Config
) -> None:
    """Check the columns on the first partition whose footer reads: a corrupt file fails its
    own partition at train time, whichever partition it is."""
    first_error: UnreadableFileError | None = None
    for partition in partitions[:_SCHEMA_PROBES]:
        try:
            check_columns(partition, required, numeric, config.data.storage_options)
            return
        except UnreadableFileError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def _check_writable(work_dir: str) -> None:
    existing = os.path.abspath(work_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise ManyModelsError(
            f"work_dir: {os.path.abspath(work_dir)} is not writable ({existing} is not a "
            "writable folder). Hint: set work_dir to a folder you can write to."
        )


def worker_modules(config: Config) -> tuple[str, ...]:
    """The modules each worker imports while the cluster starts, not inside its first task:
    the configured built-in template's (scikit-learn, statsmodels; a forecast's models were most
    likely trained with it), and MLflow's when the job talks to a tracking server, whose
    artifact store may be remote. With a local artifact store, workers write and read model
    folders and job bundles without MLflow. A user's template travels inside the task."""
    try:
        modules = plan_models(config.model).builtin_modules
    except ManyModelsError:  # reported by validation, with the config's name
        modules = []
    if config.tracking.uri:
        modules.extend(MLFLOW_MODULES)
    return tuple(modules)


def open_tracking(config: Config) -> Tracking:
    """Connect to the configured (or embedded) MLflow store and find the experiment."""
    target = tracking.resolve_target(
        config.tracking.uri, config.tracking.registry_uri, config.work_dir
    )
    client = tracking.client_for(target)
    try:
        experiment_id = tracking.ensure_experiment(
            client, config.tracking.experiment, target.artifact_location
        )
    except Exception as exc:
        raise ManyModelsError(
            f"{config.label()}: tracking.uri: cannot use the MLflow store at {target.describe()} "
            f"({type(exc).__name__}: {scrub(str(exc))[:200]})."
        ) from None
    registry = Registry(client, config.tracking.model_prefix, bulk=config.tracking.bulk_registry)
    return Tracking(target, client, experiment_id, registry)


@dataclass
class JobRun:
    """The MLflow run of a job, new or resumed."""

    job_id: str
    run: Run
    resumed: bool

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def artifact_uri(self) -> str:
        return self.run.info.artifact_uri


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
    if resume:
        return JobRun(resume, _named_run(session, resume, kind), resumed=True)
    if not fresh:
        run = _unfinished_run(session, kind, digest)
        if run is not None:
            return JobRun(run.data.tags[JOB_ID_TAG], _claim(session, run), resumed=True)
    job_id = f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    tags = {JOB_ID_TAG: job_id, KIND_TAG: kind, HASH_TAG: digest, DRIVER_TAG: _driver(),
            **config.tracking.tags}  # fmt: skip
    run = tracking.start_run(session.client, session.experiment_id, job_id, tags)
    return JobRun(job_id, run, resumed=False)


def log_config(session: Tracking, run_id: str, config: Config, extra: dict[str, Any]) -> None:
    """The config as parameters and as ``config.yaml``, with credentials masked."""
    payload = _redacted(config.model_dump(mode="json", exclude={"source"}))
    flat = {**_flatten(payload), **extra}
    tracking.log_params(session.client, run_id, flat)
    tracking.log_text(
        session.client, run_id, yaml.safe_dump(payload, sort_keys=False), "config.yaml"
    )


def _named_run(session: Tracking, job_id: str, kind: str) -> Run:
    runs = session.client.search_runs(
        [session.experiment_id], filter_string=f"tags.`{JOB_ID_TAG}` = '{job_id}'", max_results=1
    )
    if not runs:
        raise ResumeError(f"--resume: no job {job_id} in this experiment. Hint: copy the job id "
                       "from the summary of the job to resume.")  # fmt: skip
    run = runs[0]
    if run.data.tags.get(KIND_TAG) != kind:
        raise ResumeError(
            f"--resume: job {job_id} is a {run.data.tags.get(KIND_TAG)} job, not {kind}."
        )
    if run.info.status == "FINISHED":
        raise ResumeError(
            f"--resume: job {job_id} already finished; run without --resume for a new one."
        )
    return _claim(session, run)


def _unfinished_run(session: Tracking, kind: str, digest: str) -> Run | None:
    runs = session.client.search_runs(
        [session.experiment_id],
        filter_string=f"tags.`{HASH_TAG}` = '{digest}' and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=10,
    )
    for run in runs:
        if run.data.tags.get(KIND_TAG) == kind and not _driver_alive(run.data.tags.get(DRIVER_TAG)):
            return run
    return None


def _claim(session: Tracking, run: Run) -> Run:
    session.client.set_tag(run.info.run_id, DRIVER_TAG, _driver())
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


def _flatten(payload: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("params", "storage_options", "tags"):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, dict | list) else value
    return flat


def _redacted(payload: dict[str, Any]) -> dict[str, Any]:
    tracking_section = dict(payload.get("tracking") or {})
    for key in ("uri", "registry_uri"):
        if tracking_section.get(key):
            tracking_section[key] = scrub(tracking_section[key])
    data = dict(payload.get("data") or {})
    if data.get("storage_options"):
        data["storage_options"] = {key: "***" for key in data["storage_options"]}
    return {**payload, "tracking": tracking_section, "data": data}
