"""``manymodels demo``: the whole pipeline on generated data, in one command."""

from __future__ import annotations

from pathlib import Path

from manymodels.config import load_config
from manymodels.datasets import write_oj_sales
from manymodels.errors import ConfigError
from manymodels.jobs.budget import require_within_budget
from manymodels.jobs.forecasting import forecast
from manymodels.jobs.training import train
from manymodels.outputs import check_output
from manymodels.report import print_forecast_summary, print_train_summary, stdout

__all__ = ["DEMO_CONFIG", "DEMO_MARKER", "demo_config_text", "run_demo", "write_demo_config"]

HORIZON = 8

DEMO_MARKER = ".manymodels-demo"
"""The file that marks a folder as a demo's workdir, which a later demo may write over."""

_MARKER_TEXT = (
    "'manymodels demo' made this folder, and rewrites its config.yaml, data/ and forecasts/\n"
    "when it runs here again. Delete this file to keep it from doing so.\n"
)

DEMO_CONFIG = """\
# manymodels job configuration for the generated OJ-style sales data.
# Relative paths are resolved against the folder of this file.

horizon: {horizon}                 # weeks to forecast

data:
  path: {data_path}        # hive-partitioned Parquet: store=1/brand=tropicana/part-0.parquet
  partition_by: [store, brand]  # one partition, and one model, per store and brand
  time_col: week
  target_col: sales
  exog_cols: [price, deal]      # known in advance: rows after the last sale carry planned prices
  freq: W-SUN

model:
  template: auto                # backtest every candidate per entity and keep the best; or one
                                # template: auto_ets, theta, auto_arima, sklearn_lags, a .py file
  # candidates:                 # the default set: naive, seasonal_naive, auto_ets, theta,
  #   - template: auto_ets      # auto_arima, croston (intermittent series only), and a ridge
  #   - name: ridge             # regression on one season of lags and the exogenous columns
  #     template: sklearn_lags
  #     params: {{lags: 8, fourier_terms: 3}}

evaluation:
  windows: 3                    # rolling-origin backtest windows, each `horizon` weeks long
  metric: mase                  # chooses among the candidates, and decides promotion on retrain
  refit: true                   # refit the winner on all data after the backtest

tracking:
  experiment: oj-demo
  model_prefix: oj              # registered models are named oj.store=1.brand=tropicana

failures:
  max_share: 0.05               # exit 1 when more than 5% of entities fail

forecast:
  output: {forecast_output}          # batch forecasts, replaced as a whole by each forecast job
  levels: [80, 95]              # prediction intervals: lo-80, hi-80, lo-95, hi-95 columns

work_dir: {work_dir}                     # the MLflow store (mlflow.db, mlartifacts/) and job ledgers
"""


def demo_config_text(
    data_path: str = "data", work_dir: str = ".", forecast_output: str = "forecasts"
) -> str:
    """The demo configuration, pointing at ``data_path`` and keeping its store in ``work_dir``."""
    return DEMO_CONFIG.format(horizon=HORIZON, data_path=data_path, work_dir=work_dir,
                              forecast_output=forecast_output)  # fmt: skip


def write_demo_config(path: str | Path) -> Path:
    """Write the demo configuration next to its ``data`` folder."""
    target = Path(path)
    target.write_text(demo_config_text(), encoding="utf-8")
    return target


def run_demo(
    workdir: str, entities: int, weeks: int, seed: int, progress: bool, force: bool = False
) -> None:
    """Generate data, write ``config.yaml``, train, forecast and print where everything is.

    Args:
        workdir: a new or empty folder, or the workdir of an earlier demo.
        force: use a non-empty ``workdir`` that no demo made; its ``config.yaml`` is
            overwritten, but its ``data`` and ``forecasts`` only if manymodels wrote them.

    Raises:
        ConfigError: ``workdir`` is not a demo's and ``force`` is false, or its ``data`` or
            ``forecasts`` folder holds something manymodels did not write; nothing is written.
    """
    root = Path(workdir)
    claim_workdir(root, force)
    stdout.print(f"[bold]manymodels demo[/bold] in {root}")
    stdout.print(f"  generating {entities} store x brand series of {weeks} weeks ...")
    write_oj_sales(
        str(root / "data"), n_entities=entities, n_weeks=weeks, seed=seed,
        future_weeks=HORIZON, too_short_share=0.01,
    )  # fmt: skip
    config_file = write_demo_config(root / "config.yaml")
    stdout.print(f"  wrote {config_file}")
    config = load_config(config_file)

    trained = train(config, progress=progress)
    print_train_summary(trained)
    require_within_budget(trained, config)

    forecasted = forecast(config, progress=progress)
    print_forecast_summary(forecasted)

    stdout.print("\n[bold]Next[/bold]")
    stdout.print(f"  browse runs and models:  cd {root} && mlflow ui --backend-store-uri "
                 f"sqlite:///{(root / 'mlflow.db').resolve()}")  # fmt: skip
    stdout.print(f"  read the forecasts:      pandas.read_parquet('{root / 'forecasts'}')")
    example = trained.entities.loc[trained.entities["status"] == "ok", "model_name"].iloc[0]
    stdout.print(f"  load one model:          mlflow.set_tracking_uri('{trained.tracking_uri}'); "
                 f"mlflow.pyfunc.load_model('models:/{example}@champion')")  # fmt: skip
    stdout.print(f"  look after the models:   manymodels models list -c {config_file} "
                 "--sort -mase --limit 10")  # fmt: skip
    stdout.print(f"  retrain on new data:     manymodels retrain -c {config_file}  "
                 "(unchanged entities are skipped)")  # fmt: skip


def claim_workdir(root: Path, force: bool) -> None:
    """Check that the demo may write into ``root``, then create it and mark it as a demo's.

    A folder marked by an earlier demo is reused as it is; a new or empty one gets the mark. A
    folder with other files is refused unless ``force``, and is then used but not marked, so
    that every later demo there needs ``force`` again.

    Raises:
        ConfigError: the demo would overwrite files it did not write.
    """
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--workdir: {root} is a file. Hint: choose a new or empty folder.")
    fresh = not root.exists() or not any(root.iterdir())
    if not (fresh or force or (root / DEMO_MARKER).is_file()):
        raise ConfigError(
            f"--workdir: {root} is not empty and no earlier demo made it (it has no "
            f"{DEMO_MARKER} file); the demo would overwrite its config.yaml and data. Hint: "
            "choose a new or empty folder, or pass --force to use this one anyway."
        )
    for folder in ("data", "forecasts"):
        check_output(str(root / folder), "--workdir")
    root.mkdir(parents=True, exist_ok=True)
    if fresh:
        (root / DEMO_MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
