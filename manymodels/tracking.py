"""MLflow tracking: where the store is, one run per job, and the job's artifacts.

With no ``tracking.uri`` the embedded default is a SQLite database and an artifact folder under
``work_dir``, both by absolute path (a relative SQLite path would resolve differently in every
process). Only the driver writes to the tracking store; workers only upload artifacts.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from manymodels import schema_cache
from manymodels.errors import ManyModelsError
from manymodels.secrets import scrub

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = [
    "TrackingTarget",
    "client_for",
    "ensure_experiment",
    "resolve_target",
    "upload_dir",
]

_QUIET_LOGGERS = (
    "mlflow.store.db.utils",
    "alembic",
    "mlflow.tracking._tracking_service.client",
    # One "waiting for model version creation" line per registered version, against a server.
    "mlflow.store.model_registry.abstract_store",
)


@dataclass(frozen=True)
class TrackingTarget:
    """Where runs, models and artifacts go.

    Attributes:
        tracking_uri: the MLflow tracking URI.
        registry_uri: the model registry URI (the tracking URI unless set).
        artifact_location: the experiment's artifact root for the embedded store, else None
            (the server decides).
    """

    tracking_uri: str
    registry_uri: str
    artifact_location: str | None

    @property
    def embedded(self) -> bool:
        return self.artifact_location is not None

    def describe(self) -> str:
        """The tracking URI with any password masked, for printing."""
        return scrub(self.tracking_uri)


def resolve_target(uri: str | None, registry_uri: str | None, work_dir: str) -> TrackingTarget:
    """The tracking target of a job: the configured server, or the embedded SQLite store."""
    if uri:
        return TrackingTarget(uri, registry_uri or uri, None)
    root = Path(work_dir).resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ManyModelsError(
            f"work_dir: cannot create {root} ({exc.strerror or exc}). Hint: set work_dir to a "
            "writable folder."
        ) from None
    store = f"sqlite:///{root / 'mlflow.db'}"
    return TrackingTarget(store, registry_uri or store, (root / "mlartifacts").as_uri())


def client_for(target: TrackingTarget) -> MlflowClient:
    """An MLflow client on the target; also makes it the process default so that
    ``mlflow.pyfunc.load_model('models:/...')`` resolves against the same registry."""
    import mlflow

    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # The job summary names the run; MLflow would also print a link on every run it ends.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    mlflow.set_tracking_uri(target.tracking_uri)
    mlflow.set_registry_uri(target.registry_uri)
    with _creation_lock(target):
        database = _new_embedded_database(target)
        seeded = database is not None and schema_cache.seed(database)
        client = _open_client(target)
        if database is not None and not seeded:
            schema_cache.remember(database)
    return client


def _open_client(target: TrackingTarget) -> MlflowClient:
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=target.tracking_uri, registry_uri=target.registry_uri)
        # Touch both stores now, so that a new SQLite file is created under the lock.
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    except Exception as exc:
        raise ManyModelsError(
            f"tracking.uri: cannot open the MLflow store at {target.describe()} "
            f"({type(exc).__name__}: {scrub(str(exc))[:300]})."
        ) from None
    return client


def _new_embedded_database(target: TrackingTarget) -> Path | None:
    """The embedded store's SQLite file when it does not exist yet, else None."""
    if not target.embedded or not target.tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(target.tracking_uri.removeprefix("sqlite:///"))
    return None if database.exists() else database


def _creation_lock(target: TrackingTarget) -> contextlib.AbstractContextManager[object]:
    """Two jobs that create the same embedded store at once would race on its schema."""
    if not target.tracking_uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock

    database = target.tracking_uri.removeprefix("sqlite:///")
    return FileLock(f"{database}.lock", timeout=300)


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of the named experiment, created when missing (safe if two jobs race)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def start_run(
    client: MlflowClient, experiment_id: str, run_name: str, tags: Mapping[str, str]
) -> Run:
    """Open the one MLflow run of a job."""
    return client.create_run(experiment_id, run_name=run_name, tags=dict(tags))


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log flat parameters in one batch (values cut to MLflow's limit)."""
    from mlflow.entities import Param

    items = [Param(key, str(value)[:6000]) for key, value in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float]) -> None:
    """Log summary metrics in one batch, skipping undefined values."""
    import math
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [
        Metric(key, float(value), now, 0)
        for key, value in metrics.items()
        if value is not None and math.isfinite(float(value))
    ]
    if items:
        client.log_batch(run_id, metrics=items)


def log_table(client: MlflowClient, run_id: str, frame: pd.DataFrame, name: str) -> None:
    """Store a DataFrame as ``name`` (Parquet, or CSV when the name ends in .csv)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, name)
        if name.endswith(".csv"):
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        client.log_artifact(run_id, path)


def log_text(client: MlflowClient, run_id: str, text: str, name: str) -> None:
    """Store a text artifact."""
    client.log_text(run_id, text, name)


def log_json(client: MlflowClient, run_id: str, data: Any, name: str) -> None:
    """Store a JSON artifact."""
    buffer = io.StringIO()
    json.dump(data, buffer, indent=2, default=str)
    client.log_text(run_id, buffer.getvalue(), name)


def upload_dir(
    artifact_uri: str, local_dir: str, artifact_path: str, tracking_uri: str | None = None
) -> None:
    """Copy a local folder into a run's artifacts (one call per batch, not per model).

    ``tracking_uri`` resolves ``mlflow-artifacts:`` URIs, which a server proxies; a worker
    process is told it explicitly rather than relying on its environment.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)
    repository.log_artifacts(local_dir, artifact_path)


def log_file(client: MlflowClient, run_id: str, path: str, artifact_path: str | None = None) -> None:
    """Store a local file as an artifact of the run."""
    client.log_artifact(run_id, path, artifact_path)
