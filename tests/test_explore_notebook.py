"""The exploration notebook runs from top to bottom in a real kernel, and what it prints agrees
with what the jobs recorded in MLflow and the registry.

Run like the quick start (see ``test_notebook.py``): a fresh kernel of this interpreter, from a
temporary working directory, so that everything lands in ``tmp_path/explore-work``.
"""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import nbformat
import pandas as pd
import pytest

from tests.notebooks import execute, stdout

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore.ipynb"
KERNEL = "manymodels-explore-tests"


def test_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[nbformat.NotebookNode, Path]:
    """The notebook after a real run, and the folder it ran in."""
    return execute(NOTEBOOK, KERNEL, tmp_path_factory)


def _results(work: Path, job_id: str) -> pd.DataFrame:
    client = mlflow.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"tags.`manymodels.job_id` = '{job_id}'",
    )  # fmt: skip
    path = client.download_artifacts(runs[0].info.run_id, "entity_results.parquet")
    return pd.read_parquet(path).astype({"store": str})


def test_notebook_writes_only_into_its_working_folder(executed) -> None:
    _, folder = executed
    work = folder / "explore-work"
    assert [path.name for path in folder.iterdir()] == ["explore-work"]
    assert {"frames", "mlflow.db", "forecasts", "report.html", "worst-entity.png"} <= {
        path.name for path in work.iterdir()
    }
    assert (work / "worst-entity.png").stat().st_size > 10_000
    assert "Worst entities" in (work / "report.html").read_text(encoding="utf-8")


def test_the_worst_entities_are_those_mlflow_recorded(executed) -> None:
    notebook, folder = executed
    out = stdout(notebook)
    job = re.search(r"job (train-\S+): (\d+) trained, (\d+) failed", out)
    assert job, out
    results = _results(folder / "explore-work", job.group(1))
    assert int(job.group(2)) == (results["status"] == "ok").sum() >= 20
    assert int(job.group(3)) == (results["status"] == "failed").sum()

    ok = results[results["status"] == "ok"]
    worst = ok.sort_values(["mase", "store", "brand"], ascending=[False, True, True]).head(5)
    listed = re.search(r"worst: (.*)", out).group(1)
    assert listed == ", ".join(
        f"{s}/{b}" for s, b in worst[["store", "brand"]].itertuples(index=False)
    )
    first = worst.iloc[0]
    assert f"forecast of {first['store']}/{first['brand']}: 8 weeks" in out
    backtest = re.search(
        rf"backtest of {first['store']}/{first['brand']}: (\d+) windows of (\S+)", out
    )
    assert backtest and int(backtest.group(1)) >= 1 and backtest.group(2) == first["winner"]


def test_promotion_reaches_the_forecasts(executed) -> None:
    notebook, _ = executed
    out = stdout(notebook)
    beats = re.search(r"seasonal naive beats the lag model on (\d+) of (\d+) entities", out)
    promoted = re.search(r"promoted (\d+) entities; forecasts now use version 2 for (\d+)", out)
    assert beats and promoted, out
    assert promoted.group(1) == promoted.group(2) == beats.group(1)
    assert int(beats.group(2)) >= 20
