"""Faults with real processes on a PostgreSQL registry: a tracking server killed with SIGKILL
during registration, a driver killed during client-API registration, two jobs at once.

After each fault, rerunning the same command must leave every entity with exactly one version
from the job and ``champion`` (or a recorded failure); each test reads the registry back through
``MlflowClient`` and checks that the forecast covers every entity.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from manymodels.data import write_partitioned
from manymodels.datasets import oj_sales
from tests.conftest import base_config
from tests.test_reliability import SLOW_TEMPLATE

ENTITIES = 24


@pytest.fixture
def panel(tmp_path: Path) -> Path:
    path = tmp_path / "panel"
    frame = oj_sales(n_entities=ENTITIES, n_weeks=40, seed=11, short_share=0, intermittent_share=0)
    write_partitioned(frame, str(path), ["store", "brand"], basename="part")
    return path


def _config_file(tmp_path: Path, data: Path, scheduler: str | None, tracking: dict) -> Path:
    """A job on the shared cluster, or with ``scheduler=None`` on a cluster of its own (whose
    workers then inherit the job's environment)."""
    template = tmp_path / "slow.py"
    template.write_text(SLOW_TEMPLATE)
    compute = {"scheduler": scheduler} if scheduler else {"n_workers": 2}
    raw = base_config(
        data, tmp_path / "work", model={"template": str(template), "params": {}},
        compute={**compute, "batch_size": 2},
        tracking={"experiment": "faults", "model_prefix": "f", **tracking},
        failures={"max_share": 0.0}, data={"exog_cols": []},
    )  # fmt: skip
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump(raw))
    return file


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "manymodels.cli", *args]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(_cli(*args), capture_output=True, text=True, timeout=300, env=env)


def _ledger_lines(work: Path) -> int:
    files = (work / "jobs").glob("*.jsonl")
    return sum(len(file.read_text().splitlines()) for file in files)


def _wait_for_ledger(process: subprocess.Popen, work: Path, lines: int) -> None:
    deadline = time.monotonic() + 120
    while _ledger_lines(work) < lines:
        if process.poll() is not None:
            pytest.fail(f"the job ended before the fault: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the job wrote no ledger line in time")
        time.sleep(0.02)


def _registry(uri: str) -> tuple[dict[str, list], dict[str, dict]]:
    """Every version of the ``f.`` models, by model, and every model's aliases."""
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions: dict[str, list] = defaultdict(list)
    for version in client.search_model_versions("name LIKE 'f.%'", max_results=10_000):
        versions[version.name].append(version)
    aliases = {
        model.name: dict(model.aliases)
        for model in client.search_registered_models("name LIKE 'f.%'", max_results=1000)
    }
    return versions, aliases


def _assert_exactly_once(uri: str, jobs: int = 1) -> None:
    """Every entity: ``jobs`` versions, one per job run, and ``champion`` on the first."""
    versions, aliases = _registry(uri)
    assert len(versions) == ENTITIES
    for name, found in versions.items():
        per_run = Counter(version.run_id for version in found)
        assert len(per_run) == jobs and set(per_run.values()) == {1}, (name, per_run)
        first = min(int(version.version) for version in found)
        assert int(aliases[name].get("champion", 0)) == first, (name, aliases[name])


def _assert_forecast_covers_all(config_file: Path, *options: str) -> None:
    forecast = _run("forecast", "-c", str(config_file), "-q", *options)
    assert forecast.returncode == 0, forecast.stderr
    assert f"{ENTITIES} forecast, 0 failed of {ENTITIES}" in forecast.stdout
    output = yaml.safe_load(config_file.read_text())["forecast"]["output"]
    frame = pd.read_parquet(output)
    assert frame.groupby(["store", "brand"], observed=True).ngroups == ENTITIES


class MlflowServer:
    """An ``mlflow server`` process on a fixed port, which can be killed and started again."""

    def __init__(self, backend: str, root: Path) -> None:
        self.backend, self.root = backend, root
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
            "--port", str(self.port), "--backend-store-uri", self.backend,
            "--artifacts-destination", str(self.root / "artifacts"), "--workers", "1",
        ]  # fmt: skip
        log = open(self.root / "server.log", "a")  # noqa: SIM115 - the process keeps it
        # A session of its own: SIGKILL goes to the server and every worker it started.
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mlflow server exited: {(self.root / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        pytest.fail("mlflow server did not start in 90 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def server(tmp_path, postgres_uri):
    running = MlflowServer(postgres_uri, tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.kill()


@pytest.mark.slow
def test_server_killed_during_registration_then_rerun(tmp_path, panel, server, dask_scheduler):
    # A cluster of the job's own, and a short HTTP retry budget for it and its workers: the
    # outage outlasts the budget, so registrations and uploads fail while the server is gone.
    config_file = _config_file(tmp_path, panel, None, {"uri": server.url})
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
           "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}  # fmt: skip
    first = subprocess.Popen(_cli("train", "-c", str(config_file), "-q"), env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    _wait_for_ledger(first, tmp_path / "work", lines=2)
    server.kill()
    _, stderr = first.communicate(timeout=300)
    assert first.returncode != 0, "the job cannot succeed without its server"
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: ")

    server.start()
    # The rerun may use another cluster: compute is not part of what makes "the same command".
    shared = ("--set", f"compute.scheduler={dask_scheduler}")
    again = _run("train", "-c", str(config_file), "-q", *shared)
    assert again.returncode == 0, again.stderr
    assert "resumed an unfinished job" in again.stdout
    _assert_exactly_once(server.url)
    _assert_forecast_covers_all(config_file, *shared)


@pytest.mark.slow
def test_driver_killed_during_client_registration_then_resume(
    tmp_path, panel, dask_scheduler, postgres_uri
):
    tracking = {"uri": postgres_uri, "bulk_registry": False}
    config_file = _config_file(tmp_path, panel, dask_scheduler, tracking)
    first = subprocess.Popen(_cli("train", "-c", str(config_file), "-q"), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    _wait_for_ledger(first, tmp_path / "work", lines=3)
    first.send_signal(signal.SIGKILL)
    first.wait()
    job_id = next((tmp_path / "work" / "jobs").glob("*.jsonl")).stem

    # What a kill between two registry calls leaves, and what a retried create request leaves:
    # a version without its champion alias, and a second version from the same run.
    client = mlflow.MlflowClient(tracking_uri=postgres_uri, registry_uri=postgres_uri)
    versions, _ = _registry(postgres_uri)
    (alias_lost, first_version), (doubled, second_version) = [
        (name, found[0]) for name, found in sorted(versions.items())[:2]
    ]
    client.delete_registered_model_alias(alias_lost, "champion")
    client.create_model_version(doubled, second_version.source, run_id=second_version.run_id,
                                tags=second_version.tags)  # fmt: skip

    resumed = _run("train", "-c", str(config_file), "-q", "--resume", job_id)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{ENTITIES} trained, 0 failed of {ENTITIES}" in resumed.stdout
    _assert_exactly_once(postgres_uri)
    runs = {version.run_id for found in _registry(postgres_uri)[0].values() for version in found}
    assert runs == {first_version.run_id}
    _assert_forecast_covers_all(config_file)


@pytest.mark.slow
def test_two_jobs_at_once_on_one_postgresql_registry(tmp_path, panel, dask_scheduler, postgres_uri):
    config_file = _config_file(tmp_path, panel, dask_scheduler, {"uri": postgres_uri})
    command = _cli("train", "-c", str(config_file), "-q")
    jobs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]  # fmt: skip
    for job in jobs:
        _, stderr = job.communicate(timeout=300)
        assert job.returncode == 0, stderr
    _assert_exactly_once(postgres_uri, jobs=2)
    _assert_forecast_covers_all(config_file)


def test_racing_bulk_registrations_retry_what_mlflow_raises(postgres_uri):
    """Two registries that create the same new models at the same moment: the loser's
    transaction hits a unique violation, which MLflow wraps in ``MlflowException``; it is
    retried, and every model ends with one version per run."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy import insert

    from manymodels.tracking.registry_bulk import is_conflict
    from manymodels.tracking.registry_bulk_guard import open_bulk_registry
    from manymodels.tracking.registry_types import Registration

    client = mlflow.MlflowClient(tracking_uri=postgres_uri, registry_uri=postgres_uri)
    experiment = client.create_experiment("race")
    runs = [client.create_run(experiment).info.run_id for _ in range(2)]
    names = [f"f.race{index}" for index in range(60)]
    registrations = [Registration(name, {}, f"file:///models/{name}", {}) for name in names]
    bulk, _ = open_bulk_registry(client)
    assert bulk is not None
    start, errors = threading.Barrier(2), []

    def register(run_id: str) -> None:
        start.wait()
        try:
            bulk.register_many(registrations, run_id)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    found = client.search_model_versions("name LIKE 'f.race%'", max_results=1000)
    assert Counter(version.name for version in found) == Counter({name: 2 for name in names})
    assert Counter((version.name, version.run_id) for version in found).most_common(1)[0][1] == 1

    # What MLflow raises for a clash: its own exception, with SQLAlchemy's as the cause.
    table = bulk.tables.SqlRegisteredModel.__table__
    clash = {"name": names[0], "creation_time": 0, "last_updated_time": 0}
    if "workspace" in table.c:  # MLflow releases with workspaces
        clash["workspace"] = "default"
    with (
        pytest.raises(MlflowException) as raised,
        bulk.store.ManagedSessionMaker(read_only=False) as session,
    ):
        session.execute(insert(table), [clash])
    assert is_conflict(raised.value)


@pytest.mark.slow
def test_forecast_names_an_entity_without_the_alias_as_failed(
    tmp_path, panel, dask_scheduler, postgres_uri
):
    config_file = _config_file(tmp_path, panel, dask_scheduler, {"uri": postgres_uri})
    assert _run("train", "-c", str(config_file), "-q").returncode == 0
    client = mlflow.MlflowClient(tracking_uri=postgres_uri, registry_uri=postgres_uri)
    lost = sorted(_registry(postgres_uri)[0])[0]
    client.delete_registered_model_alias(lost, "champion")

    refused = _run("forecast", "-c", str(config_file), "-q")
    assert refused.returncode == 1, "over the failure budget of 0"
    assert refused.stderr.startswith("error: ") and len(refused.stderr.splitlines()) == 1
    assert "has no alias 'champion'" in refused.stderr and f"Failed: {lost}." in refused.stderr

    forecast = _run("forecast", "-c", str(config_file), "-q", "--set", "failures.max_count=1")
    assert forecast.returncode == 0, forecast.stderr
    assert f"{ENTITIES - 1} forecast, 1 failed of {ENTITIES}" in forecast.stdout
    assert f"failed: {lost}" in forecast.stdout
    assert "has no alias 'champion'" in forecast.stdout

    summary = json.loads(
        Path(mlflow.artifacts.download_artifacts(
            run_id=_newest_forecast_run(client), artifact_path="summary.json",
            tracking_uri=postgres_uri,
        )).read_text()
    )  # fmt: skip
    assert (summary["entities_failed"], summary["published"]) == (1, True)


def _newest_forecast_run(client: mlflow.MlflowClient) -> str:
    experiment = client.get_experiment_by_name("faults").experiment_id
    runs = client.search_runs([experiment], "tags.`manymodels.job_kind` = 'forecast'",
                              order_by=["attributes.start_time DESC"], max_results=1)  # fmt: skip
    return runs[0].info.run_id
