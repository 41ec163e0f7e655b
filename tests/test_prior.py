"""The job-level prior: each candidate weighed by what the whole job's backtests say of it.

Unit tests of the arithmetic and of a choice that the prior turns, then a real training job on
a local cluster: backtested once, chosen with the prior, every entity registered once.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

import manymodels
from manymodels.artifacts.loader import ModelLoader
from manymodels.candidates import plan_models
from manymodels.config import config_from_dict
from manymodels.data import write_partitioned
from manymodels.datasets import oj_sales
from manymodels.fitting import fit_entity
from manymodels.priors import MIN_ENTITIES, RELATIVE_CAP, job_prior, relative_scores
from manymodels.report import print_train_summary
from manymodels.tasks.entities import fit_spec

from .conftest import base_config


def test_relative_scores_are_each_metric_over_the_entitys_best():
    assert relative_scores({"a": 2.0, "b": 3.0, "c": float("nan"), "d": 100.0}) == {
        "a": 1.0, "b": 1.5, "d": RELATIVE_CAP}  # fmt: skip
    assert relative_scores({"a": 0.0, "b": 0.0, "c": 1.0}) == {"a": 1.0, "b": 1.0,
                                                               "c": RELATIVE_CAP}  # fmt: skip
    assert relative_scores({"a": float("nan")}) == {}


def test_the_prior_penalises_what_is_weak_across_the_job():
    entities = [{"a": 1.0, "b": 1.4}] * (MIN_ENTITIES - 5) + [{"a": 1.2, "b": 1.0}] * 5
    prior = job_prior(entities, strength=0.5)
    mean_a, mean_b = (15 * 1.0 + 5 * 1.2) / 20, (15 * 1.4 + 5 * 1.0) / 20
    assert prior == pytest.approx({"a": 1.0, "b": 1.0 + 0.5 * (mean_b - mean_a)})


def test_no_prior_from_too_few_entities_or_no_strength():
    entities = [{"a": 1.0, "b": 1.4}] * MIN_ENTITIES
    assert job_prior(entities[:-1], strength=0.5) == {}
    assert job_prior(entities, strength=0.0) == {}
    assert job_prior([{}] * 50, strength=0.5) == {}


def _shifted(path: Path, shift: float) -> dict:
    path.write_text(
        "def train(history, context):\n    return float(history[context.target_col].mean())\n\n"
        "def predict(model, history, future, context):\n"
        f"    return [model + {shift}] * len(future)\n"
    )
    return {"template": str(path)}


def _spec(candidates, prior=None):
    config = config_from_dict({
        "horizon": 8, "model": {"candidates": candidates, "combine": 1},
        "data": {"path": "unused", "partition_by": ["id"], "time_col": "t", "target_col": "y",
                 "freq": "W-SUN"},
    })  # fmt: skip
    spec = fit_spec(config, plan_models(config.model))
    return spec if prior is None else dataclasses.replace(spec, prior=prior)


def test_the_prior_turns_a_close_choice_and_the_metrics_stay_the_winners_own(tmp_path):
    near, far = _shifted(tmp_path / "near.py", 1.0), _shifted(tmp_path / "far.py", 1.2)
    values = 50 + np.random.default_rng(5).normal(0, 1, 80)
    frame = pd.DataFrame({"t": pd.date_range("2015-01-04", periods=80, freq="W-SUN"), "y": values})

    alone = fit_entity(frame, {"id": "1"}, _spec([near, far]))
    weighed = fit_entity(frame, {"id": "1"}, _spec([near, far], {"near": 1.5, "far": 1.0}))

    assert alone.winner == "near"
    assert weighed.winner == "far"
    assert weighed.metrics == weighed.scores["far"]
    assert weighed.scores["near"]["mase"] < weighed.scores["far"]["mase"]


_COUNTING = """
import os
from pathlib import Path

import numpy as np


def train(history, context):
    # One line per call, naming the entity: the test counts the calls per entity.
    with open(Path(context.params["calls"]) / str(os.getpid()), "a") as log:
        log.write(context.keys["store"] + "-" + context.keys["brand"] + "\\n")
    return float(history[context.target_col].iloc[-1])


def predict(model, history, future, context):
    return np.full(len(future), model)
"""


@pytest.fixture
def panel(tmp_path: Path) -> Path:
    frame = oj_sales(n_entities=MIN_ENTITIES + 4, n_weeks=60, seed=8, short_share=0.0,
                     intermittent_share=0.0)  # fmt: skip
    path = tmp_path / "data"
    write_partitioned(frame, str(path), ["store", "brand"], basename="part")
    return path


def test_a_job_backtests_once_chooses_with_its_prior_and_registers_each_entity_once(
    tmp_path, panel, dask_scheduler, registry_of, capsys
):
    template, calls = tmp_path / "counting.py", tmp_path / "calls"
    template.write_text(_COUNTING, encoding="utf-8")
    calls.mkdir()
    candidates = [{"template": "naive"}, {"template": "theta"},
                  {"template": str(template), "params": {"calls": str(calls)}}]  # fmt: skip
    config = manymodels.config_from_dict(base_config(
        panel, tmp_path / "work", model={"template": "auto", "params": {}, "candidates": candidates},
        compute={"scheduler": dask_scheduler}, evaluation={"windows": 3},
    ))  # fmt: skip

    result = manymodels.train(config)

    entities = MIN_ENTITIES + 4
    assert (result.trained, result.failed) == (entities, 0)
    versions = registry_of(config).versions()
    assert len(versions) == entities and {v.version for v in versions} == {1}
    # Three backtest fits per entity, and one refit where it won: never backtested twice.
    per_entity: dict[str, int] = {}
    for log in calls.iterdir():
        for name in log.read_text().split():
            per_entity[name] = per_entity.get(name, 0) + 1
    assert len(per_entity) == entities
    assert set(per_entity.values()) <= {3, 4}, "backtested again in the training tasks"
    assert set(result.entities["winner"]) <= {"naive", "theta", "counting", "combination"}

    prior = _logged_prior(config, result.run_id)
    assert prior["entities"] == entities and prior["strength"] == config.model.prior
    assert set(prior["factors"]) == {"naive", "theta", "counting"}
    assert min(prior["factors"].values()) == 1.0
    assert result.prior == pytest.approx(prior["factors"])
    print_train_summary(result)
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if "panel's prior" in ln]
    assert all(f"{name} x{factor:.2f}" in line for name, factor in prior["factors"].items())


def test_a_job_of_few_entities_chooses_without_a_prior(tmp_path, oj_data, dask_scheduler):
    config = manymodels.config_from_dict(base_config(
        oj_data, tmp_path / "work", model={"template": "auto", "params": {}, "candidates": [
            {"template": "naive"}, {"template": "theta"}]},
        compute={"scheduler": dask_scheduler},
    ))  # fmt: skip
    result = manymodels.train(config)
    assert result.failed == 0
    assert result.prior == {}
    assert not list((tmp_path / "work" / "jobs").glob("*.prior.json"))


def _logged_prior(config, run_id: str) -> dict:
    client = mlflow.MlflowClient(f"sqlite:///{Path(config.work_dir) / 'mlflow.db'}")
    local = client.download_artifacts(run_id, "prior.json", str(Path(config.work_dir) / "dl"))
    return json.loads(Path(local).read_text(encoding="utf-8"))


_SLOW_ONCE_CHOSEN = """
import glob
import time

import numpy as np


def train(history, context):
    # Slow once the job's prior exists: the job's second phase can be caught under way.
    if glob.glob(context.params["priors"]):
        time.sleep(0.3)
    return float(history[context.target_col].mean()) + context.params["shift"]


def predict(model, history, future, context):
    return np.full(len(future), model)
"""


def test_a_resumed_job_keeps_the_prior_it_made(tmp_path, panel, dask_scheduler, registry_of):
    template = tmp_path / "slow.py"
    template.write_text(_SLOW_ONCE_CHOSEN, encoding="utf-8")
    priors = str(tmp_path / "work" / "jobs" / "*.prior.json")
    candidates = [{"template": str(template), "name": name,
                   "params": {"priors": priors, "shift": shift}}
                  for name, shift in (("low", 0.0), ("high", 5.0))]  # fmt: skip
    raw = base_config(panel, tmp_path / "work", compute={"scheduler": dask_scheduler},
                      model={"template": "auto", "params": {}, "candidates": candidates})  # fmt: skip
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    cli = [sys.executable, "-m", "manymodels.cli", "train", "-c", str(config_file), "-q"]

    first = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ledgers = tmp_path / "work" / "jobs"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any(
        path.stat().st_size for path in ledgers.glob("*.jsonl")
    ):  # fmt: skip
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    (prior_file,) = ledgers.glob("*.prior.json")
    made, made_at = prior_file.read_text(), prior_file.stat().st_mtime_ns

    again = subprocess.run(cli, capture_output=True, text=True, timeout=300)

    assert again.returncode == 0, again.stderr
    assert list(ledgers.glob("*.prior.json")) == [prior_file]
    assert (prior_file.read_text(), prior_file.stat().st_mtime_ns) == (made, made_at)
    versions = registry_of(manymodels.config_from_dict(raw)).versions()
    assert len(versions) == MIN_ENTITIES + 4 and {v.version for v in versions} == {1}


_FAILS_FOR_ONE = """
import os
from pathlib import Path

import numpy as np


def train(history, context):
    if context.keys["store"] == context.params["bad_store"]:
        with open(Path(context.params["calls"]) / str(os.getpid()), "a") as log:
            log.write("call\\n")
        raise ValueError("no model for this store")
    return float(history[context.target_col].mean())


def predict(model, history, future, context):
    return np.full(len(future), model)
"""


def test_an_entity_that_fails_its_backtests_fails_once_not_twice(
    tmp_path, panel, dask_scheduler
):
    template, calls = tmp_path / "fails.py", tmp_path / "calls"
    template.write_text(_FAILS_FOR_ONE, encoding="utf-8")
    calls.mkdir()
    bad_store = sorted(p.name.split("=")[1] for p in panel.iterdir())[0]
    params = {"calls": str(calls), "bad_store": bad_store}
    candidates = [{"template": str(template), "name": name, "params": params}
                  for name in ("first", "second")]  # fmt: skip
    config = manymodels.config_from_dict(base_config(
        panel, tmp_path / "work", model={"template": "auto", "params": {}, "candidates": candidates},
        compute={"scheduler": dask_scheduler},
    ))  # fmt: skip

    result = manymodels.train(config)

    failed = result.entities[result.entities["status"] == "failed"]
    assert len(failed) == len(list((panel / f"store={bad_store}").iterdir()))
    assert failed["error"].str.contains("no model for this store").all()
    # Each candidate raised once, at its first backtest window, in the first phase only.
    called = sum(len(log.read_text().split()) for log in calls.iterdir())
    assert called == 2 * len(failed)


def _revise(path: Path) -> None:
    """New rows for one partition: its sales raised by half, a new modification time."""
    frame = pd.read_parquet(path)
    frame["sales"] = frame["sales"] * 1.5
    time.sleep(0.01)
    frame.to_parquet(path, index=False)


def test_a_small_retrain_chooses_and_calibrates_with_its_champions_panel(
    tmp_path, panel, dask_scheduler, registry_of, capsys
):
    def config(**model):
        return manymodels.config_from_dict(base_config(
            panel, tmp_path / "work", compute={"scheduler": dask_scheduler},
            model={"template": "auto", "params": {}, **model},
        ))  # fmt: skip

    candidates = [{"template": "naive"}, {"template": "theta"}, {"template": "seasonal_naive"}]
    trained = manymodels.train(config(candidates=candidates))
    assert trained.prior and trained.failed == 0
    changed = sorted(panel.glob("store=*/brand=*/*.parquet"))[:2]
    for path in changed:
        _revise(path)

    retrained = manymodels.retrain(config(candidates=candidates, prior=1.0))

    assert retrained.trained == 2
    # The champions' job's factors, their distance from 1 doubled with the strength.
    assert retrained.prior == pytest.approx(
        {name: 1 + 2 * (factor - 1) for name, factor in trained.prior.items()})  # fmt: skip
    logged = _logged_prior(config(candidates=candidates), retrained.run_id)
    assert logged["inherited_from"] == trained.job_id and logged["strength"] == 1.0
    calibration = tuple(sorted((float(level), factor)
                               for level, factor in logged["calibration"]["factors"].items()))  # fmt: skip
    assert calibration, "the first job made a calibration"
    loader = ModelLoader()
    for ref in registry_of(config(candidates=candidates)).versions():
        model = loader.load(ref.source)
        assert model.intervals.calibration == calibration, ref.name

    # Without a calibration asked for, the prior alone is taken.
    _revise(changed[0])
    plain = manymodels.retrain(manymodels.config_from_dict(base_config(
        panel, tmp_path / "work", compute={"scheduler": dask_scheduler},
        model={"template": "auto", "params": {}, "candidates": candidates},
        evaluation={"calibrate": False},
    )))  # fmt: skip
    assert plain.trained == 1
    assert plain.prior == pytest.approx(trained.prior) and plain.calibration == {}
    print_train_summary(plain)
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if "panel's prior" in ln]
    assert f"in job {trained.job_id}" in line
