"""The embedded MLflow store: new stores start from a cached schema, safely."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from manymodels.tracking import schema_cache
from manymodels.tracking import store as tracking


@pytest.fixture(params=["cache", "cache #1?"], ids=["plain", "odd-characters"])
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request) -> Path:
    folder = tmp_path / request.param
    monkeypatch.setenv("MANYMODELS_CACHE_DIR", str(folder))
    return folder


def _open(work_dir: Path):
    target = tracking.resolve_target(None, None, str(work_dir))
    client = tracking.client_for(target)
    experiment_id = tracking.ensure_experiment(client, "jobs", target.artifact_location)
    return target, client, experiment_id


def _tables(database: Path) -> set[str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def test_the_first_store_fills_the_cache_and_the_next_starts_from_it(
    tmp_path: Path, cache_dir: Path
) -> None:
    _open(tmp_path / "first")
    cached = schema_cache.cache_path()
    assert cached.parent == cache_dir and cached.is_file()
    assert _tables(cached) == _tables(tmp_path / "first" / "mlflow.db")
    with sqlite3.connect(cached) as connection:
        assert connection.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)
        # A marker proves that the next store is a copy of the cache, not a new creation.
        connection.execute("CREATE TABLE seeded_marker (x INTEGER)")

    target, client, experiment_id = _open(tmp_path / "second")

    assert "seeded_marker" in _tables(tmp_path / "second" / "mlflow.db")
    experiment = client.get_experiment(experiment_id)
    assert experiment.artifact_location == target.artifact_location
    assert client.get_experiment("0").name == "Default"
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "mae", 1.5)
    client.create_registered_model("store=1")
    assert client.get_run(run.info.run_id).data.metrics == {"mae": 1.5}


def test_a_broken_cache_falls_back_to_a_new_store_and_is_replaced(
    tmp_path: Path, cache_dir: Path
) -> None:
    cached = schema_cache.cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a database")

    _, client, experiment_id = _open(tmp_path / "work")

    assert client.get_experiment(experiment_id).name == "jobs"
    assert "experiments" in _tables(cached)


def test_an_existing_store_is_never_overwritten(tmp_path: Path, cache_dir: Path) -> None:
    _, client, experiment_id = _open(tmp_path / "work")
    client.create_registered_model("kept")
    _open(tmp_path / "other")  # the cache exists now

    _, reopened, _ = _open(tmp_path / "work")

    assert reopened.get_registered_model("kept").name == "kept"
    assert schema_cache.seed(tmp_path / "work" / "mlflow.db") is False


def test_a_database_uri_keeps_artifacts_under_work_dir(tmp_path):
    import importlib.util

    work = tmp_path / "work"
    postgres = tracking.resolve_target("postgresql://u:secret@db.internal/mlflow", None, str(work))
    assert postgres.artifact_location == (work / "mlartifacts").resolve().as_uri()
    # The README's form names no driver; SQLAlchemy 2.1 would pick psycopg 3 for it.
    if importlib.util.find_spec("psycopg") is None:
        assert postgres.tracking_uri == "postgresql+psycopg2://u:secret@db.internal/mlflow"
    assert postgres.registry_uri == postgres.tracking_uri
    assert postgres.describe() == postgres.tracking_uri.replace(":secret@", ":***@")

    sqlite = tracking.resolve_target(f"sqlite:///{tmp_path / 'shared.db'}", None, str(work))
    assert sqlite.artifact_location == postgres.artifact_location
    server = tracking.resolve_target("http://mlflow.internal:5000", None, str(work))
    assert server.artifact_location is None, "a server decides where its artifacts go"
