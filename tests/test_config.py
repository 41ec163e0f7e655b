"""Tests of manymodels.config: loading, validating and overriding the YAML job configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from manymodels.config import Config, config_from_dict, load_config
from manymodels.demo import demo_config_text
from manymodels.errors import ConfigError, ManyModelsError

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"

MINIMAL = """\
horizon: 4
data:
  path: data
  partition_by: [store]
  time_col: week
  target_col: sales
"""


@pytest.fixture
def write_config(tmp_path):
    """Write YAML text to a file under tmp_path and return its path."""

    def write(text: str, name: str = "job.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def minimal_file(write_config) -> Path:
    """A config file holding only the required keys."""
    return write_config(MINIMAL)


def minimal_dict(**sections) -> dict:
    """The required keys as a dictionary, with sections or keys replaced."""
    raw = {
        "horizon": 4,
        "data": {
            "path": "data",
            "partition_by": ["store"],
            "time_col": "week",
            "target_col": "sales",
        },
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


# --- the shipped configs ---------------------------------------------------------------------


def test_demo_config_loads():
    config = load_config(CONFIGS / "demo.yaml")
    assert config.horizon == 8
    assert config.data.partition_by == ["store", "brand"]
    assert config.data.entity_cols == ["store", "brand"]
    assert config.data.exog_cols == ["price", "deal"]
    assert config.data.freq == "W-SUN"
    assert (config.model.template, config.evaluation.windows) == ("auto", 3)
    assert config.forecast.levels == [80.0, 95.0]
    assert config.tracking.model_prefix == "oj"
    assert config.source == str(CONFIGS / "demo.yaml")


def test_demo_config_paths_resolve_against_the_configs_folder():
    config = load_config(CONFIGS / "demo.yaml")
    assert config.data.path == str((REPO / "manymodels-demo" / "data").resolve())
    assert config.work_dir == str((REPO / "manymodels-demo").resolve())


def test_own_data_config_loads_with_commented_out_sections_as_defaults():
    config = load_config(CONFIGS / "own-data.yaml")
    assert config.horizon == 12
    assert config.data.partition_by == ["region", "sku"]
    assert config.model.template == "auto" and config.data.freq is None
    assert config.model.candidates[-1].params["lags"] == [1, 2, 3, 7, 14]
    assert config.tracking.tags == {"team": "demand-planning"}
    # evaluation, compute, failures and retrain hold only comments: every key takes its default.
    assert config.evaluation.metric == "mase"
    assert config.holdout == 12
    assert config.compute.threads_per_worker == 1
    assert config.failures.max_share == 0.05
    assert config.retrain.min_improvement == 0.0


def test_demo_yaml_is_what_the_demo_writes():
    shipped = (CONFIGS / "demo.yaml").read_text(encoding="utf-8")
    assert shipped == demo_config_text(
        "../manymodels-demo/data", "../manymodels-demo", "../manymodels-demo/forecasts"
    )


# --- defaults ---------------------------------------------------------------------------------


def test_minimal_config_takes_documented_defaults(minimal_file):
    config = load_config(minimal_file)
    assert config.model.template == "auto"
    assert config.model.params == {}
    assert config.model.candidates is None and config.model.fallback == "naive"
    assert (config.evaluation.windows, config.evaluation.step) == (3, None)
    assert config.forecast.levels == [80.0, 95.0]
    assert config.data.future_exog == "error"
    assert config.holdout == config.horizon == 4
    assert config.data.entity_cols == ["store"]
    assert config.data.fill_missing == "interpolate"
    assert config.data.freq is None
    assert config.evaluation.refit is True
    assert config.tracking.model_prefix == "mm"
    assert config.tracking.registration == "per_entity"
    assert config.forecast.alias == "champion"
    assert config.label() == str(minimal_file)


def test_empty_section_takes_defaults(write_config):
    config = load_config(write_config(MINIMAL + "compute:\nevaluation:\n"))
    assert config.compute.n_workers is None
    assert config.evaluation.metric == "mase"


def test_config_is_frozen(minimal_file):
    config = load_config(minimal_file)
    with pytest.raises(ValidationError, match="frozen"):
        config.horizon = 5  # type: ignore[misc]


def test_config_from_dict_labels_errors_as_config():
    with pytest.raises(ConfigError, match=r"^config: key 'horizon' has an invalid value 0"):
        config_from_dict(minimal_dict(horizon=0))
    assert config_from_dict(minimal_dict()).label() == "config"


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ConfigError, ManyModelsError)


# --- unknown and missing keys -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "key", "suggestion"),
    [
        ({"horizn": 4}, "horizn", "horizon"),
        ({"data": {"time_column": "week"}}, "data.time_column", "time_col"),
        ({"data": {"target": "sales"}}, "data.target", "target_col"),
        ({"compute": {"n_workrs": 2}}, "compute.n_workrs", "n_workers"),
        ({"tracking": {"experimnt": "x"}}, "tracking.experimnt", "experiment"),
        ({"evaluation": {"metrics": "mae"}}, "evaluation.metrics", "metric"),
    ],
)
def test_unknown_key_suggests_the_nearest(sections, key, suggestion):
    with pytest.raises(
        ConfigError, match=rf"unknown key '{re.escape(key)}'\. Hint: did you mean '{suggestion}'\?"
    ):
        config_from_dict(minimal_dict(**sections))


def test_misspelt_required_key_is_reported_as_the_typo():
    raw = minimal_dict()
    raw["data"]["target_colum"] = raw["data"].pop("target_col")
    with pytest.raises(
        ConfigError,
        match=r"^config: unknown key 'data\.target_colum'\. Hint: did you mean 'target_col'\?"
        r".*\(1 more problem after this one\)$",
    ):
        config_from_dict(raw)


def test_unknown_nested_key_lists_the_valid_keys_of_its_section():
    with pytest.raises(ConfigError) as caught:
        config_from_dict(minimal_dict(data={"time_column": "week"}))
    assert "Valid keys under 'data': exog_cols, fill_missing, freq, future_exog, id_cols, non_negative, partition_by" in str(
        caught.value
    )


def test_unknown_top_level_key_without_a_close_match_lists_valid_keys():
    with pytest.raises(ConfigError) as caught:
        config_from_dict(minimal_dict(colour="blue"))
    message = str(caught.value)
    assert "unknown key 'colour'. Hint: valid keys at the top level: compute, data," in message
    assert "did you mean" not in message
    assert "source" not in message  # internal field, not a key users write


def test_unknown_key_in_a_file_names_the_file(write_config):
    path = write_config(MINIMAL + "data_path: x\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: unknown key 'data_path'"):
        load_config(path)


def test_several_problems_are_counted():
    raw = minimal_dict(horizn=4, data={"colour": "red", "freq": "weekly"})
    with pytest.raises(ConfigError, match=r"\(2 more problems after this one\)$"):
        config_from_dict(raw)


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("horizon", r"missing required key 'horizon' \(periods to forecast\)\. Hint: add it"),
        ("data", r"missing required key 'data'\. Hint: add it"),
    ],
)
def test_missing_required_top_level_key(drop, message):
    raw = minimal_dict()
    del raw[drop]
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_missing_required_nested_key():
    raw = minimal_dict()
    del raw["data"]["time_col"]
    with pytest.raises(
        ConfigError, match=r"missing required key 'data\.time_col' \(the timestamp column\)"
    ):
        config_from_dict(raw)


# --- wrong types and impossible values --------------------------------------------------------


@pytest.mark.parametrize("horizon", [0, -3])
def test_horizon_must_be_positive(horizon):
    with pytest.raises(
        ConfigError,
        match=rf"key 'horizon' has an invalid value {horizon}: input should be greater than or "
        r"equal to 1\. Hint: 'horizon' is periods to forecast\.",
    ):
        config_from_dict(minimal_dict(horizon=horizon))


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"horizon": "abc"}, r"key 'horizon' has an invalid value 'abc': input should be a valid integer"),
        ({"horizon": 2.5}, r"key 'horizon' has an invalid value 2\.5: input should be a valid integer"),
        ({"horizon": True}, r"key 'horizon' has an invalid value True: expected a number, got a boolean"),
        ({"horizon": None}, r"key 'horizon' has an invalid value None: input should be a valid integer"),
        ({"data": "sales"}, r"key 'data' has an invalid value 'sales': input should be a valid dictionary"),
        ({"model": ["ets"]}, r"key 'model' has an invalid value \['ets'\]: input should be a valid dictionary"),
        ({"data": {"partition_by": "store"}}, r"key 'data\.partition_by' has an invalid value 'store': input should be a valid list"),
        ({"data": {"partition_by": []}}, r"key 'data\.partition_by' has an invalid value \[\]: list should have at least 1 item"),
        ({"data": {"time_col": 3}}, r"key 'data\.time_col' has an invalid value 3: input should be a valid string"),
        ({"data": {"fill_missing": "linear"}}, r"key 'data\.fill_missing' has an invalid value 'linear': input should be 'interpolate', 'zero', 'ffill' or 'none'"),
        ({"evaluation": {"metric": "mape"}}, r"key 'evaluation\.metric' has an invalid value 'mape': input should be 'mae', 'rmse', 'smape', 'mase' or 'wape'"),
        ({"evaluation": {"holdout": 0}}, r"key 'evaluation\.holdout' has an invalid value 0: input should be greater than or equal to 1"),
        ({"compute": {"n_workers": 0}}, r"key 'compute\.n_workers' has an invalid value 0"),
        ({"compute": {"n_workers": True}}, r"key 'compute\.n_workers' has an invalid value True: expected a number, got a boolean"),
        ({"failures": {"max_share": 1.5}}, r"key 'failures\.max_share' has an invalid value 1\.5: input should be less than or equal to 1"),
        ({"failures": {"max_share": False}}, r"key 'failures\.max_share' has an invalid value False: expected a number"),
        ({"failures": {"entity_timeout": 0}}, r"key 'failures\.entity_timeout' has an invalid value 0: input should be greater than 0"),
        ({"retrain": {"min_improvement": 1.0}}, r"key 'retrain\.min_improvement' has an invalid value 1\.0: input should be less than 1"),
        ({"tracking": {"registration": "per_model"}}, r"key 'tracking\.registration' has an invalid value 'per_model'"),
        ({"tracking": {"tags": {"team": ["a"]}}}, r"key 'tracking\.tags\.team' has an invalid value \['a'\]: input should be a valid string"),
    ],
)  # fmt: skip
def test_invalid_values_name_the_key_and_the_value(sections, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(minimal_dict(**sections))


def test_invalid_value_hint_quotes_the_key_description():
    with pytest.raises(
        ConfigError, match=r"Hint: 'fill_missing' is how gaps in the time grid are filled\.$"
    ):
        config_from_dict(minimal_dict(data={"fill_missing": "linear"}))


def test_long_values_are_shortened_in_messages():
    with pytest.raises(ConfigError) as caught:
        config_from_dict(minimal_dict(horizon="x" * 500))
    assert "'xxxxx" in str(caught.value)
    assert "x" * 100 not in str(caught.value)


@pytest.mark.parametrize("freq", ["W-SUN", "D", "MS", "h", "7D", "QS", "B"])
def test_valid_frequencies(freq):
    assert config_from_dict(minimal_dict(data={"freq": freq})).data.freq == freq


@pytest.mark.parametrize("freq", ["weekly", "W-XYZ", "3 days"])
def test_bad_frequency(freq):
    with pytest.raises(
        ConfigError,
        match=rf"key 'data\.freq' has an invalid value '{freq}': not a pandas frequency; use e\.g\. "
        r"D, W-SUN, MS or h\.",
    ):
        config_from_dict(minimal_dict(data={"freq": freq}))


def test_id_cols_must_include_partition_by():
    with pytest.raises(
        ConfigError,
        match=r"key 'data\.id_cols' has an invalid value \['channel'\]: id_cols must include every "
        r"partition_by column; add \['store'\]\.",
    ):
        config_from_dict(minimal_dict(data={"id_cols": ["channel"]}))


def test_id_cols_that_include_partition_by_identify_entities():
    config = config_from_dict(minimal_dict(data={"id_cols": ["store", "channel"]}))
    assert config.data.entity_cols == ["store", "channel"]


@pytest.mark.parametrize("prefix", ["oj", "sales.v2", "A-1_b", "9lives"])
def test_model_prefix_accepts_letters_digits_and_separators(prefix):
    assert (
        config_from_dict(minimal_dict(tracking={"model_prefix": prefix})).tracking.model_prefix
        == prefix
    )


@pytest.mark.parametrize("prefix", ["a/b", "_mm", ".mm", "mm prefix", "mm:1", "mm@x", "é"])
def test_model_prefix_refuses_other_characters(prefix):
    with pytest.raises(
        ConfigError,
        match=rf"key 'tracking\.model_prefix' has an invalid value '{re.escape(prefix)}': string "
        r"should match pattern",
    ):
        config_from_dict(minimal_dict(tracking={"model_prefix": prefix}))


def test_empty_model_prefix():
    with pytest.raises(ConfigError, match=r"key 'tracking\.model_prefix' has an invalid value ''"):
        config_from_dict(minimal_dict(tracking={"model_prefix": ""}))


# --- reading the file -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("horizon: 4\ndata:\n  path: a\n   time_col: b\n", "4:12", "mapping values are not allowed here"),
        ("horizon: 4\ndata:\n  partition_by: [store\n", "4:1", "expected ',' or ']', but got '<stream end>'"),
        ("horizon: 4\n\tdata: x\n", "2:1", "found character '\\t' that cannot start any token"),
        ('horizon: 4\nexperiment: "oj\n', "3:1", "found unexpected end of stream"),
    ],
)  # fmt: skip
def test_yaml_syntax_error_reports_file_line_and_column(write_config, text, where, problem):
    path = write_config(text)
    with pytest.raises(
        ConfigError,
        match=rf"^{re.escape(str(path))}:{where}: YAML syntax error: {re.escape(problem)}\. "
        r"Hint: check indentation",
    ):
        load_config(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(
        ConfigError,
        match=rf"^{re.escape(str(path))}: config file not found\. Hint: pass an existing YAML file",
    ):
        load_config(path)


def test_directory_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(write_config, text):
    path = write_config(text)
    with pytest.raises(
        ConfigError,
        match=rf"^{re.escape(str(path))}: the config file is empty\. Hint: copy configs/demo\.yaml\.",
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- horizon: 4\n- data: {}\n", "list"), ("horizon 4\n", "str"), ("12\n", "int")],
)
def test_top_level_must_be_a_mapping(write_config, text, kind):
    with pytest.raises(
        ConfigError,
        match=rf"the top level must be a mapping of keys such as horizon and data, got {kind}\.",
    ):
        load_config(write_config(text))


def test_config_from_dict_refuses_a_list():
    with pytest.raises(ConfigError, match=r"^config: the top level must be a mapping.*got list\."):
        config_from_dict([{"horizon": 4}])  # type: ignore[arg-type]


def test_undecodable_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("horizon: 4 # d\xe9j\xe0\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"cannot read the config file"):
        load_config(path)


# --- overrides --------------------------------------------------------------------------------


def test_overrides_replace_top_level_and_nested_keys(minimal_file):
    config = load_config(
        minimal_file,
        overrides=[
            "horizon=12",
            "compute.n_workers=3",
            "model.params.lags=[1, 2]",
            "data.freq=W-SUN",
        ],
    )
    assert config.horizon == 12
    assert config.compute.n_workers == 3
    assert config.model.params == {"lags": [1, 2]}
    assert config.data.freq == "W-SUN"


def test_override_values_are_yaml_scalars(minimal_file):
    config = load_config(
        minimal_file,
        overrides=[
            "evaluation.refit=false",
            "failures.max_share=0.5",
            "tracking.tags.team=planning",
        ],
    )
    assert config.evaluation.refit is False
    assert config.failures.max_share == 0.5
    assert config.tracking.tags == {"team": "planning"}


def test_later_override_wins_and_spaces_around_the_key_are_ignored(minimal_file):
    config = load_config(minimal_file, overrides=["horizon=5", " horizon =6"])
    assert config.horizon == 6


def test_override_into_an_empty_section(write_config):
    config = load_config(write_config(MINIMAL + "compute:\n"), overrides=["compute.batch_size=20"])
    assert config.compute.batch_size == 20


def test_overrides_do_not_touch_the_file(minimal_file):
    load_config(minimal_file, overrides=["horizon=12"])
    assert minimal_file.read_text(encoding="utf-8") == MINIMAL
    assert load_config(minimal_file).horizon == 4


@pytest.mark.parametrize("override", ["horizon", "=3", " =3", ""])
def test_override_without_key_or_equals_sign(minimal_file, override):
    with pytest.raises(
        ConfigError,
        match=rf"^--set {re.escape(repr(override))}: expected KEY=VALUE with a dotted key, "
        r"e\.g\. --set horizon=12\.",
    ):
        load_config(minimal_file, overrides=[override])


def test_override_below_a_value_that_is_not_a_section(minimal_file):
    with pytest.raises(
        ConfigError,
        match=rf"^--set 'horizon\.x=3': 'horizon' in {re.escape(str(minimal_file))} is not a section\.",
    ):
        load_config(minimal_file, overrides=["horizon.x=3"])


def test_override_with_a_typo_suggests_the_key(minimal_file):
    with pytest.raises(
        ConfigError, match=r"unknown key 'compute\.n_wrkers'\. Hint: did you mean 'n_workers'\?"
    ):
        load_config(minimal_file, overrides=["compute.n_wrkers=2"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("horizon=0", r"key 'horizon' has an invalid value 0"),
        ("horizon=abc", r"key 'horizon' has an invalid value 'abc'"),
        ("horizon=", r"key 'horizon' has an invalid value None"),
        ("data.exog_cols=[a, b", r"key 'data\.exog_cols' has an invalid value '\[a, b': input should be a valid list"),
    ],
)  # fmt: skip
def test_override_with_a_bad_value(minimal_file, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(minimal_file, overrides=[override])


# --- relative paths ---------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_folder(write_config, tmp_path, monkeypatch):
    path = write_config(
        MINIMAL.replace("path: data", "path: ../data/sales")
        + "model:\n  template: templates/mine.py\n"
        + "forecast:\n  output: out/forecasts\n"
        + "work_dir: .state\n",
        name="project/conf/job.yaml",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("..") / "project" / "conf" / "job.yaml")
    folder = path.parent.resolve()
    assert config.data.path == str(tmp_path.resolve() / "project" / "data" / "sales")
    assert config.model.template == str(folder / "templates" / "mine.py")
    assert config.forecast.output == str(folder / "out" / "forecasts")
    assert config.work_dir == str(folder / ".state")


def test_default_paths_resolve_against_the_config_folder(write_config, tmp_path, monkeypatch):
    path = write_config(MINIMAL, name="project/job.yaml")
    monkeypatch.chdir(tmp_path)
    config = load_config(path)
    assert config.work_dir == str(path.parent.resolve() / ".manymodels")
    assert config.forecast.output == str(path.parent.resolve() / "forecasts")
    assert config.forecast.alias == "champion"


def test_absolute_paths_urls_and_builtin_templates_are_kept(write_config, tmp_path):
    absolute = str((tmp_path / "abs" / "data").resolve())
    path = write_config(
        MINIMAL.replace("path: data", "path: s3://bucket/sales")
        + "model:\n  template: ets\n"
        + f"forecast:\n  output: {absolute}\n"
        + "tracking:\n  uri: http://mlflow.internal:5000\n"
    )
    config = load_config(path)
    assert config.data.path == "s3://bucket/sales"
    assert config.model.template == "ets"
    assert config.forecast.output == absolute
    assert config.tracking.uri == "http://mlflow.internal:5000"


def test_home_relative_paths_are_expanded(write_config, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_config(write_config(MINIMAL.replace("path: data", "path: ~/sales")))
    assert config.data.path == str(tmp_path / "home" / "sales")


def test_override_paths_resolve_against_the_working_directory(write_config, tmp_path, monkeypatch):
    path = write_config(MINIMAL, name="conf/job.yaml")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    config = load_config(
        path, overrides=["data.path=other", "work_dir=../state", "model.template=mine.py"]
    )
    assert config.data.path == str(tmp_path.resolve() / "cwd" / "other")
    assert config.work_dir == str(tmp_path.resolve() / "state")
    assert config.model.template == str(tmp_path.resolve() / "cwd" / "mine.py")


def test_override_urls_and_builtin_templates_are_kept(minimal_file):
    config = load_config(minimal_file, overrides=["data.path=s3://bucket/x", "model.template=ets"])
    assert config.data.path == "s3://bucket/x"
    assert config.model.template == "ets"


def test_config_from_dict_resolves_against_base_dir_or_cwd(tmp_path, monkeypatch):
    config = config_from_dict(minimal_dict(), base_dir=tmp_path / "base")
    assert config.data.path == str(tmp_path.resolve() / "base" / "data")
    assert config.work_dir == str(tmp_path.resolve() / "base" / ".manymodels")
    monkeypatch.chdir(tmp_path)
    assert config_from_dict(minimal_dict()).data.path == str(tmp_path.resolve() / "data")


def test_config_from_dict_leaves_its_input_alone(tmp_path):
    raw = minimal_dict(forecast={"alias": "challenger"})
    config_from_dict(raw, base_dir=tmp_path)
    assert raw["data"]["path"] == "data"
    assert raw["forecast"] == {"alias": "challenger"}
    assert "source" not in raw
    assert "work_dir" not in raw


def test_config_class_is_exported():
    assert isinstance(config_from_dict(minimal_dict()), Config)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [("auto", True), ("0", True), ("0.5", True), ("1", True), ("4GiB", True), ("2.5 gb", True),
     ("1073741824", True), ("AUTO", False), ("2.5", False), ("lots", False)],
)  # fmt: skip
def test_memory_limits_are_those_dask_reads(value, accepted):
    # A bare number above 1 is bytes to Dask: 2.5 would be 2 bytes, so it is refused.
    if accepted:
        assert config_from_dict(minimal_dict(compute={"memory_limit": value}))
    else:
        with pytest.raises(ConfigError, match="compute.memory_limit.*not a memory size"):
            config_from_dict(minimal_dict(compute={"memory_limit": value}))


# --- impossible values that would only show later ----------------------------------------------


def test_a_huge_horizon_is_refused():
    with pytest.raises(ConfigError, match=r"^config: key 'horizon' has an invalid value 1000000: "
                                          r"input should be less than or equal to 10000"):  # fmt: skip
        config_from_dict(minimal_dict(horizon=1_000_000))
    assert config_from_dict(minimal_dict(horizon=10_000)).horizon == 10_000


@pytest.mark.parametrize("work_dir", ["data", "data/.manymodels"])
def test_work_dir_inside_data_path_is_refused(tmp_path, work_dir):
    raw = minimal_dict(work_dir=work_dir)
    with pytest.raises(ConfigError, match=r"^config: key 'work_dir' has an invalid value .*"
                                          r"it lies inside data\.path"):  # fmt: skip
        config_from_dict(raw, base_dir=tmp_path)
    assert config_from_dict(minimal_dict(work_dir="work"), base_dir=tmp_path)


@pytest.mark.parametrize(
    ("tag", "reason"),
    [
        ("manymodels.job_id", r"tag 'manymodels\.job_id' would overwrite a tag that manymodels"),
        ("mlflow.runName", r"tag 'mlflow\.runName' would overwrite a tag that manymodels"),
        ("store", r"tag 'store' would overwrite the entity key"),
    ],
)
def test_tags_cannot_overwrite_our_own(tag, reason):
    with pytest.raises(
        ConfigError, match=rf"^config: key 'tracking\.tags' has an invalid .*{reason}"
    ):
        config_from_dict(minimal_dict(tracking={"tags": {tag: "x"}}))
    assert config_from_dict(minimal_dict(tracking={"tags": {"team": "demand"}}))


@pytest.mark.parametrize("limit", ["100MiB", "0.000001", 1000])
def test_a_memory_limit_too_small_for_a_worker_is_refused(limit):
    with pytest.raises(ConfigError, match=r"^config: key 'compute\.memory_limit' has an invalid "
                                          r"value .*less than the 512 MiB a worker needs"):  # fmt: skip
        config_from_dict(minimal_dict(compute={"memory_limit": limit}))
    for fine in ("0", "2GiB", "auto", "0.5"):
        assert config_from_dict(minimal_dict(compute={"memory_limit": fine}))
    # A scheduler's workers have their own limits.
    remote = {"memory_limit": "100MiB", "scheduler": "tcp://10.0.0.5:8786"}
    assert config_from_dict(minimal_dict(compute=remote))
