"""Reliability: resume after a killed driver, worker loss, exactly-once registration,
concurrent jobs, retries, timeouts and secrets. Real processes are killed here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import mlflow
import pytest
import yaml

import manymodels
from manymodels.data import write_partitioned
from manymodels.datasets import oj_sales
from tests.conftest import base_config

SLOW_TEMPLATE = """
import time
import numpy as np

def train(history, context):
    time.sleep(context.params.get("sleep", 0.05))
    return float(history[context.target_col].tail(4).mean())

def predict(model, history, future, context):
    return np.full(len(future), model)
"""


@pytest.fixture
def forty(tmp_path: Path) -> Path:
    """40 short series, enough batches to kill a job in the middle."""
    path = tmp_path / "forty"
    frame = oj_sales(n_entities=40, n_weeks=40, seed=5, short_share=0, intermittent_share=0)
    write_partitioned(frame, str(path), ["store", "brand"], basename="part")
    return path


def _write_config(tmp_path: Path, data: Path, **sections) -> Path:
    template = tmp_path / "slow.py"
    template.write_text(SLOW_TEMPLATE)
    raw = base_config(data, tmp_path / "work", model={"template": str(template), "params": {}},
                      **sections)  # fmt: skip
    file = tmp_path / "config.yaml"
    file.write_text(yaml.safe_dump(raw))
    return file


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "manymodels.cli", *args]


def _ledger_lines(work: Path) -> list[dict]:
    lines = []
    for file in (work / "jobs").glob("*.jsonl"):
        lines.extend(json.loads(line) for line in file.read_text().splitlines() if line.strip())
    return lines


def _kill_when_ledger_has(process: subprocess.Popen, work: Path, lines: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(_ledger_lines(work)) >= lines:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return
        if process.poll() is not None:
            pytest.fail(f"the job ended before it could be killed: {process.stderr.read()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("the job wrote no ledger line in time")


def _versions(config_file: Path):
    config = manymodels.load_config(config_file)
    from manymodels.tracking.store import open_tracking

    return open_tracking(config).registry.versions()


def _assert_one_version_per_entity(config_file: Path, entities: int) -> str:
    versions = _versions(config_file)
    per_model = Counter(ref.name for ref in versions)
    assert len(per_model) == entities
    assert set(per_model.values()) == {1}
    jobs = {ref.tags["manymodels.job_id"] for ref in versions}
    assert len(jobs) == 1
    return jobs.pop()


def _partitions_in_ledger(work: Path) -> Counter:
    return Counter(
        tuple(map(tuple, keys)) for line in _ledger_lines(work) for keys in line["partitions"]
    )


@pytest.mark.slow
def test_sigkilled_driver_resumes_with_the_same_command(tmp_path, forty, dask_scheduler):
    config_file = _write_config(
        tmp_path, forty, compute={"scheduler": dask_scheduler, "batch_size": 3}
    )
    work = tmp_path / "work"
    first = subprocess.Popen(_cli("train", "-c", str(config_file), "-q"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    _kill_when_ledger_has(first, work, lines=3)
    done_before = sum(_partitions_in_ledger(work).values())
    assert 0 < done_before < 40

    second = subprocess.run(_cli("train", "-c", str(config_file), "-q"), capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "resumed an unfinished job" in second.stdout
    assert "40 trained, 0 failed of 40" in second.stdout
    job_id = _assert_one_version_per_entity(config_file, 40)
    assert job_id in second.stdout
    # Nothing the killed session had recorded was trained again.
    assert set(_partitions_in_ledger(work).values()) == {1}


@pytest.mark.slow
def test_resume_by_job_id(tmp_path, forty, dask_scheduler):
    config_file = _write_config(
        tmp_path, forty, compute={"scheduler": dask_scheduler, "batch_size": 3}
    )
    work = tmp_path / "work"
    first = subprocess.Popen(_cli("train", "-c", str(config_file), "-q"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    _kill_when_ledger_has(first, work, lines=2)
    job_id = next((work / "jobs").glob("*.jsonl")).stem

    resumed = subprocess.run(_cli("train", "-c", str(config_file), "-q", "--resume", job_id),
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert _assert_one_version_per_entity(config_file, 40) == job_id
    finished = subprocess.run(_cli("train", "-c", str(config_file), "-q", "--resume", job_id),
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert finished.returncode == 2
    assert finished.stderr.strip() == (
        f"error: --resume: job {job_id} already finished; run without --resume for a new one."
    )


@pytest.mark.slow
def test_worker_killed_mid_job_still_one_version_each(tmp_path, forty):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:  # fmt: skip
        config_file = _write_config(tmp_path, forty, compute={"scheduler": cluster.scheduler_address,
                                                              "batch_size": 3})  # fmt: skip
        config = manymodels.load_config(config_file)
        outcome: dict = {}
        job = threading.Thread(target=lambda: outcome.update(result=manymodels.train(config)))
        job.start()
        deadline = time.monotonic() + 120
        while not _ledger_lines(tmp_path / "work") and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = next(iter(client.run(os.getpid).values()))
        os.kill(victim, signal.SIGKILL)
        job.join(timeout=300)

    result = outcome["result"]
    assert (result.trained, result.failed) == (40, 0)
    _assert_one_version_per_entity(config_file, 40)


def test_task_delivered_twice_registers_once(make_config, registry_of, monkeypatch):
    from manymodels.jobs.dispatch import Dispatch

    planned = Dispatch.tasks
    monkeypatch.setattr(Dispatch, "tasks", lambda self, *a, **k: planned(self, *a, **k) * 2)
    config = make_config()
    result = manymodels.train(config)
    versions = registry_of(config).versions()
    assert len(versions) == 12 and {ref.version for ref in versions} == {1}
    assert (result.trained, result.total) == (12, 12)


@pytest.mark.slow
def test_two_jobs_at_once_on_one_registry(tmp_path, forty, dask_scheduler):
    config_file = _write_config(tmp_path, forty, compute={"scheduler": dask_scheduler})
    command = _cli("train", "-c", str(config_file), "-q")
    jobs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]  # fmt: skip
    for job in jobs:
        _, stderr = job.communicate(timeout=300)
        assert job.returncode == 0, stderr
    versions = _versions(config_file)
    per_model = Counter(ref.name for ref in versions)
    assert len(per_model) == 40 and set(per_model.values()) == {2}
    assert len({ref.tags["manymodels.job_id"] for ref in versions}) == 2
    config = manymodels.load_config(config_file)
    from manymodels.tracking.store import open_tracking

    models = open_tracking(config).registry.models()
    assert {record.aliases.get("champion") for record in models.values()} == {1}


FLAKY_TEMPLATE = """
import numpy as np

_seen = set()

def train(history, context):
    key = tuple(sorted(context.keys.items()))
    if key not in _seen:
        _seen.add(key)
        raise OSError("storage hiccup")
    return 1.0

def predict(model, history, future, context):
    return np.full(len(future), model)
"""


@pytest.mark.parametrize(("retries", "trained"), [(1, 12), (0, 0)])
def test_transient_errors_are_retried(make_config, tmp_path, retries, trained):
    template = tmp_path / "flaky.py"
    # A distinct text per case: workers of the shared cluster cache a template module by its code.
    template.write_text(f"# case retries={retries}\n{FLAKY_TEMPLATE}")
    config = make_config(model={"template": str(template)},
                         failures={"retries": retries, "retry_backoff": 0.01, "max_share": 1.0})  # fmt: skip
    result = manymodels.train(config)
    assert result.trained == trained
    if not trained:
        assert set(result.failures["error_type"]) == {"OSError"}
        assert set(result.failures["error"]) == {"storage hiccup"}


def test_entity_over_its_time_limit_fails_alone(make_config, tmp_path):
    template = tmp_path / "stuck.py"
    template.write_text(
        "def train(history, context):\n"
        "    if context.keys['store'] == '1' and context.keys['brand'] == 'dominicks':\n"
        "        while True:\n"
        "            pass\n"
        "    return 1.0\n"
        "def predict(model, history, future, context):\n"
        "    return [model] * len(future)\n"
    )
    config = make_config(model={"template": str(template)},
                         failures={"entity_timeout": 1, "max_share": 0.5})  # fmt: skip
    started = time.monotonic()
    result = manymodels.train(config)
    assert time.monotonic() - started < 60
    assert (result.trained, result.failed) == (11, 1)
    failure = result.failures.iloc[0]
    assert (failure["store"], failure["error_type"]) == ("1", "EntityTimeout")
    assert failure["error"] == "exceeded failures.entity_timeout of 1 s"


SECRET = "s3cr3t-Token-9f8e7d"


def _all_recorded_text(config_file: Path, run_ids: list[str]) -> str:
    client = mlflow.MlflowClient()
    texts = []
    for run_id in run_ids:
        run = client.get_run(run_id)
        texts.append(json.dumps([run.data.params, run.data.tags, run.data.metrics]))
        root = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=""))
        for file in root.rglob("*"):
            if file.is_file():
                texts.append(file.read_bytes().decode("latin-1"))
    for ref in _versions(config_file):
        texts.append(json.dumps(ref.tags))
    return "\n".join(texts)


@pytest.mark.slow
def test_secrets_never_recorded_or_printed(tmp_path, oj_data, dask_scheduler):
    raw = base_config(oj_data, tmp_path / "work", compute={"scheduler": dask_scheduler})
    raw["data"]["storage_options"] = {"token": SECRET}
    raw["tracking"]["tags"] = {"team": "demand"}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "MLFLOW_TRACKING_PASSWORD": SECRET + "-env"}
    trained = subprocess.run(_cli("train", "-c", str(config_file)), capture_output=True, text=True,
                             env=env, timeout=300)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    forecasted = subprocess.run(_cli("forecast", "-c", str(config_file)), capture_output=True,
                                text=True, env=env, timeout=300)  # fmt: skip
    assert forecasted.returncode == 0, forecasted.stderr

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'work' / 'mlflow.db'}")
    mlflow.set_tracking_uri(client._tracking_client.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    recorded = _all_recorded_text(config_file, [run.info.run_id for run in runs])
    ledgers = "".join(file.read_bytes().decode("utf-8", "replace")
                      for file in (tmp_path / "work" / "jobs").rglob("*") if file.is_file())  # fmt: skip
    for text in (recorded, ledgers, trained.stdout, trained.stderr, forecasted.stdout):
        assert SECRET not in text
    assert "storage_options" in recorded  # the key is recorded, its value masked


def test_password_in_tracking_uri_is_masked_in_errors(tmp_path, oj_data):
    raw = base_config(oj_data, tmp_path / "work")
    raw["tracking"]["uri"] = f"postgresql://forecaster:{SECRET}@127.0.0.1:9/mlflow"
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    failed = subprocess.run(_cli("train", "-c", str(config_file)), capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert failed.returncode == 2
    assert SECRET not in failed.stderr + failed.stdout
    assert "forecaster:***@127.0.0.1" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1


def test_systematic_failure_stops_the_job_early(tmp_path, forty, dask_scheduler):
    template = tmp_path / "broken.py"
    template.write_text(
        "def train(history, context):\n"
        "    raise ImportError('a dependency is missing on the workers')\n"
        "def predict(model, history, future, context):\n"
        "    return []\n"
    )
    raw = base_config(forty, tmp_path / "work", model={"template": str(template)},
                      compute={"scheduler": dask_scheduler, "batch_size": 2})  # fmt: skip
    config = manymodels.config_from_dict(raw)
    result = manymodels.train(config)

    assert result.stopped_early and result.budget_exceeded
    assert 20 <= result.failed < 40
    assert result.trained == 0
    assert mlflow.MlflowClient().get_run(result.run_id).info.status == "FAILED"
    from manymodels.jobs.budget import require_within_budget

    with pytest.raises(
        manymodels.JobError,
        match=r"^stopped early: (\d+) of the first \1 entities failed, which looks systematic",
    ):
        require_within_budget(result, config)


def test_rerun_after_failures_retries_only_the_failed_entities(make_config, registry_of, tmp_path):
    marker = tmp_path / "store-3-is-broken"
    marker.write_text("")
    template = tmp_path / "until_fixed.py"
    template.write_text(
        "import os\n"
        "import numpy as np\n"
        "def train(history, context):\n"
        "    if context.keys['store'] == '3' and os.path.exists(context.params['marker']):\n"
        "        raise ValueError('store 3 data is being repaired')\n"
        "    return float(history[context.target_col].mean())\n"
        "def predict(model, history, future, context):\n"
        "    return np.full(len(future), model)\n"
    )
    config = make_config(model={"template": str(template), "params": {"marker": str(marker)}},
                         failures={"max_share": 0.0})  # fmt: skip
    first = manymodels.train(config)
    assert (first.trained, first.failed, first.budget_exceeded) == (9, 3, True)

    marker.unlink()
    second = manymodels.train(config)
    assert second.job_id == first.job_id and second.resumed_with == 9
    assert (second.trained, second.failed, second.budget_exceeded) == (12, 0, False)
    versions = registry_of(config).versions()
    assert len(versions) == 12 and {ref.tags["manymodels.job_id"] for ref in versions} == {
        first.job_id
    }
    assert mlflow.MlflowClient().get_run(first.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_resume_refuses_a_job_of_another_config(tmp_path, oj_data, dask_scheduler):
    template = tmp_path / "broken.py"
    template.write_text(
        "def train(history, context):\n"
        "    raise ValueError('not yet')\n"
        "def predict(model, history, future, context):\n"
        "    return []\n"
    )
    raw = base_config(oj_data, tmp_path / "work", model={"template": str(template)},
                      compute={"scheduler": dask_scheduler})  # fmt: skip
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    unfinished = manymodels.train(manymodels.load_config(config_file))
    assert unfinished.budget_exceeded, "a failed job stays resumable"

    other = subprocess.run(_cli("train", "-c", str(config_file), "-q", "--resume",
                                unfinished.job_id, "--set", "horizon=6"),
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert other.returncode == 2
    assert len(other.stderr.strip().splitlines()) == 1
    assert other.stderr.startswith(
        f"error: --resume: job {unfinished.job_id} was started with another config (digest "
    )
    assert "resume it with the config it started with, or run without --resume" in other.stderr
