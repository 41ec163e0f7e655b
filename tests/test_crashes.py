"""An entity that ends its worker process fails alone, with the reason; its neighbours train.

Real worker processes die here: each case runs an embedded LocalCluster of its own, so that the
shared session cluster never loses its workers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

import manymodels
from manymodels.crashes import EXIT_TOPIC, MEMORY_TOPIC, WorkerCrash, describe_death, run_guarded
from tests.conftest import base_config

CULPRIT = {"store": "1", "brand": "dominicks"}

CRASHING_TEMPLATE = """
import ctypes
import os
import sys
import time

import numpy as np


def _crash(how):
    if how == "exit":
        sys.exit(3)
    if how == "interrupt":
        raise KeyboardInterrupt
    if how == "os_exit":
        os._exit(7)
    if how == "segfault":
        ctypes.string_at(0)
    if how == "memory":
        hog = np.ones(200_000_000)  # 1.6 GB, far over the worker's limit
        time.sleep(30)
        return hog


def train(history, context):
    if dict(context.keys) == {"store": "1", "brand": "dominicks"}:
        _crash(context.params["how"])
    return float(history[context.target_col].tail(4).mean())


def predict(model, history, future, context):
    marker = context.params.get("crash_forecasts", "")
    if dict(context.keys) == {"store": "1", "brand": "dominicks"} and os.path.exists(marker):
        _crash("os_exit")
    return np.full(len(future), model)
"""


def _config(tmp_path: Path, oj_data: Path, how: str, **compute):
    template = tmp_path / "crashing.py"
    template.write_text(CRASHING_TEMPLATE)
    params = {"how": how, "crash_forecasts": str(tmp_path / "crash-forecasts")}
    raw = base_config(
        oj_data,
        tmp_path / "work",
        model={"template": str(template), "params": params},
        compute={"n_workers": 2, "batch_size": 4, **compute},
        failures={"max_share": 0.5},
    )
    return manymodels.config_from_dict(raw)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("exit", r"called sys\.exit\(3\)"),
        ("interrupt", r"raised KeyboardInterrupt"),
        # The nanny's exit report of an os._exit or a segfault does not always reach the
        # scheduler before the task is declared lost (seen under load since the backtests made
        # tasks longer); the culprit is still found alone, and the message then says the code
        # is unknown.
        ("os_exit", r"exited with status 7|the cluster reported no exit code"),
        ("segfault", r"killed by signal 11 \(SIGSEGV\)|the cluster reported no exit code"),
    ],
)
def test_an_entity_that_ends_its_process_fails_alone(tmp_path, oj_data, how, reason):
    config = _config(tmp_path, oj_data, how)
    result = manymodels.train(config)

    assert (result.trained, result.failed) == (11, 1)
    failure = result.failures.iloc[0]
    assert {"store": failure["store"], "brand": failure["brand"]} == CULPRIT
    assert failure["error_type"] == "WorkerCrash"
    assert failure["error"].startswith("store=1/brand=dominicks: ")
    assert re.search(reason, failure["error"]), failure["error"]


@pytest.mark.slow
def test_an_entity_over_the_memory_limit_fails_alone(tmp_path, oj_data):
    config = _config(tmp_path, oj_data, "memory", memory_limit="700MiB")
    result = manymodels.train(config)

    assert (result.trained, result.failed) == (11, 1)
    failure = result.failures.iloc[0]
    assert {"store": failure["store"], "brand": failure["brand"]} == CULPRIT
    assert "went over the worker's memory limit" in failure["error"]


@pytest.mark.slow
def test_a_forecast_that_ends_its_process_fails_alone(tmp_path, oj_data):
    config = _config(tmp_path, oj_data, "none")
    assert manymodels.train(config).trained == 12
    (tmp_path / "crash-forecasts").write_text("")
    result = manymodels.forecast(config)

    assert (result.forecast, result.failed) == (11, 1)
    failed = result.entities[result.entities["status"] == "failed"].iloc[0]
    assert (failed["store"], failed["brand"]) == ("1", "dominicks")
    assert re.search(r"^store=1/brand=dominicks: .*exited with status 7", failed["error"])
    output = pd.read_parquet(config.forecast.output)
    assert len(output.groupby(["store", "brand"])) == 11


def test_exits_inside_a_task_become_errors():
    with pytest.raises(WorkerCrash, match=r"called sys\.exit\(0\)"):
        run_guarded(sys.exit, 0)
    with pytest.raises(WorkerCrash, match="KeyboardInterrupt"):
        run_guarded(_interrupt)
    assert run_guarded(int, "4") == 4


def _interrupt() -> None:
    raise KeyboardInterrupt


def test_deaths_are_described_from_the_cluster_events():
    events = {
        EXIT_TOPIC: [
            {"worker": "tcp://a:1", "exitcode": -9},
            {"worker": "tcp://b:1", "exitcode": 2},
        ],
        MEMORY_TOPIC: [{"worker": "tcp://c:1"}],
    }
    assert "killed by signal 9 (SIGKILL)" in describe_death("tcp://a:1", events)
    assert "exited with status 2" in describe_death("tcp://b:1", events)
    events[EXIT_TOPIC].append({"worker": "tcp://c:1", "exitcode": -15})
    assert "memory limit" in describe_death("tcp://c:1", events)
    assert describe_death("tcp://d:1", events) is None


@pytest.mark.parametrize("where", ["import", "params"])
def test_a_template_that_exits_is_a_clear_error(tmp_path, oj_data, where):
    template = tmp_path / "exits.py"
    body = "import sys\n"
    if where == "import":
        body += "sys.exit(0)\n"
    else:
        body += (
            "import pydantic\n"
            "class PARAMS(pydantic.BaseModel):\n"
            "    level: int = 1\n"
            "    @pydantic.field_validator('level')\n"
            "    @classmethod\n"
            "    def _check(cls, value):\n"
            "        sys.exit(0)\n"
        )
    body += "def train(history, context):\n    return 1.0\n"
    body += "def predict(model, history, future, context):\n    return [model] * len(future)\n"
    template.write_text(body)
    raw = base_config(oj_data, tmp_path / "work", model={"template": str(template),
                                                          "params": {"level": 2}})  # fmt: skip
    if where == "import":
        raw["model"]["params"] = {}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    for command in ("validate", "train"):
        done = subprocess.run([sys.executable, "-m", "manymodels.cli", command, "-c",
                               str(config_file)], capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 2, done.stdout + done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert "called sys.exit(0)" in done.stderr


def test_a_lost_forecast_batch_is_split_and_its_partial_files_go(tmp_path):
    from manymodels.jobs.forecasting import _split_indexed

    for name in [
        "store=1/part-3-0.parquet",
        "store=2/part-3-0.parquet",
        "store=1/part-13-0.parquet",
    ]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"PAR1")  # what a process killed mid-write leaves
    parts = _split_indexed(str(tmp_path), ("3", ["a", "b", "c"]))  # type: ignore[list-item]

    assert parts == [("3.0", ["a", "b"]), ("3.1", ["c"])]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet")) == [
        "store=1/part-13-0.parquet"
    ]
    assert _split_indexed(str(tmp_path), ("4", ["a"])) == [("4", ["a"])]  # type: ignore[list-item]


@pytest.mark.slow
def test_a_candidate_that_ends_its_process_in_the_first_phase_fails_its_entity_alone(tmp_path):
    # Automatic selection over 24 entities backtests them all first, keeping the backtests on
    # the workers; the batch whose worker dies there is backtested again by its training task,
    # which isolates the culprit as any training task does.
    from manymodels.data import write_partitioned
    from manymodels.datasets import oj_sales
    from manymodels.priors import MIN_ENTITIES

    frame = oj_sales(n_entities=MIN_ENTITIES + 4, n_weeks=60, seed=8, short_share=0.0,
                     intermittent_share=0.0)  # fmt: skip
    culprit = frame.iloc[0][["store", "brand"]].astype(str).to_dict()
    data = tmp_path / "data"
    write_partitioned(frame, str(data), ["store", "brand"], basename="part")
    template = tmp_path / "crashing.py"
    template.write_text(CRASHING_TEMPLATE.replace(json.dumps(CULPRIT), json.dumps(culprit)))
    candidates = [{"template": "naive"},
                  {"template": str(template), "params": {"how": "os_exit"}}]  # fmt: skip
    config = manymodels.config_from_dict(base_config(
        data, tmp_path / "work", model={"template": "auto", "params": {}, "candidates": candidates},
        compute={"n_workers": 2, "batch_size": 4}, failures={"max_share": 0.5},
    ))  # fmt: skip

    result = manymodels.train(config)

    assert (result.trained, result.failed) == (MIN_ENTITIES + 3, 1)
    failure = result.failures.iloc[0]
    assert {"store": failure["store"], "brand": failure["brand"]} == culprit
    assert failure["error_type"] == "WorkerCrash"
    # The first phase ran (its prior may be empty: the crash can fail other batches' backtests
    # on the worker that died too, and the entities left can be too few for one).
    assert list((tmp_path / "work" / "jobs").glob("*.prior.json"))
