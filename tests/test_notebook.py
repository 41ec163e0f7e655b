"""The quick-start notebook runs from top to bottom in a real kernel and writes what it promises.

It is executed with nbclient in a fresh kernel of the interpreter running the tests (a kernel
spec written for the session, so no ``python3`` kernel registered elsewhere on the machine gets
in the way), from a temporary working directory, so that everything it writes lands in
``tmp_path/quickstart-work``.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from tests.notebooks import execute, stdout

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
HORIZON = 8
KERNEL = "manymodels-tests"
N_ENTITIES = 30


def test_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[nbformat.NotebookNode, Path]:
    """The notebook after a real run, and the folder it ran in."""
    return execute(NOTEBOOK, KERNEL, tmp_path_factory)


def test_notebook_writes_only_into_its_working_folder(executed) -> None:
    _, folder = executed
    work = folder / "quickstart-work"

    assert [path.name for path in folder.iterdir()] == ["quickstart-work"]
    assert {"data", "forecasts", "mlflow.db", "mlartifacts", "entities.png"} <= {
        path.name for path in work.iterdir()
    }
    assert (work / "entities.png").stat().st_size > 10_000


def test_notebook_forecasts_every_trained_entity(executed) -> None:
    notebook, folder = executed
    work = folder / "quickstart-work"
    data = pd.read_parquet(work / "data").astype({"store": str, "brand": str})
    forecasts = pd.read_parquet(work / "forecasts").astype({"store": str, "brand": str})

    entities = dict(list(data.groupby(["store", "brand"])))
    assert len(entities) == N_ENTITIES
    # The data holds a few series too short to backtest on purpose: they get the naive
    # fallback, and every entity is forecast.
    too_short = {
        key for key, group in entities.items() if group["sales"].notna().sum() < 2 * HORIZON
    }
    forecast = dict(list(forecasts.groupby(["store", "brand"], observed=True)))
    assert set(forecast) == set(entities)
    assert 1 <= len(too_short) <= 3

    for key, rows in forecast.items():
        future = entities[key].loc[entities[key]["sales"].isna(), "week"]
        assert sorted(rows["week"]) == sorted(future), key
        assert rows["model_name"].nunique() == 1
    assert forecasts["model_name"].nunique() == len(forecast)
    assert (forecasts["model_version"] == 1).all()
    assert np.isfinite(forecasts["prediction"]).all()

    out = stdout(notebook)
    counts = re.search(r"(\d+) trained, (\d+) failed of (\d+) entities", out)
    assert counts, out
    assert tuple(map(int, counts.groups())) == (N_ENTITIES, 0, N_ENTITIES)
    for store, brand in too_short:
        assert f"store {store}, {brand}: fallback (naive)" in out
    assert f"0 without a model: {len(forecast) * HORIZON} rows" in out
    assert {"lo-80", "hi-80", "lo-95", "hi-95"} <= set(forecasts.columns)
    assert f"mlflow ui --backend-store-uri sqlite:///{work / 'mlflow.db'}" in out


def test_notebook_loaded_model_matches_the_batch_forecast(executed) -> None:
    notebook, folder = executed
    forecasts = pd.read_parquet(folder / "quickstart-work" / "forecasts")
    cell = next(cell for cell in notebook.cells if "pyfunc.load_model" in cell.source)
    printed = "".join(output.get("text", "") for output in cell.outputs
                      if output.output_type == "stream")  # fmt: skip
    name = printed.strip().splitlines()[0]
    shown = next(output for output in cell.outputs if output.output_type == "execute_result")
    table = shown["data"]["text/plain"]

    assert name in set(forecasts["model_name"])
    expected = forecasts[forecasts["model_name"] == name].sort_values("week")["prediction"]
    # Rows of the displayed frame: index, week, prediction.
    rows = [line.split() for line in table.strip().splitlines()[1:]]
    assert [row[1] for row in rows] == [
        f"{week:%Y-%m-%d}"
        for week in sorted(forecasts.loc[forecasts["model_name"] == name, "week"])
    ]
    np.testing.assert_allclose([float(row[2]) for row in rows], expected.to_numpy(), rtol=1e-6)
