"""Problems of the environment (an unreachable server, a refused password, a read-only
database, a full disk) are one line and exit status 2; a database tracking URI keeps its
artifacts under ``work_dir``, and the README's ``postgresql://`` form works as written."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import manymodels
from manymodels.environment import EnvironmentProblem, environment_problem
from manymodels.ledger import Ledger
from tests.conftest import base_config


def _train_cli(tmp_path: Path, oj_data: Path, uri: str) -> subprocess.CompletedProcess:
    raw = base_config(oj_data, tmp_path / "work", tracking={"uri": uri})
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "manymodels.cli", "train", "-c", str(config_file), "-q"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_an_unreachable_tracking_server_is_one_line_within_30_s(tmp_path, oj_data):
    url = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    failed = _train_cli(tmp_path, oj_data, url)
    assert time.monotonic() - started < 30
    assert failed.returncode == 2
    assert failed.stderr.startswith(f"error: tracking.uri: no MLflow server answers at {url} (")
    assert len(failed.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_wrong_database_password_is_one_line(tmp_path, oj_data, postgres):
    wrong = postgres.uri("postgres", password="not-the-password")
    failed = _train_cli(tmp_path, oj_data, wrong)
    assert failed.returncode == 2
    assert len(failed.stderr.strip().splitlines()) == 1
    assert "password authentication failed" in failed.stderr
    assert "not-the-password" not in failed.stderr
    assert "manymodels:***@127.0.0.1" in failed.stderr


@pytest.mark.slow
def test_a_database_uri_keeps_artifacts_under_work_dir(
    tmp_path, oj_data, dask_scheduler, postgres_uri, monkeypatch
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # The README's form, without a driver name: the installed driver is used.
    readme_form = postgres_uri.replace("postgresql+psycopg2://", "postgresql://")
    raw = base_config(oj_data, tmp_path / "work", tracking={"uri": readme_form},
                      compute={"scheduler": dask_scheduler})  # fmt: skip
    config = manymodels.config_from_dict(raw)
    trained = manymodels.train(config)
    assert trained.trained == 12
    artifacts = (tmp_path / "work" / "mlartifacts").resolve()
    assert trained.ui_hint.startswith(
        "mlflow ui --backend-store-uri postgresql+psycopg2://manymodels:***@127.0.0.1:"
    )
    from manymodels.tracking.store import open_tracking

    sources = {ref.source for ref in open_tracking(config).registry.versions()}
    assert len(sources) == 12
    assert all(source.startswith(artifacts.as_uri()) for source in sources)
    assert list(elsewhere.iterdir()) == []
    assert manymodels.forecast(config).forecast == 12


def test_a_read_only_tracking_database_is_one_sentence(tmp_path):
    database = tmp_path / "mlflow.db"
    sqlite3.connect(database).execute("CREATE TABLE runs (id TEXT)").connection.commit()
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///file:{database}?mode=ro&uri=true")
    with pytest.raises(Exception) as raised, engine.begin() as connection:
        connection.execute(text("INSERT INTO runs VALUES ('x')"))
    problem = environment_problem(raised.value)
    assert isinstance(problem, EnvironmentProblem)
    assert str(problem).startswith("the tracking database is read-only. Hint: make mlflow.db")


def test_a_full_disk_is_one_sentence(tmp_path):
    # /dev/full answers every write with ENOSPC: the ledger's own write path, on a full disk.
    ledger = Ledger(str(tmp_path), "job-1")
    ledger.path.parent.mkdir(parents=True)
    ledger.path.symlink_to("/dev/full")
    with pytest.raises(OSError) as raised:
        ledger.append([], [{"model_name": "m", "status": "ok"}])
    problem = environment_problem(raised.value)
    assert isinstance(problem, EnvironmentProblem)
    assert str(problem).startswith("no space left on the device")
    assert "Hint: free space" in str(problem)


def test_a_bug_is_not_an_environment_problem():
    assert environment_problem(KeyError("model_name")) is None
    assert environment_problem(ValueError("cannot convert")) is None
