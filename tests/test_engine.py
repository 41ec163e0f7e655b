"""The engine on a cluster of separate ``dask scheduler`` and ``dask worker`` processes, as a
user who outgrew one machine would run it, and the same job on the embedded default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

import manymodels
from manymodels.config import ComputeConfig
from manymodels.engine import cluster, cluster_in_background, map_batches, worker_count
from tests.conftest import base_config


@pytest.fixture(scope="module")
def separate_cluster(tmp_path_factory):
    """``dask scheduler`` and ``dask worker`` as their own processes; yields the address."""
    root = tmp_path_factory.mktemp("dask")
    scheduler_file = root / "scheduler.json"
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(scheduler_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    workers = None
    try:
        address = _scheduler_address(scheduler_file, scheduler)
        workers = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
             "--memory-limit", "2GiB"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_for_workers(address, 2)
        yield address
    finally:
        for process in (workers, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


def _scheduler_address(scheduler_file: Path, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if scheduler_file.exists():
            try:
                return json.loads(scheduler_file.read_text())["address"]
            except (ValueError, KeyError):
                pass
        if process.poll() is not None:
            pytest.fail("dask scheduler exited")
        time.sleep(0.2)
    pytest.fail("dask scheduler did not start")


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(count, timeout=60)


def test_cli_job_on_separate_scheduler_and_workers(tmp_path, oj_data, separate_cluster):
    raw = base_config(oj_data, tmp_path / "work", compute={"scheduler": separate_cluster})
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    for command in ("train", "forecast"):
        done = subprocess.run(
            [sys.executable, "-m", "manymodels.cli", command, "-c", str(config_file), "-q"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert "12 trained, 0 failed of 12" in subprocess.run(
        [sys.executable, "-m", "manymodels.cli", "retrain", "-c", str(config_file), "-q",
         "--force", "--new-versions"], capture_output=True, text=True, timeout=300,
    ).stdout  # fmt: skip
    forecasts = pd.read_parquet(tmp_path / "work" / "forecasts")
    assert forecasts.groupby(["store", "brand"]).size().eq(raw["horizon"]).all()
    assert len(forecasts) == 12 * raw["horizon"]


def test_workers_are_prepared_on_any_cluster(separate_cluster):
    def inspect(_: object) -> dict[str, object]:
        from threadpoolctl import threadpool_info

        return {
            "omp": os.environ.get("OMP_NUM_THREADS"),
            "pools": {pool["num_threads"] for pool in threadpool_info()},
            "preloaded": "manymodels.tasks" in sys.modules,
        }

    with cluster(ComputeConfig(scheduler=separate_cluster)) as client:
        assert worker_count(client) == 2
        reports = [report for _, report in map_batches(client, inspect, [1, 2, 3, 4], name="probe")]
    assert all(r == {"omp": "1", "pools": {1}, "preloaded": True} for r in reports)


def test_a_local_cluster_started_small_grows_with_prepared_workers_up_to_its_size():
    def inspect(_: object) -> dict[str, object]:
        from threadpoolctl import threadpool_info

        return {
            "omp": os.environ.get("OMP_NUM_THREADS"),
            "pools": {pool["num_threads"] for pool in threadpool_info()},
            "preloaded": "manymodels.tasks" in sys.modules,
        }

    with cluster_in_background(ComputeConfig(n_workers=2), dashboard=False, start=1) as pending:
        assert worker_count(pending.client()) == 1
        client = pending.client(workers=5)  # never beyond the configured size
        client.wait_for_workers(2, timeout=60)
        pending.client(workers=1)  # never shrinks either
        assert worker_count(client) == 2 and len(client.cluster.worker_spec) == 2
        # The worker that joined late was prepared like the first: pinned threads, imports.
        reports = client.run(inspect, None)
    assert len(reports) == 2
    assert all(r == {"omp": "1", "pools": {1}, "preloaded": True} for r in reports.values())


def test_unreachable_scheduler_is_a_clear_error(tmp_path, oj_data):
    config = manymodels.config_from_dict(
        base_config(oj_data, tmp_path / "work", compute={"scheduler": "tcp://127.0.0.1:9"})
    )
    with pytest.raises(
        manymodels.ManyModelsError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"
    ):
        manymodels.train(config)
    # No job run was opened, so the next command has no "interrupted job" to resume.
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'work' / 'mlflow.db'}")
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    assert client.search_runs(experiments) == []


def test_a_failing_task_is_reported_not_raised(dask_scheduler):
    def explode(batch: int) -> int:
        if batch == 2:
            raise RuntimeError("task broke")
        return batch * 10

    with cluster(ComputeConfig(scheduler=dask_scheduler)) as client:
        outcomes = dict(map_batches(client, explode, [1, 2, 3], name="explode", retries=0))
    assert outcomes[1] == 10 and outcomes[3] == 30
    assert isinstance(outcomes[2], RuntimeError)


def test_local_and_distributed_paths_give_the_same_models_and_forecasts(
    tmp_path, oj_data, separate_cluster
):
    outcomes = {}
    for path, compute in {"local": {"n_workers": 2},
                          "distributed": {"scheduler": separate_cluster}}.items():  # fmt: skip
        config = manymodels.config_from_dict(base_config(oj_data, tmp_path / path, compute=compute))
        trained = manymodels.train(config)
        forecast = manymodels.forecast(config)
        metrics = trained.entities.set_index("model_name")[["mae", "rmse", "smape", "mase"]]
        predictions = pd.read_parquet(forecast.output)[["store", "brand", "week", "prediction"]]
        predictions = predictions.astype({"store": str, "brand": str})
        outcomes[path] = (
            metrics.sort_index(),
            predictions.sort_values(["store", "brand", "week"]).reset_index(drop=True),
        )

    (local_metrics, local_forecasts), (remote_metrics, remote_forecasts) = outcomes.values()
    assert len(local_metrics) == 12 and len(local_forecasts) == 12 * 4
    pd.testing.assert_frame_equal(local_metrics, remote_metrics)
    pd.testing.assert_frame_equal(local_forecasts, remote_forecasts)


_SPY_TEMPLATE = """
import sys

import numpy as np


def train(history, context):
    # Whether the worker process that trained this entity had imported MLflow.
    return "mlflow" in sys.modules


def predict(model, history, future, context):
    return np.full(len(future), 1.0 if model else 0.0)
"""


@pytest.mark.parametrize("registration", ["per_entity", "per_job"])
def test_workers_of_an_embedded_store_job_never_import_mlflow(tmp_path, oj_data, registration):
    template = tmp_path / "spy.py"
    template.write_text(_SPY_TEMPLATE, encoding="utf-8")
    config = manymodels.config_from_dict(base_config(
        oj_data, tmp_path / "work", model={"template": str(template), "params": {}},
        compute={"n_workers": 1}, tracking={"registration": registration},
    ))  # fmt: skip
    assert manymodels.train(config).trained == 12
    forecasts = pd.read_parquet(manymodels.forecast(config).output)
    assert len(forecasts) == 12 * 4
    assert (forecasts["prediction"] == 0.0).all(), "a worker imported MLflow to train"


def test_back_to_back_jobs_keep_dask_quiet_while_the_first_cluster_shuts_down(tmp_path, oj_data):
    # The first job's cluster shuts down in the background while the second job's runs; its
    # shutdown must not turn Dask's logging back on for the second.
    raw = base_config(oj_data, tmp_path / "work", compute={"n_workers": 1})
    code = (
        "import json, sys, manymodels, pandas\n"
        "config = manymodels.config_from_dict(json.loads(sys.argv[1]))\n"
        "assert manymodels.train(config).trained == 12\n"
        "assert len(pandas.read_parquet(manymodels.forecast(config).output)) == 48\n"
    )
    done = subprocess.run([sys.executable, "-c", code, json.dumps(raw)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "distributed" not in done.stderr, done.stderr
