"""The ``manymodels`` command line, run as real subprocesses on real Parquet, Dask and MLflow.

Every job command starts its own two-worker ``LocalCluster`` (``--set compute.n_workers=2``), as
a user's would, so the jobs here are few and small: one shared training run, one demo, one run
of a user template. Mistakes are checked against the contract of the CLI: one ``error:`` line on
stderr, exit status 2, no traceback, and nothing written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from manymodels import load_config
from manymodels.datasets import oj_sales, write_oj_sales

N_ENTITIES = 6
N_WEEKS = 60
HORIZON = 4
TWO_WORKERS = ["--set", "compute.n_workers=2"]
COMMANDS = ["demo", "prepare", "validate", "train", "retrain", "forecast", "report", "new-template"]

CONFIG = """\
horizon: {horizon}
data:
  path: {data}
  partition_by: [store, brand]
  time_col: week
  target_col: sales
  exog_cols: [price, deal]
  freq: W-SUN
model:
  template: sklearn_lags
  params: {{lags: 4, fourier_terms: 2}}
tracking:
  experiment: cli-tests
  model_prefix: oj
forecast:
  output: forecasts
work_dir: work
"""


def _cli() -> list[str]:
    """The installed ``manymodels`` script of this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("manymodels")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "manymodels.cli"]


def _env() -> dict[str, str]:
    """This environment without the MLflow URIs that other tests in the session set."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}  # fmt: skip
    return {**env, "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}


def run(*args: str | Path, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``cwd`` and capture its output."""
    return subprocess.run(
        [*_cli(), *map(str, args)], cwd=cwd, env=_env(), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


LOAD_MODEL = """
import sys, mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
print(len(mlflow.pyfunc.load_model(sys.argv[2]).predict(pd.DataFrame())))
"""


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit status 2 and exactly one ``error:`` line on stderr holding every fragment."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def summary_counts(stdout: str, noun: str) -> tuple[int, int, int]:
    """(done, failed, total) from a summary line such as '6 trained, 0 failed of 6'."""
    match = re.search(rf"entities: (\d+) {noun}, (\d+) failed.* of (\d+)", stdout)
    assert match, f"no '{noun}' summary in:\n{stdout}"
    done, failed, total = map(int, match.groups())
    return done, failed, total


def read_forecasts(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    return frame.astype({"store": str, "brand": str})


def weeks_by_entity(frame: pd.DataFrame) -> dict[tuple[str, str], list[pd.Timestamp]]:
    """The sorted weeks of every (store, brand) in a frame."""
    return {
        (str(store), str(brand)): sorted(group["week"])
        for (store, brand), group in frame.groupby(["store", "brand"], observed=True)
    }


def write_config(folder: Path, data: Path, text: str = CONFIG) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(text.format(horizon=HORIZON, data=data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cli_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 full series of 60 weeks, plus 4 future weeks with planned price and deal."""
    path = tmp_path_factory.mktemp("cli-data") / "data"
    write_oj_sales(
        str(path), n_entities=N_ENTITIES, n_weeks=N_WEEKS, seed=5, future_weeks=HORIZON,
        short_share=0.0, intermittent_share=0.0,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def future_weeks(cli_data: Path) -> dict[tuple[str, str], list[pd.Timestamp]]:
    """The weeks without sales of every entity: what a forecast must cover."""
    frame = pd.read_parquet(cli_data).astype({"store": str, "brand": str})
    return weeks_by_entity(frame[frame["sales"].isna()])


@dataclass
class Trained:
    folder: Path
    config: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, cli_data: Path) -> Trained:
    """One real ``manymodels train`` run, shared by the tests that forecast from it."""
    folder = tmp_path_factory.mktemp("cli-trained")
    config = write_config(folder, cli_data)
    result = run("train", "-c", config.name, *TWO_WORKERS, "-q", cwd=folder)
    return Trained(folder, config, result)


@pytest.fixture
def config_file(tmp_path: Path, cli_data: Path) -> Path:
    """A valid config in a fresh folder (nothing trained)."""
    return write_config(tmp_path, cli_data)


# --- help -------------------------------------------------------------------------------------

HELP_MARKERS = {
    "demo": "--workdir", "prepare": "--partition-by", "validate": "--config",
    "train": "--promote", "retrain": "--new-versions", "forecast": "--version", "report": "--job", "new-template": "PATH",
}  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, tmp_path: Path) -> None:
    result = run(command, "--help", cwd=tmp_path)

    assert_ok(result)
    assert result.stdout.startswith("Usage: ")
    assert command in result.stdout.splitlines()[0]
    assert HELP_MARKERS[command] in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_main_help_lists_every_command(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)

    assert_ok(result)
    listed = re.findall(r"^  ([a-z-]+)\s", result.stdout, flags=re.MULTILINE)
    assert set(COMMANDS) <= set(listed)


# --- demo -------------------------------------------------------------------------------------


def test_demo_trains_forecasts_and_says_where_everything_is(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = run("demo", "--workdir", workdir, "--entities", "9", "--weeks", "60", "-q",
                 cwd=tmp_path)  # fmt: skip

    assert_ok(result)
    out = result.stdout
    trained, failed, total = summary_counts(out, "trained")
    assert (trained + failed, total) == (9, 9) and trained >= 8
    forecast, _, _ = summary_counts(out, "forecast")
    assert forecast == trained

    config = load_config(workdir / "config.yaml")
    assert Path(config.data.path) == (workdir / "data").resolve()
    forecasts = read_forecasts(workdir / "forecasts")
    assert forecasts.groupby("model_name").size().to_dict() == dict.fromkeys(
        forecasts["model_name"].unique(), config.horizon
    )
    assert forecasts["model_name"].nunique() == trained
    assert np.isfinite(forecasts["prediction"]).all()

    store = f"sqlite:///{(workdir / 'mlflow.db').resolve()}"
    assert f"MLflow: {store}" in out
    assert f"open the UI: mlflow ui --backend-store-uri {store}" in out
    # The printed model URI loads, in a new Python process, from the printed store.
    uri = re.search(r"load_model\('(models:/[^']+@champion)'\)", out)
    assert uri, out
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_MODEL, store, uri.group(1)], cwd=tmp_path, env=_env(),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == str(config.horizon)


# --- prepare ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_prepare_partitions_a_flat_file_that_reads_back_equal(
    suffix: str, tmp_path: Path, config_file: Path
) -> None:
    frame = oj_sales(n_entities=N_ENTITIES, n_weeks=N_WEEKS, seed=2, future_weeks=HORIZON)
    flat = tmp_path / f"sales.{suffix}"
    if suffix == "csv":
        frame.to_csv(flat, index=False)
    else:
        frame.to_parquet(flat, index=False)

    result = run("prepare", flat.name, "--partition-by", "store,brand", "--output", "prepared",
                 cwd=tmp_path)  # fmt: skip

    assert_ok(result)
    assert result.stdout.strip() == f"wrote {N_ENTITIES} partitions to prepared"
    assert (tmp_path / "prepared" / "store=1" / "brand=minute.maid").is_dir()
    back = pd.read_parquet(tmp_path / "prepared")
    back = back.astype({"store": int, "brand": str}).assign(week=pd.to_datetime(back["week"]))

    def canonical(table: pd.DataFrame) -> pd.DataFrame:
        table = table[list(frame.columns)].sort_values(["store", "brand", "week"])
        return table.reset_index(drop=True)

    pd.testing.assert_frame_equal(canonical(back), canonical(frame), check_dtype=False)
    # The prepared folder is what a job reads.
    validated = run("validate", "-c", config_file.name, "--set", "data.path=prepared",
                    cwd=tmp_path)  # fmt: skip
    assert_ok(validated)
    assert f"ok ({N_ENTITIES} partitions" in validated.stdout


# --- new-template -----------------------------------------------------------------------------


def test_new_template_writes_a_file_that_trains(tmp_path: Path, config_file: Path) -> None:
    written = run("new-template", "my_template.py", cwd=tmp_path)

    assert_ok(written)
    assert "wrote my_template.py" in written.stdout
    text = (tmp_path / "my_template.py").read_text(encoding="utf-8")
    assert "def train(" in text and "def predict(" in text

    # model.params={} drops the built-in template's parameters from the config.
    result = run("train", "-c", config_file.name, "--set", "model.template=my_template.py",
                 "--set", "model.params={}", *TWO_WORKERS, "-q", cwd=tmp_path)  # fmt: skip

    assert_ok(result)
    assert summary_counts(result.stdout, "trained") == (N_ENTITIES, 0, N_ENTITIES)
    store = f"sqlite:///{tmp_path / 'work' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    versions = client.search_model_versions("name LIKE 'oj.%'")
    assert len(versions) == N_ENTITIES
    assert {version.tags["manymodels.template"] for version in versions} == {"my_template"}


def test_new_template_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "mine.py"
    target.write_text("# my work\n", encoding="utf-8")

    assert_user_error(run("new-template", "mine.py", cwd=tmp_path), "mine.py exists", "--force")
    assert target.read_text(encoding="utf-8") == "# my work\n"


# --- train, then forecast ---------------------------------------------------------------------


def test_train_prints_a_summary_with_the_mlflow_store(trained: Trained) -> None:
    assert_ok(trained.result)
    out = trained.result.stdout
    assert summary_counts(out, "trained") == (N_ENTITIES, 0, N_ENTITIES)
    assert "mean backtest metrics: mae " in out
    assert "beats seasonal naive for " in out
    store = f"sqlite:///{trained.folder / 'work' / 'mlflow.db'}"
    assert f"MLflow: {store}" in out
    assert f"open the UI: mlflow ui --backend-store-uri {store}" in out


def test_forecast_with_version_1_covers_every_entity(
    trained: Trained, future_weeks: dict[tuple[str, str], list[pd.Timestamp]]
) -> None:
    assert_ok(trained.result)
    result = run("forecast", "-c", trained.config.name, "--version", "1", "--output", "v1",
                 *TWO_WORKERS, "-q", cwd=trained.folder)  # fmt: skip

    assert_ok(result)
    assert summary_counts(result.stdout, "forecast") == (N_ENTITIES, 0, N_ENTITIES)
    assert f"{N_ENTITIES * HORIZON} rows written to" in result.stdout
    forecasts = read_forecasts(trained.folder / "v1")
    assert (forecasts["model_version"] == 1).all()
    assert weeks_by_entity(forecasts) == future_weeks
    assert np.isfinite(forecasts["prediction"]).all()

    missing = run("forecast", "-c", trained.config.name, "--version", "2", "--output", "v2",
                  *TWO_WORKERS, cwd=trained.folder)  # fmt: skip
    assert_user_error(missing, "has version 2", "run 'manymodels train' first")
    assert not (trained.folder / "v2").exists()


def test_set_overrides_config_keys(
    trained: Trained, future_weeks: dict[tuple[str, str], list[pd.Timestamp]]
) -> None:
    assert_ok(trained.result)
    result = run("forecast", "-c", trained.config.name, "--set", "horizon=2",
                 "--set", "forecast.output=short", *TWO_WORKERS, "-q", cwd=trained.folder)  # fmt: skip

    assert_ok(result)
    forecasts = read_forecasts(trained.folder / "short")
    assert weeks_by_entity(forecasts) == {key: weeks[:2] for key, weeks in future_weeks.items()}
    # The file itself is unchanged.
    assert load_config(trained.config).horizon == HORIZON


def test_set_path_is_relative_to_the_working_directory(tmp_path: Path, cli_data: Path) -> None:
    write_config(tmp_path / "conf", cli_data)
    assert_ok(run("new-template", "my_template.py", cwd=tmp_path))

    result = run("validate", "-c", "conf/config.yaml", "--set", "model.template=my_template.py",
                 "--set", "model.params={}", cwd=tmp_path)  # fmt: skip

    assert_ok(result)
    assert "template my_template" in result.stdout


def test_forecast_with_alias_and_version_is_a_usage_error(trained: Trained) -> None:
    result = run("forecast", "-c", trained.config.name, "--alias", "x", "--version", "1",
                 "--output", "both", cwd=trained.folder)  # fmt: skip

    assert result.returncode == 2
    assert "Usage: " in result.stderr
    assert "give --alias or --version, not both" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (trained.folder / "both").exists()


def test_retrain_new_versions_without_force_is_a_usage_error(config_file: Path) -> None:
    result = run("retrain", "-c", config_file.name, "--new-versions", cwd=config_file.parent)

    assert result.returncode == 2
    assert "--new-versions needs --force" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (config_file.parent / "work").exists()


# --- mistakes: one line, exit 2, nothing written ----------------------------------------------


def test_missing_config_file(tmp_path: Path) -> None:
    assert_user_error(run("train", "-c", "nope.yaml", cwd=tmp_path),
                      "nope.yaml: config file not found")  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("horizon: 4\ndata:\n  path: data\n   partition_by: [store]\n", encoding="utf-8")

    line = assert_user_error(run("train", "-c", "bad.yaml", cwd=tmp_path), "YAML syntax error")
    assert line.startswith("error: bad.yaml:4:")
    assert [path.name for path in tmp_path.iterdir()] == ["bad.yaml"]


def test_unknown_key_suggests_the_nearest(tmp_path: Path, cli_data: Path) -> None:
    text = CONFIG.replace("  freq: W-SUN", "  freq: W-SUN\n  fill_mising: zero")
    write_config(tmp_path, cli_data, text=text)

    assert_user_error(run("train", "-c", "config.yaml", cwd=tmp_path),
                      "unknown key 'data.fill_mising'", "did you mean 'fill_missing'?")  # fmt: skip
    assert not (tmp_path / "work").exists()


def test_misspelt_required_key_suggests_the_nearest(tmp_path: Path, cli_data: Path) -> None:
    text = CONFIG.replace("  target_col: sales", "  target_colum: sales")
    write_config(tmp_path, cli_data, text=text)

    # The typo, not the required key it leaves missing, is what the one line names.
    assert_user_error(run("train", "-c", "config.yaml", cwd=tmp_path),
                      "unknown key 'data.target_colum'", "did you mean 'target_col'?")  # fmt: skip
    assert not (tmp_path / "work").exists()


def test_unknown_key_in_set_suggests_the_nearest(config_file: Path) -> None:
    result = run("train", "-c", config_file.name, "--set", "compute.n_worker=2",
                 cwd=config_file.parent)  # fmt: skip

    assert_user_error(result, "unknown key 'compute.n_worker'", "did you mean 'n_workers'?")


def test_missing_data_path(tmp_path: Path) -> None:
    write_config(tmp_path, tmp_path / "nowhere")

    assert_user_error(run("train", "-c", "config.yaml", *TWO_WORKERS, cwd=tmp_path),
                      "data.path", "nowhere does not exist")  # fmt: skip
    assert not (tmp_path / "work").exists()


def test_missing_target_column(config_file: Path) -> None:
    result = run("train", "-c", config_file.name, "--set", "data.target_col=revenue",
                 *TWO_WORKERS, cwd=config_file.parent)  # fmt: skip

    assert_user_error(result, "data.target_col", "'revenue' is not in the data",
                      "available columns are brand, deal, price, sales, store, week")  # fmt: skip
    assert not (config_file.parent / "work").exists()


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("prophet", "'prophet' is not a built-in template"),
        ("missing.py", "missing.py not found"),
    ],
)
def test_unknown_template(template: str, message: str, config_file: Path) -> None:
    result = run("train", "-c", config_file.name, "--set", f"model.template={template}",
                 *TWO_WORKERS, cwd=config_file.parent)  # fmt: skip

    assert_user_error(result, "model.template", message)
    assert not (config_file.parent / "work").exists()


def test_forecast_before_training_names_the_fix(config_file: Path) -> None:
    result = run("forecast", "-c", config_file.name, *TWO_WORKERS, cwd=config_file.parent)

    assert_user_error(result, "no registered model", "run 'manymodels train' first")
    assert not (config_file.parent / "forecasts").exists()


def test_prepare_missing_input(tmp_path: Path) -> None:
    result = run("prepare", "sales.csv", "--partition-by", "store", "--output", "out",
                 cwd=tmp_path)  # fmt: skip

    assert_user_error(result, "sales.csv: input file not found")
    assert not (tmp_path / "out").exists()


# --- outputs never destroy what manymodels did not write --------------------------------------


def files_under(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (relative), with the bytes of each file (None for a folder)."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def test_demo_reruns_in_its_workdir_and_refuses_another(tmp_path: Path) -> None:
    args = ("--entities", "3", "--weeks", "40", "-q")
    assert_ok(run("demo", "--workdir", "demo", *args, cwd=tmp_path))
    rerun = run("demo", "--workdir", "demo", *args, cwd=tmp_path)

    assert_ok(rerun)
    assert summary_counts(rerun.stdout, "forecast") == (3, 0, 3)
    assert len(read_forecasts(tmp_path / "demo" / "forecasts")) == 3 * 8
    assert {".manymodels-demo", "config.yaml", "data", "forecasts"} <= {
        path.name for path in (tmp_path / "demo").iterdir()
    }

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.yaml").write_text("my: config\n", encoding="utf-8")
    before = files_under(tmp_path / "mine")
    refused = run("demo", "--workdir", "mine", *args, cwd=tmp_path)
    assert_user_error(refused, "mine is not empty and no earlier demo made it", "pass --force")
    assert files_under(tmp_path / "mine") == before


def test_new_template_creates_missing_folders(tmp_path: Path) -> None:
    from manymodels.templates import starter_template_text

    result = run("new-template", "templates/mine.py", cwd=tmp_path)

    assert_ok(result)
    written = (tmp_path / "templates" / "mine.py").read_text(encoding="utf-8")
    assert written == starter_template_text()


def test_new_template_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")

    result = run("new-template", "notes.txt/mine.py", cwd=tmp_path)

    assert_user_error(result, "notes.txt/mine.py: notes.txt is a file, not a folder")
    assert files_under(tmp_path) == {"notes.txt": b"mine"}


def test_prepare_into_the_folder_of_its_input_deletes_nothing(tmp_path: Path) -> None:
    (tmp_path / "pdir").mkdir()
    oj_sales(n_entities=3, n_weeks=30, seed=1).to_csv(tmp_path / "pdir" / "flat.csv", index=False)
    before = files_under(tmp_path)

    result = run("prepare", "pdir/flat.csv", "--partition-by", "store", "--output", "pdir",
                 cwd=tmp_path)  # fmt: skip

    assert_user_error(result, "--output: pdir contains the input pdir/flat.csv",
                      "choose another output folder")  # fmt: skip
    assert files_under(tmp_path) == before


def test_prepare_of_a_header_only_csv_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("store,week,sales\n", encoding="utf-8")

    result = run("prepare", "empty.csv", "--partition-by", "store", "--output", "out",
                 cwd=tmp_path)  # fmt: skip

    assert_user_error(result, "empty.csv: has no rows")
    assert files_under(tmp_path) == {"empty.csv": b"store,week,sales\n"}


def test_forecast_into_the_data_folder_deletes_nothing(config_file: Path, cli_data: Path) -> None:
    before = files_under(cli_data)

    result = run("forecast", "-c", config_file.name, "--output", cli_data, *TWO_WORKERS,
                 cwd=config_file.parent)  # fmt: skip

    assert_user_error(result, f"output: {cli_data} is data.path {cli_data}")
    assert files_under(cli_data) == before
    assert not (config_file.parent / "work").exists()


def test_forecast_into_a_folder_of_ones_own_deletes_nothing(config_file: Path) -> None:
    precious = config_file.parent / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine", encoding="utf-8")

    result = run("forecast", "-c", config_file.name, "--output", "precious", *TWO_WORKERS,
                 cwd=config_file.parent)  # fmt: skip

    assert_user_error(result, "output: precious is a folder that manymodels did not write",
                      "remove it yourself, or choose another folder")  # fmt: skip
    assert files_under(precious) == {"notes.txt": b"mine"}
    assert not (config_file.parent / "work").exists()
