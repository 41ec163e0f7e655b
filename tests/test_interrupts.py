"""An interrupted forecast leaves nothing behind: its run is KILLED, its staging folder goes
(at once, or with the next run when the process was killed outright)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import yaml

from manymodels.outputs import STAGING_MARKER, remove_stale_staging, start_staging
from tests.conftest import base_config

SLOW_FORECASTS = """
import os
import time

import numpy as np


def train(history, context):
    return float(history[context.target_col].mean())


def predict(model, history, future, context):
    if os.path.exists(context.params["slow"]):
        time.sleep(1.0)
    return np.full(len(future), model)
"""


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def _staging(parent: Path, name: str, owner: dict | None) -> Path:
    folder = parent / f".out.tmp-{name}"
    folder.mkdir()
    if owner is not None:
        (folder / STAGING_MARKER).write_text(json.dumps(owner))
    return folder


def test_the_next_run_removes_staging_folders_of_dead_processes(tmp_path):
    host = socket.gethostname()
    dead = _staging(tmp_path, "dead", {"host": host, "pid": _dead_pid()})
    alive = _staging(tmp_path, "alive", {"host": host, "pid": 1})
    elsewhere = _staging(tmp_path, "elsewhere", {"host": f"not-{host}", "pid": _dead_pid()})
    unknown = _staging(tmp_path, "unknown", None)

    staging = Path(start_staging(str(tmp_path / "out")))

    assert not dead.exists()
    assert alive.exists() and elsewhere.exists() and unknown.exists()
    assert json.loads((staging / STAGING_MARKER).read_text())["host"] == host
    assert remove_stale_staging(str(tmp_path / "out")) == []


def _trained(tmp_path: Path, oj_data: Path, scheduler: str) -> tuple[Path, Path]:
    """A trained job whose forecasts are slow while the returned marker file exists."""
    template = tmp_path / "slow.py"
    template.write_text(SLOW_FORECASTS)
    slow = tmp_path / "slow-forecasts"
    raw = base_config(oj_data, tmp_path / "work", compute={"scheduler": scheduler},
                      model={"template": str(template), "params": {"slow": str(slow)}})  # fmt: skip
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    trained = subprocess.run([*CLI, "train", "-c", str(config_file), "-q"], capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    return config_file, slow


CLI = [sys.executable, "-m", "manymodels.cli"]


def _slow_forecast_under_way(config_file: Path, output: Path) -> subprocess.Popen:
    job = subprocess.Popen([*CLI, "forecast", "-c", str(config_file), "-q"], text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(output.parent.glob(".forecasts.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # into the forecasting tasks
    return job


def _statuses(tmp_path: Path) -> list[str]:
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'work' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests")
    return sorted(run.info.status for run in client.search_runs([experiment.experiment_id]))


def test_a_terminated_forecast_is_killed_and_leaves_no_staging(tmp_path, oj_data, dask_scheduler):
    config_file, slow = _trained(tmp_path, oj_data, dask_scheduler)
    slow.write_text("")
    output = tmp_path / "work" / "forecasts"
    job = _slow_forecast_under_way(config_file, output)
    job.send_signal(signal.SIGTERM)
    _, stderr = job.communicate(timeout=120)

    assert job.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not list(output.parent.glob(".forecasts.tmp-*"))
    assert _statuses(tmp_path) == ["FINISHED", "KILLED"]


def test_a_sigkilled_forecast_is_cleaned_up_by_the_next(tmp_path, oj_data, dask_scheduler):
    config_file, slow = _trained(tmp_path, oj_data, dask_scheduler)
    slow.write_text("")
    output = tmp_path / "work" / "forecasts"
    job = _slow_forecast_under_way(config_file, output)
    job.send_signal(signal.SIGKILL)
    job.communicate(timeout=120)
    assert list(output.parent.glob(".forecasts.tmp-*")), "nothing could clean up after SIGKILL"
    assert _statuses(tmp_path) == ["FINISHED", "RUNNING"]

    slow.unlink()
    again = subprocess.run([*CLI, "forecast", "-c", str(config_file), "-q"], capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert not list(output.parent.glob(".forecasts.tmp-*"))
    assert _statuses(tmp_path) == ["FINISHED", "FINISHED", "KILLED"]
