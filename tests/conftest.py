"""Shared fixtures: generated Parquet datasets, configs, and one real Dask cluster per session.

Most job tests share a session-wide ``LocalCluster`` (real worker processes) through
``compute.scheduler``, which is how a user points a job at an existing cluster; tests of the
embedded default start their own cluster by leaving ``compute.scheduler`` out.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
# The cached empty MLflow schema (see manymodels.tracking.schema_cache) lives with the test session,
# not in the user's home; subprocesses (CLI, notebook) inherit it.
os.environ.setdefault("MANYMODELS_CACHE_DIR", tempfile.mkdtemp(prefix="manymodels-test-cache-"))


@pytest.fixture(scope="session")
def dask_scheduler() -> Iterator[str]:
    """The address of a real two-process Dask cluster shared by the session."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=40,
    ) as cluster:  # fmt: skip
        yield cluster.scheduler_address


@pytest.fixture(scope="session")
def oj_frame():
    """A small OJ-style panel: 12 series of 70 weeks, with 8 future weeks of prices."""
    from manymodels.datasets import oj_sales

    return oj_sales(n_entities=12, n_weeks=70, seed=3, future_weeks=8, short_share=0.0,
                    intermittent_share=0.0)  # fmt: skip


@pytest.fixture
def oj_data(tmp_path: Path, oj_frame) -> Path:
    """``oj_frame`` written as hive-partitioned Parquet (store=1/brand=x/part-0.parquet)."""
    from manymodels.data import write_partitioned

    path = tmp_path / "data"
    write_partitioned(oj_frame, str(path), ["store", "brand"], basename="part")
    return path


def base_config(data_path: Path, work_dir: Path, **sections: Any) -> dict[str, Any]:
    """A config dictionary for the OJ data, with section overrides merged in."""
    raw: dict[str, Any] = {
        "horizon": 4,
        "data": {
            "path": str(data_path),
            "partition_by": ["store", "brand"],
            "time_col": "week",
            "target_col": "sales",
            "exog_cols": ["price", "deal"],
            "freq": "W-SUN",
        },
        "model": {"template": "sklearn_lags", "params": {"lags": 4, "fourier_terms": 2}},
        "tracking": {"experiment": "tests", "model_prefix": "oj"},
        "work_dir": str(work_dir),
        "forecast": {"output": str(work_dir / "forecasts")},
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(raw.get(section), dict):
            raw[section] = {**raw[section], **values}
        else:
            raw[section] = values
    return raw


@pytest.fixture
def make_config(tmp_path: Path, oj_data: Path, dask_scheduler: str) -> Callable[..., Any]:
    """Build a validated Config on the shared cluster; keyword sections override defaults."""
    from manymodels import config_from_dict

    def make(data_path: Path | None = None, **sections: Any):
        raw = base_config(data_path or oj_data, tmp_path / "work", **sections)
        raw.setdefault("compute", {"scheduler": dask_scheduler})
        return config_from_dict(raw)

    return make


@pytest.fixture
def registry_of() -> Callable[..., Any]:
    """Open the registry a config points at, to count models and versions."""

    def open_registry(config):
        from manymodels.tracking.store import open_tracking

        return open_tracking(config).registry

    return open_registry


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster for the session (see ``tests/postgres.py``).

    Without PostgreSQL's binaries the tests that need it are skipped, except under ``CI=true``:
    CI must install them (``.ci/run`` does), so there it is a failure.
    """
    from tests import postgres as pg

    bin_dir = pg.binaries()
    if bin_dir is None:
        message = "PostgreSQL's initdb is not installed (Debian: apt-get install postgresql)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    with pg.running_cluster(bin_dir) as cluster:
        yield cluster


@pytest.fixture
def postgres_uri(postgres) -> str:
    """The URI of a new PostgreSQL database with MLflow's empty schema, for one test."""
    return postgres.new_database()
