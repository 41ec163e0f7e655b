"""The bad-input matrix: every case ends in its exact outcome.

Either a clear error (naming the file, key, entity or column, and the fix) before anything is
written, or an isolated, recorded failure of just the affected entity while the others train.
The isolated cases share one dataset and one training job (one entity per case), so that the
matrix stays fast; each case is still its own test.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import manymodels
from manymodels.errors import ConfigError, DataError, ManyModelsError, TemplateError
from manymodels.naming import model_name

HORIZON = 4

# ----------------------------------------------------------------------------------------------
# Errors before anything is written: config, template and dataset layout.
# ----------------------------------------------------------------------------------------------

GOOD_YAML = """\
horizon: 4
data:
  path: data
  partition_by: [entity]
  time_col: week
  target_col: sales
  exog_cols: [price]
  freq: W-SUN
model:
  template: sklearn_lags
  params: {lags: 3, fourier_terms: 1}
work_dir: work
"""


def _weekly(rows: int = 40, seed: int = 0, level: float = 100.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    weeks = pd.date_range("2022-01-02", periods=rows, freq="W-SUN")
    sales = level + 10 * np.sin(np.arange(rows) / 4) + rng.normal(0, 2, rows)
    return pd.DataFrame(
        {"week": weeks, "sales": sales.round(2), "price": rng.uniform(1, 2, rows).round(2)}
    )


def _write_entity(root: Path, entity: str, frame: pd.DataFrame | bytes) -> None:
    from urllib.parse import quote

    folder = root / f"entity={quote(entity, safe='')}"
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(frame, bytes):
        (folder / "part-0.parquet").write_bytes(frame)
    else:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / "part-0.parquet")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with a valid config.yaml and three good entities."""
    for index in range(3):
        _write_entity(tmp_path / "data", f"e{index}", _weekly(seed=index))
    (tmp_path / "config.yaml").write_text(GOOD_YAML)
    return tmp_path


def _edit_yaml(project: Path, old: str, new: str) -> Path:
    file = project / "config.yaml"
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new))
    return file


def _assert_nothing_written(project: Path) -> None:
    assert not (project / "work" / "mlflow.db").exists()
    assert not (project / "forecasts").exists()


CONFIG_CASES = {
    "unknown key": (
        ("time_col: week", "time_column: week"),
        ConfigError,
        r"config.yaml: unknown key 'data.time_column'. Hint: did you mean 'time_col'\?",
    ),
    "wrong type": (
        ("horizon: 4", "horizon: four"),
        ConfigError,
        r"config.yaml: key 'horizon' has an invalid value 'four': input should be a valid integer",
    ),
    "zero horizon": (
        ("horizon: 4", "horizon: 0"),
        ConfigError,
        r"config.yaml: key 'horizon' has an invalid value 0: input should be greater than or equal to 1",
    ),
    "negative horizon": (
        ("horizon: 4", "horizon: -2"),
        ConfigError,
        r"key 'horizon' has an invalid value -2: input should be greater than or equal to 1",
    ),
    "yaml syntax error": (
        ("  target_col: sales", "  target_col: [sales"),
        ConfigError,
        r"config.yaml:\d+:\d+: YAML syntax error: .*Hint: check indentation",
    ),
    "unknown built-in template": (
        ("template: sklearn_lags", "template: sklearn-lags"),
        TemplateError,
        r"config.yaml: model.template: 'sklearn-lags' is not a built-in template .*did you mean 'sklearn_lags'",
    ),
    "template file missing": (
        ("template: sklearn_lags", "template: nowhere.py"),
        TemplateError,
        r"model.template: template file .*nowhere.py not found.*manymodels new-template",
    ),
    "unknown template parameter": (
        ("params: {lags: 3, fourier_terms: 1}", "params: {lag: 3}"),
        TemplateError,
        r"model.params.lag: unknown parameter of template 'sklearn_lags'. Hint: did you mean 'lags'\?",
    ),
    "unknown estimator": (
        ("params: {lags: 3, fourier_terms: 1}", "params: {estimator: xgboostt}"),
        TemplateError,
        r"model.params.estimator: invalid value 'xgboostt' for template 'sklearn_lags': unknown estimator",
    ),
    "partition key as the target": (
        ("target_col: sales", "target_col: entity"),
        ConfigError,
        r"key 'data.target_col' has an invalid value 'entity': 'entity' is an entity key column",
    ),
    "partition key as exogenous": (
        ("exog_cols: [price]", "exog_cols: [price, entity]"),
        ConfigError,
        r"key 'data.exog_cols' .*'entity' is an entity key column \(data.partition_by/id_cols\)",
    ),
    "scheduler address without a port": (
        ("work_dir: work", "work_dir: work\ncompute: {scheduler: notanaddress}"),
        ConfigError,
        r"key 'compute.scheduler' has an invalid value 'notanaddress': not a Dask scheduler address; use tcp://HOST:PORT",
    ),
    "memory limit that is not a size": (
        ("work_dir: work", "work_dir: work\ncompute: {memory_limit: lots}"),
        ConfigError,
        r"key 'compute.memory_limit' has an invalid value 'lots': not a memory size; use auto",
    ),
    "output partitioned by a non-key column": (
        ("work_dir: work", "work_dir: work\nforecast: {partition_by: [week]}"),
        ConfigError,
        r"key 'forecast.partition_by' has an invalid value \['week'\]: only entity columns \['entity'\]",
    ),
    "work_dir under a file": (
        ("work_dir: work", "work_dir: config.yaml/work"),
        ManyModelsError,
        r"config.yaml: work_dir: .*config.yaml/work is not writable .*Hint: set work_dir",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_error(project, case):
    (old, new), error, message = CONFIG_CASES[case]
    file = _edit_yaml(project, old, new)
    with pytest.raises(error, match=message):
        manymodels.train(manymodels.load_config(file))
    _assert_nothing_written(project)


TEMPLATE_FILE_CASES = {
    "syntax error": (
        "def train(history, context)\n    return 1\n",
        r"bad.py:1: syntax error in template",
    ),
    "no predict function": (
        "def train(history, context):\n    return 1\n",
        r"bad.py: template has no function 'predict'. Hint: a template defines train",
    ),
    "wrong arity": (
        "def train(history):\n    return 1\ndef predict(m, h, f, c):\n    return [1]\n",
        r"bad.py: 'train' must accept 2 positional arguments \(history, context\)",
    ),
    "raises on import": (
        "import not_a_module_anywhere\n",
        r"bad.py: importing the template raised ModuleNotFoundError",
    ),
    "not utf-8": (
        b"x = '\xff\xfe'\n",
        r"model.template: cannot read template file .*bad.py \('utf-8' codec can't decode",
    ),
}


@pytest.mark.parametrize("case", list(TEMPLATE_FILE_CASES))
def test_broken_template_file(project, case):
    text, message = TEMPLATE_FILE_CASES[case]
    if isinstance(text, bytes):
        (project / "bad.py").write_bytes(text)
    else:
        (project / "bad.py").write_text(text)
    file = _edit_yaml(project, "template: sklearn_lags", "template: bad.py")
    with pytest.raises(TemplateError, match=message):
        manymodels.train(manymodels.load_config(file))
    _assert_nothing_written(project)


def _string_target(project: Path) -> None:
    for index in range(3):
        frame = _weekly(seed=index)
        frame["sales"] = frame["sales"].astype(str)
        _write_entity(project / "data", f"e{index}", frame)


DATA_CASES = {
    "missing data path": (
        lambda p: _edit_yaml(p, "path: data", "path: no-such-folder"),
        r"data.path: .*no-such-folder does not exist. Hint: point data.path",
    ),
    "empty dataset": (
        lambda p: _edit_yaml(p, "path: data", "path: empty") and (p / "empty").mkdir(),
        r"data.path: no Parquet files under .*empty. Hint: the dataset is empty",
    ),
    "missing partition column": (
        lambda p: _edit_yaml(p, "partition_by: [entity]", "partition_by: [store]"),
        r"data.partition_by: .* is partitioned by \['entity'\], but the config says \['store'\]",
    ),
    "missing time column": (
        lambda p: _edit_yaml(p, "time_col: week", "time_col: date"),
        r"data.time_col: column 'date' is not in the data .*Hint: available columns are",
    ),
    "missing target column": (
        lambda p: _edit_yaml(p, "target_col: sales", "target_col: units"),
        r"data.target_col: column 'units' is not in the data",
    ),
    "non-numeric target everywhere": (
        _string_target,
        r"data.target_col: column 'sales' has type (large_)?string, not a number. Hint: convert it",
    ),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_data_error_before_anything_is_written(project, case):
    prepare, message = DATA_CASES[case]
    prepare(project)
    with pytest.raises(DataError, match=message):
        manymodels.train(manymodels.load_config(project / "config.yaml"))
    _assert_nothing_written(project)


def test_a_corrupt_first_partition_fails_alone(project, dask_scheduler):
    # Validation reads the columns from the next readable partition instead of refusing the job.
    _write_entity(project / "data", "a-first", b"PAR1 this is not parquet at all")
    config = manymodels.load_config(
        project / "config.yaml", [f"compute.scheduler={dask_scheduler}"]
    )

    result = manymodels.train(config)

    assert result.trained == 3
    failure = result.failures.iloc[0]
    assert (result.failed, failure["entity"], failure["stage"]) == (1, "a-first", "read")


# ----------------------------------------------------------------------------------------------
# Isolated failures: one job over a dataset with one bad entity per case.
# ----------------------------------------------------------------------------------------------

MISBEHAVING_TEMPLATE = """
import time
import numpy as np

def min_history(context):
    return 4

def train(history, context):
    entity = context.keys["entity"]
    if entity == "template raises":
        raise RuntimeError("the template broke on purpose")
    if entity == "train returns none":
        return None
    if entity == "runs past its timeout":
        while True:
            pass
    return float(history[context.target_col].tail(4).mean())

def predict(model, history, future, context):
    entity = context.keys["entity"]
    if entity == "predict wrong length":
        return np.ones(len(future) + 1)
    if entity == "predict returns nan":
        return np.full(len(future), np.nan)
    return np.full(len(future), model)
"""


def _with(frame: pd.DataFrame, **changes) -> pd.DataFrame:
    frame = frame.copy()
    for column, values in changes.items():
        frame[column] = values
    return frame


def _unparseable_times() -> pd.DataFrame:
    frame = _weekly()
    frame["week"] = frame["week"].dt.strftime("%Y-%m-%d")
    frame.loc[7, "week"] = "not-a-date"
    return frame


def _nan_targets() -> pd.DataFrame:
    frame = _weekly()
    frame.loc[[5, 11, 20], "sales"] = np.nan
    return frame


LONG_KEY = "long-" + "x" * 195
OK = ("ok", None, None, None)

# entity -> (frame or raw bytes, (status, stage, error type, message pattern), filled periods)
ISOLATED_CASES: dict[str, tuple] = {
    "unparseable timestamps": (
        _unparseable_times(),
        (
            "failed",
            "train",
            "EntityError",
            r"column 'week' has values that are not timestamps \(e.g. 'not-a-date'\)",
        ),
    ),
    "duplicate timestamps": (
        pd.concat([_weekly(), _weekly().iloc[[9]]]),
        (
            "failed",
            "train",
            "EntityError",
            r"1 duplicate timestamps in 'week' \(first: 2022-03-06.*add the column that tells them apart",
        ),
    ),
    "irregular gaps": (_weekly().drop(index=range(10, 15)), OK),
    "nan targets": (_nan_targets(), OK),
    "all-nan target": (
        _with(_weekly(), sales=np.nan),
        (
            "failed",
            "train",
            "EntityError",
            r"column 'sales' has no observed values for this entity",
        ),
    ),
    "constant series": (_with(_weekly(), sales=100.0), OK),
    # Too short for the template: the naive fallback (model.fallback), tagged as such.
    "shorter than lags plus holdout": (_weekly(rows=6), OK),
    "corrupt parquet file": (
        b"PAR1 this is not parquet at all",
        ("failed", "read", "ArrowInvalid", r"Parquet"),
    ),
    "schema without exog column": (
        _weekly().drop(columns="price"),
        ("failed", "read", "DataError", r"column 'price' is missing from this partition's files"),
    ),
    "schema with integer target": (_with(_weekly(), sales=np.arange(40, dtype="int64")), OK),
    "non-numeric target in one partition": (
        _with(_weekly(), sales=["n/a"] * 40),
        ("failed", "train", "EntityError", r"column 'sales' is not numeric \(e.g. 'n/a'\)"),
    ),
    "template raises": (
        _weekly(),
        ("failed", "train", "RuntimeError", r"^the template broke on purpose$"),
    ),
    "train returns none": (
        _weekly(),
        ("failed", "train", "EntityError", r"train\(\) returned None"),
    ),
    "predict wrong length": (
        _weekly(),
        ("failed", "train", "EntityError", r"predict\(\) returned 5 values for 4 future rows"),
    ),
    "predict returns nan": (
        _weekly(),
        ("failed", "train", "EntityError", r"predict\(\) returned 4 NaN or infinite values"),
    ),
    "runs past its timeout": (
        _weekly(),
        ("failed", "train", "EntityTimeout", r"exceeded failures.entity_timeout of 3 s"),
    ),
    "key/with/slashes": (_weekly(seed=1), OK),
    "key with spaces": (_weekly(seed=2), OK),
    "salt&pepper": (_weekly(seed=3), OK),
    "café-ünïcode-東京": (_weekly(seed=4), OK),
    "..": (_weekly(seed=5), OK),
    LONG_KEY: (_weekly(seed=6), OK),
}
GOOD_ENTITIES = ["good-1", "good-2", "good-3"]


@pytest.fixture(scope="module")
def isolated_job(tmp_path_factory, dask_scheduler):
    """Train once over every isolated case plus good entities; return (result, registry, root)."""
    root = tmp_path_factory.mktemp("matrix")
    for name, (frame, *_) in ISOLATED_CASES.items():
        _write_entity(root / "data", name, frame)
    for index, name in enumerate(GOOD_ENTITIES):
        _write_entity(root / "data", name, _weekly(seed=10 + index))
    (root / "misbehaving.py").write_text(MISBEHAVING_TEMPLATE)
    raw = yaml.safe_load(GOOD_YAML)
    raw["model"] = {"template": "misbehaving.py"}
    raw["compute"] = {"scheduler": dask_scheduler, "batch_size": 4}
    raw["failures"] = {"max_share": 1.0, "entity_timeout": 3}
    (root / "config.yaml").write_text(yaml.safe_dump(raw))
    config = manymodels.load_config(root / "config.yaml")
    result = manymodels.train(config)
    from manymodels.jobs.session import open_tracking

    return result, open_tracking(config).registry, root


def _row(result, entity: str) -> pd.Series:
    rows = result.entities[result.entities["entity"] == entity]
    assert len(rows) == 1, f"expected one result row for {entity!r}"
    return rows.iloc[0]


@pytest.mark.parametrize("entity", list(ISOLATED_CASES))
def test_isolated_outcome(isolated_job, entity):
    result, registry, root = isolated_job
    status, stage, error_type, pattern = ISOLATED_CASES[entity][1]
    row = _row(result, entity)
    name = model_name("mm", {"entity": entity})
    models = registry.models()
    assert row["status"] == status
    if status == "failed":
        assert (row["stage"], row["error_type"]) == (stage, error_type)
        assert re.search(pattern, row["error"]), row["error"]
        assert name not in models, "a failed entity must not be registered"
    else:
        assert name in models
        assert models[name].tags["entity"] == entity


def test_too_short_entity_gets_the_tagged_fallback(isolated_job):
    result, registry, _ = isolated_job
    row = _row(result, "shorter than lags plus holdout")
    assert (row["winner"], row["fallback"]) == ("naive", True)
    name = model_name("mm", {"entity": "shorter than lags plus holdout"})
    (version,) = registry.versions(chosen=[(name, 1)])
    assert version.tags["manymodels.fallback"] == "true"
    assert version.tags["manymodels.template"] == "naive"


def test_good_entities_unaffected(isolated_job):
    result, registry, _ = isolated_job
    for entity in GOOD_ENTITIES:
        assert _row(result, entity)["status"] == "ok"
    ok = int((result.entities["status"] == "ok").sum())
    assert len(registry.models()) == ok
    assert len(registry.versions()) == ok


def test_gaps_and_missing_targets_are_filled_and_counted(isolated_job):
    result, _, _ = isolated_job
    assert _row(result, "irregular gaps")["filled"] == 5
    assert _row(result, "nan targets")["filled"] == 3


def test_key_values_stay_inside_their_folders(isolated_job):
    result, registry, root = isolated_job
    names = {model_name("mm", {"entity": e}) for e in ISOLATED_CASES}
    assert len(names) == len(ISOLATED_CASES), "two entities share a registered name"
    artifacts = (root / "work" / "mlartifacts").resolve()
    for ref in registry.versions():
        path = Path(ref.source.removeprefix("file://")).resolve()
        assert path.is_relative_to(artifacts) and (path / "MLmodel").is_file()
        assert path.parent.parent.name == "models"
    assert len(registry.models()[model_name("mm", {"entity": LONG_KEY})].name) <= 200
    stray = [p for p in root.rglob("*") if p.name in {"with", "slashes"}]
    assert stray == []


def test_failures_table_in_the_run(isolated_job):
    import mlflow

    result, _, _ = isolated_job
    path = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="failures.csv")
    failures = pd.read_csv(path)
    assert set(failures.columns) >= {
        "entity",
        "model_name",
        "stage",
        "error_type",
        "error",
        "traceback",
    }
    expected = {e for e, (_, outcome) in ISOLATED_CASES.items() if outcome[0] == "failed"}
    assert set(failures["entity"]) == expected
    raised = failures[failures["entity"] == "template raises"].iloc[0]
    assert "RuntimeError: the template broke on purpose" in raised["traceback"]


def test_missing_future_exogenous_values_are_one_clear_error(isolated_job):
    _, _, root = isolated_job
    config = manymodels.load_config(root / "config.yaml")
    with pytest.raises(
        manymodels.JobError,
        match=r": \d+ entities lack future values of price for the forecast periods \(give them as "
        r"rows after the last observed target or in forecast\.future_path, or set "
        r"data\.future_exog: carry_forward\), so nothing was published",
    ):
        manymodels.forecast(config)
    assert not (root / "forecasts").exists()


def test_no_half_written_forecast_output(isolated_job):
    result, _, root = isolated_job
    # The data has no rows of planned prices: carry the last price forward, counted.
    config = manymodels.load_config(root / "config.yaml", ["data.future_exog=carry_forward"])
    forecast = manymodels.forecast(config)
    frame = pd.read_parquet(forecast.output)
    ok = set(result.entities.loc[result.entities["status"] == "ok", "entity"])
    assert set(frame["entity"]) == ok
    assert (frame.groupby("entity").size() == HORIZON).all()
    assert not [p for p in Path(forecast.output).parent.iterdir() if ".tmp-" in p.name]
