"""Jobs against a real ``mlflow server`` process: the REST registry and proxied artifacts.

This is the path a team takes on a real cluster (``tracking.uri: http://...``): registration
through MLflow's client API (not the bulk database path), artifacts uploaded to and downloaded
from the server, and models loaded from the registry over HTTP.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import mlflow
import pandas as pd
import pytest

import manymodels
from manymodels.naming import model_name
from tests.conftest import base_config

N_ENTITIES = 12


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> str:
    """A real tracking server on a free port, with a SQLite backend and proxied artifacts."""
    root = tmp_path_factory.mktemp("server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination", str(root / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed at teardown
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, server, root / "server.log")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _wait_for(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail("mlflow server did not start in 90 s")


@pytest.fixture
def server_config(tmp_path, oj_data, dask_scheduler, mlflow_server):
    def make(prefix: str, **tracking):
        raw = base_config(
            oj_data, tmp_path / "work",
            tracking={"uri": mlflow_server, "experiment": "server-tests", "model_prefix": prefix, **tracking},
            compute={"scheduler": dask_scheduler},
        )  # fmt: skip
        return manymodels.config_from_dict(raw)

    return make


def test_per_entity_models_over_rest(server_config, registry_of):
    config = server_config("rest")
    registry = registry_of(config)
    assert registry.bulk is None, "a server registry is written through the client API"

    trained = manymodels.train(config)
    assert (trained.trained, trained.failed) == (N_ENTITIES, 0)
    assert trained.ui_hint.startswith(f"{config.tracking.uri}/#/experiments/")
    manymodels.train(config)
    versions = registry.versions()
    assert Counter(ref.name for ref in versions) == Counter(
        {name: 2 for name in {ref.name for ref in versions}}
    )
    assert all(ref.source.startswith("mlflow-artifacts:") for ref in versions)

    forecast = manymodels.forecast(config)
    assert (forecast.forecast, forecast.failed) == (N_ENTITIES, 0)
    frame = pd.read_parquet(forecast.output)
    assert set(frame["model_version"]) == {1}

    mlflow.set_tracking_uri(config.tracking.uri)
    name = model_name("rest", {"store": "2", "brand": "tropicana"})
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert len(loaded.predict(pd.DataFrame())) == config.horizon


def test_bundle_over_rest(server_config, registry_of, oj_data):
    config = server_config("restjob", registration="per_job")
    assert manymodels.train(config).trained == N_ENTITIES
    retrained = manymodels.retrain(config, force=True, new_versions=True)
    assert retrained.trained == N_ENTITIES
    registry = registry_of(config)
    assert registry.models()["restjob.bundle"].aliases == {"champion": 2}
    assert manymodels.forecast(config).forecast == N_ENTITIES

    mlflow.set_tracking_uri(config.tracking.uri)
    bundle = mlflow.pyfunc.load_model("models:/restjob.bundle@champion")
    predicted = bundle.predict(pd.DataFrame({"store": ["3"], "brand": ["dominicks"]}))
    assert len(predicted) == config.horizon

    # One partition changed: the others' champions are carried into the new bundle by copying
    # their shards through the server's artifact store.
    changed = sorted(oj_data.glob("store=*/brand=*/*.parquet"))[0]
    frame = pd.read_parquet(changed)
    frame.assign(sales=frame["sales"] * 1.5).to_parquet(changed, index=False)
    third = manymodels.retrain(config)
    assert (third.trained, third.skipped_unread, third.failed) == (1, N_ENTITIES - 1, 0)
    assert registry_of(config).models()["restjob.bundle"].aliases == {"champion": 3}
    everyone = pd.read_parquet(manymodels.forecast(config).output)
    assert len(everyone) == N_ENTITIES * config.horizon
    assert set(everyone["model_version"]) == {3}
