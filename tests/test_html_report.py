"""The HTML report of a training job: what a job logs, what the page holds, and how it renders
in a real headless Chromium."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import manymodels
from manymodels.exploration import charts
from manymodels.exploration.html_report import render_report
from manymodels.exploration.jobdata import load_job
from tests.browser import chromium_binary, open_page
from tests.conftest import base_config

BROKEN = {"store": "2", "brand": "dominicks"}


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, oj_frame: pd.DataFrame, dask_scheduler: str):
    """One real training job whose data has one partition that cannot be read."""
    from manymodels.data import write_partitioned

    root = tmp_path_factory.mktemp("report")
    write_partitioned(oj_frame, str(root / "data"), ["store", "brand"], basename="part")
    broken = root / "data" / f"store={BROKEN['store']}" / f"brand={BROKEN['brand']}"
    (broken / "part-0.parquet").write_bytes(b"not a parquet file")
    raw = base_config(root / "data", root / "work", compute={"scheduler": dask_scheduler})
    config = manymodels.config_from_dict(raw)
    result = manymodels.train(config)
    assert (result.trained, result.failed) == (11, 1)
    return config, result


@pytest.fixture(scope="module")
def report_file(job, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config, _ = job
    return manymodels.write_report(config, output=tmp_path_factory.mktemp("out") / "r.html")


def _expected_worst(job) -> list[str]:
    config, result = job
    table = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=result.run_id, artifact_path="entity_results.parquet",
            tracking_uri=f"sqlite:///{Path(config.work_dir) / 'mlflow.db'}",
        )
    )  # fmt: skip
    ok = table[table["status"] == "ok"].astype({"store": str})
    ok = ok.sort_values(["mase", "store", "brand"], ascending=[False, True, True]).head(5)
    return [f"store={s}/brand={b}" for s, b in ok[["store", "brand"]].itertuples(index=False)]


def test_every_training_job_logs_report_csv_and_numeric_spread(job) -> None:
    config, result = job
    client = mlflow.MlflowClient(f"sqlite:///{Path(config.work_dir) / 'mlflow.db'}")
    artifacts = {item.path for item in client.list_artifacts(result.run_id)}
    assert {"report.html", "entity_results.csv", "entity_results.parquet"} <= artifacts

    run = client.get_run(result.run_id)
    assert run.data.metrics["median_mase"] <= run.data.metrics["p90_mase"]
    found = client.search_runs([run.info.experiment_id], "metrics.p90_mase > 0")
    assert result.run_id in {r.info.run_id for r in found}
    path = client.download_artifacts(result.run_id, "entity_results.csv")
    table = pd.read_csv(path)
    assert len(table) == 12 and "traceback" not in table
    # Drawn by the job itself, from the backtest parts in its work folder.
    logged = Path(client.download_artifacts(result.run_id, "report.html"))
    figures = _entity_figures(logged.read_text(encoding="utf-8"))
    assert len(figures) == 5 + 3 and all("backtest" in figure for figure in figures)


def test_report_lists_summary_failures_and_the_worst_entities(job, report_file: Path) -> None:
    text = report_file.read_text(encoding="utf-8")
    assert "Metric distributions" in text and "Worst entities" in text
    assert "store=2" in text.split('id="failures-table"')[1] and "ArrowInvalid" in text
    listed = re.findall(r'<tr data-entity="([^"]+)"', text.split('id="worst-table"')[1])[:5]
    assert listed == _expected_worst(job)
    # The job backtested, selected and calibrated intervals: those sections are drawn.
    for section in ("Skill against seasonal naive", "Which template won", "Prediction intervals"):
        assert section in text


def test_report_needs_no_network(report_file: Path) -> None:
    text = report_file.read_text(encoding="utf-8")
    assert "<script" not in text and "<link" not in text
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert text.count("<svg") == text.count('<figure class="chart"') >= 1 + 5 + 3


def test_sections_without_their_columns_are_left_out(job) -> None:
    config, result = job
    loaded = load_job(config, result.job_id)
    selection = [
        c for c in loaded.entities if c == "winner" or c.startswith(("skill_", "coverage_"))
    ]
    loaded.entities = loaded.entities.drop(columns=selection)
    loaded.backtest = None
    page = render_report(loaded)

    for section in ("Skill against seasonal naive", "Which template won", "Prediction intervals"):
        assert section not in page
    assert page.count('<figure class="chart"') == 1 + 5 + 3
    assert all("backtest" not in figure for figure in _entity_figures(page))


def test_entity_chart_draws_backtest_and_intervals() -> None:
    times = pd.date_range("2024-01-07", periods=30, freq="W-SUN")
    history = pd.DataFrame({"week": times[:26], "sales": np.arange(26.0)})
    forecast = pd.DataFrame({"week": times[26:], "prediction": [26.0, 27, 28, 29]})
    for level, width in ((80, 2.0), (95, 4.0)):
        forecast[f"lo-{level}"] = forecast["prediction"] - width
        forecast[f"hi-{level}"] = forecast["prediction"] + width
    backtest = pd.DataFrame(
        {
            "week": times[18:26],
            "prediction": np.arange(18.0, 26.0) + 0.5,
            "window": [0] * 4 + [1] * 4,
        }
    )
    svg = charts.entity_chart("store=1", history, forecast, backtest, "week", "sales", ["80", "95"])
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    for label in ("history", "backtest", "forecast", "80% interval", "95% interval"):
        assert label in svg


@pytest.mark.parametrize(
    ("value", "label"),
    [(950.0, "950"), (1234.0, "1.23k"), (35e6, "35M"), (-4.1e9, "-4.1B"), (0.25, "0.25"),
     (0.0, "0"), (-12.5, "-12.5")],
)  # fmt: skip
def test_tick_labels_stay_short_enough_for_the_fixed_margins(value: float, label: str) -> None:
    assert charts.compact_number(value) == label


def test_a_chart_of_large_values_labels_its_axis_with_short_numbers() -> None:
    times = pd.date_range("2020-01-05", periods=160, freq="W-SUN")
    history = pd.DataFrame({"week": times[:150], "sales": np.linspace(-2e9, 3e9, 150)})
    forecast = pd.DataFrame({"week": times[150:], "prediction": np.full(10, 3e9)})
    svg = charts.entity_chart("store=1", history, forecast, pd.DataFrame(), "week", "sales", [])
    labels = re.findall(r">([^<>]*)</text>", svg)
    assert "3B" in labels and "0" in labels
    assert not any("e+" in label for label in labels)


def test_chart_text_in_any_script_reaches_the_page_as_text() -> None:
    times = pd.date_range("2024-01-07", periods=30, freq="W-SUN")
    history = pd.DataFrame({"week": times, "sales": np.arange(30.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Glyph ... missing from font" on the terminal
        svg = charts.entity_chart("店舗=東京", history, pd.DataFrame(), pd.DataFrame(), "week",
                                  "sales", [])  # fmt: skip
    assert "店舗=東京" in re.findall(r">([^<>]*)</text>", svg)


def test_report_command_writes_the_file(job, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from manymodels.cli import main

    config, result = job
    path = tmp_path / "config.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude={"source"})))
    out = CliRunner().invoke(main, ["report", "-c", str(path), "--job", result.job_id,
                                    "--output", str(tmp_path / "r.html")])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert (tmp_path / "r.html").stat().st_size > 10_000
    missing = CliRunner().invoke(main, ["report", "-c", str(path), "--job", "no-such-job"])
    assert missing.exit_code == 2 and "no job no-such-job" in missing.output


@pytest.mark.skipif(chromium_binary() is None, reason="no Chromium binary (CI installs one)")
def test_report_renders_in_headless_chromium(job, report_file: Path, tmp_path: Path) -> None:
    with open_page(report_file, tmp_path / "profile") as page:
        charts_shown = page.locator("figure.chart")
        assert charts_shown.count() >= 9
        for index in range(charts_shown.count()):
            shot = charts_shown.nth(index).screenshot(path=str(tmp_path / f"chart-{index}.png"))
            assert _drawn(shot), f"chart {index} is blank"
        rows = page.locator("#worst-table tr[data-entity]")
        shown = [rows.nth(i).get_attribute("data-entity") for i in range(rows.count())]
        assert shown == _expected_worst(job)
        assert page.errors == []


def _drawn(png: bytes) -> bool:
    """Whether a screenshot shows a drawing: many distinct colours, not one flat fill."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000) or []
    return image.width > 100 and image.height > 100 and len(colours) > 20


def _entity_figures(page: str) -> list[str]:
    return re.findall(
        r'<figure class="chart" data-chart="(?:worst|best)-\d+".*?</figure>', page, re.S
    )


def test_every_entity_chart_draws_history_forecast_and_holdout(report_file: Path) -> None:
    figures = _entity_figures(report_file.read_text(encoding="utf-8"))
    assert len(figures) == 5 + 3
    for figure in figures:
        for label in ("history", "forecast", "holdout", "backtest", "80% interval", "95% interval"):
            assert label in figure


def test_report_of_a_per_job_bundle_draws_forecasts(make_config) -> None:
    config = make_config(tracking={"registration": "per_job", "model_prefix": "bundled"})
    result = manymodels.train(config)
    page = render_report(load_job(config, result.job_id))

    figures = _entity_figures(page)
    assert len(figures) == 5 + 3 and all("forecast" in figure for figure in figures)
