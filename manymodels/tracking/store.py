"""The tracking store: where it is, opening a client on it, and the job's experiment.

With no ``tracking.uri`` the embedded default is a SQLite database and an artifact folder under
``work_dir``, both by absolute path (a relative SQLite path would resolve differently in every
process). Only the driver writes to the tracking store; workers only upload artifacts.
:func:`open_tracking` is what a job calls: the store, its experiment and the registry at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from manymodels.errors import ManyModelsError
from manymodels.secrets import scrub
from manymodels.tracking import schema_cache
from manymodels.tracking.registry import Registry

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from manymodels.config import Config

__all__ = [
    "Tracking",
    "TrackingTarget",
    "client_for",
    "ensure_experiment",
    "open_tracking",
    "resolve_target",
]

_QUIET_LOGGERS = (
    "mlflow.store.db.utils",
    "alembic",
    "mlflow.tracking._tracking_service.client",
    # One "waiting for model version creation" line per registered version, against a server.
    "mlflow.store.model_registry.abstract_store",
)
# How long a job waits for an unreachable tracking server before it says so.
SERVER_WAIT = 15.0
_DATABASE_SCHEMES = {"sqlite", "postgresql", "postgres", "mysql", "mssql"}


@dataclass(frozen=True)
class TrackingTarget:
    """Where runs, models and artifacts go.

    Attributes:
        tracking_uri: the MLflow tracking URI.
        registry_uri: the model registry URI (the tracking URI unless set).
        artifact_location: the experiment's artifact root for the embedded store or a
            database, else None (the server decides).
    """

    tracking_uri: str
    registry_uri: str
    artifact_location: str | None

    @property
    def embedded(self) -> bool:
        """No server: the store is a database that this process opens itself."""
        return self.artifact_location is not None

    def describe(self) -> str:
        """The tracking URI with any password masked, for printing."""
        return scrub(self.tracking_uri)


def resolve_target(uri: str | None, registry_uri: str | None, work_dir: str) -> TrackingTarget:
    """The tracking target of a job: the configured server or database, or the embedded
    SQLite store.

    Artifacts of a database URI (``sqlite:``, ``postgresql:``, ...) go to ``mlartifacts/``
    under ``work_dir``, as the embedded store's do: MLflow's own default, ``./mlruns``, would
    depend on the folder the command runs in. A server decides where its artifacts go.
    """
    if uri and not is_database(uri):
        return TrackingTarget(uri, registry_uri or uri, None)
    root = _work_root(work_dir)
    artifacts = (root / "mlartifacts").as_uri()
    if uri:
        uri = with_driver(uri)
        return TrackingTarget(uri, with_driver(registry_uri or uri), artifacts)
    store = f"sqlite:///{root / 'mlflow.db'}"
    return TrackingTarget(store, registry_uri or store, artifacts)


def is_database(uri: str) -> bool:
    """Whether a tracking URI names a database that MLflow's SQL store opens directly."""
    scheme = uri.partition(":")[0].partition("+")[0].lower()
    return scheme in _DATABASE_SCHEMES


def with_driver(uri: str) -> str:
    """``postgresql://`` with the driver that is installed: SQLAlchemy 2.1 takes a bare
    ``postgresql://`` to mean psycopg 3, which MLflow does not install, while psycopg2 is the
    driver most installations have."""
    scheme, sep, rest = uri.partition("://")
    if scheme.lower() not in ("postgresql", "postgres") or not sep:
        return uri
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql://{rest}"  # SQLAlchemy knows no dialect named 'postgres'


def _work_root(work_dir: str) -> Path:
    root = Path(work_dir).resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ManyModelsError(
            f"work_dir: cannot create {root} ({exc.strerror or exc}). Hint: set work_dir to a "
            "writable folder."
        ) from None
    return root


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
    _require_server(target)
    _require_database(target)
    with _creation_lock(target):
        database = _new_embedded_database(target)
        seeded = database is not None and schema_cache.seed(database)
        client = _open_client(target)
        if database is not None and not seeded:
            schema_cache.remember(database)
    return client


def _require_server(target: TrackingTarget, wait: float = SERVER_WAIT) -> None:
    """Fail within ``wait`` seconds when no server answers at an ``http(s)://`` tracking URI:
    MLflow's own client retries a refused connection for about four minutes, in silence.

    Any HTTP answer (even an error status, e.g. of an authenticating proxy) counts as a server;
    only a connection that cannot be made, or gets no answer, does not.
    """
    import urllib.error
    import urllib.request

    uri = target.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if time.monotonic() + 1 >= deadline:
                raise ManyModelsError(
                    f"tracking.uri: no MLflow server answers at {target.describe()} "
                    f"({_first_words(scrub(str(reason)), 120)}) after {wait:.0f} s. Hint: start "
                    "the server (mlflow server ...), or fix the host and port in tracking.uri."
                ) from None
            time.sleep(1)


def _require_database(target: TrackingTarget) -> None:
    """Connect once to a database server named by the tracking URI, and say at once why that
    fails: MLflow retries a refused password or an unreachable host for about two minutes,
    logging a traceback each time. (SQLite files are MLflow's to create.)"""
    uri = target.tracking_uri
    if not is_database(uri) or uri.startswith("sqlite:"):
        return
    import sqlalchemy

    # A host that drops packets would otherwise hold the job for minutes.
    timeout = {"connect_timeout": 10} if uri.partition(":")[0].startswith("postgres") else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=timeout)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as exc:
        cause = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig else exc
        raise ManyModelsError(
            f"tracking.uri: cannot connect to the database at {target.describe()} "
            f"({type(cause).__name__}: {_first_words(scrub(str(cause)), 300)}). Hint: check the "
            "host, port, database, user name and password in tracking.uri, and that the "
            "database driver is installed."
        ) from None


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
            f"({type(exc).__name__}: {_first_words(scrub(str(exc)), 300)})."
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


@dataclass
class Tracking:
    """An open connection to the tracking store and registry.

    Attributes:
        target: where the store is.
        client: the MLflow client; only :mod:`manymodels.tracking` calls it.
        experiment_id: the experiment of the job runs.
        registry: the registered models under ``tracking.model_prefix``.
    """

    target: TrackingTarget
    client: MlflowClient
    experiment_id: str
    registry: Registry


def open_tracking(config: Config) -> Tracking:
    """Connect to the configured (or embedded) MLflow store and find the experiment.

    Raises:
        ManyModelsError: the store cannot be opened or used.
    """
    target = resolve_target(config.tracking.uri, config.tracking.registry_uri, config.work_dir)
    client = client_for(target)
    try:
        experiment_id = ensure_experiment(
            client, config.tracking.experiment, target.artifact_location
        )
    except Exception as exc:
        raise ManyModelsError(
            f"{config.label()}: tracking.uri: cannot use the MLflow store at {target.describe()} "
            f"({type(exc).__name__}: {_first_words(scrub(str(exc)), 200)})."
        ) from None
    registry = Registry(client, config.tracking.model_prefix, bulk=config.tracking.bulk_registry)
    return Tracking(target, client, experiment_id, registry)


def _first_words(text: str, width: int) -> str:
    """The first line of ``text``, shortened at a word boundary to ``width`` characters: a
    database error's first line says what went wrong; the rest is its SQL."""
    import textwrap

    first = text.strip().splitlines()[0] if text.strip() else text
    return textwrap.shorten(first, width=width, placeholder=" ...")
