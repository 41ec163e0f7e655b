"""Entity model folders: the files MLflow expects, and loading them back with MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from manymodels.artifacts.entity_folder import ModelWriter, entity_model_files
from manymodels.artifacts.model_files import (
    _environment_files_from_save_model,
    environment_files,
    requirements,
)
from manymodels.artifacts.sinks import EntityFolders
from manymodels.datasets import oj_sales
from manymodels.fitting import FitSpec, fit_entity
from manymodels.templates import load_template, resolve_template


@pytest.fixture(scope="module")
def trained_entity_model():
    """One entity's model, trained as a job's worker trains it."""
    frame = oj_sales(n_entities=1, n_weeks=60, seed=1, short_share=0.0, intermittent_share=0.0)
    template = load_template(resolve_template("seasonal_naive"))
    spec = FitSpec.for_template(
        template, template.validate_params({}), time_col="week", target_col="sales",
        exog_cols=(), freq="W-SUN", fill_missing="interpolate", horizon=4, holdout=4,
        refit=True, season_length=None,
    )  # fmt: skip
    return fit_entity(frame[["week", "sales"]], {"store": "1", "brand": "tropicana"}, spec).model


def test_environment_files_match_what_mlflow_save_model_writes() -> None:
    pins = requirements()
    fast = environment_files(tuple(pins))
    assert set(fast) == {"conda.yaml", "python_env.yaml", "requirements.txt"}
    assert fast == _environment_files_from_save_model(pins)
    assert fast["requirements.txt"].splitlines() == pins


def test_environment_files_name_mlflow_when_the_requirements_do_not() -> None:
    files = environment_files(("pandas",))
    assert files["requirements.txt"].splitlines() == [f"mlflow=={mlflow.__version__}", "pandas"]
    assert files == _environment_files_from_save_model(["pandas"])


def test_a_written_entity_model_loads_with_mlflow_and_forecasts(
    tmp_path: Path, trained_entity_model
) -> None:
    writer = ModelWriter(entity_model_files(requirements()))
    writer.save(trained_entity_model, tmp_path / "first")
    writer.save(trained_entity_model, tmp_path / "second")
    for folder in ("first", "second"):
        files = sorted(path.name for path in (tmp_path / folder).iterdir())
        assert files == ["MLmodel", "code", "conda.yaml", "data", "python_env.yaml", "requirements.txt"]
        loaded = mlflow.pyfunc.load_model(str(tmp_path / folder))
        forecast = loaded.predict(pd.DataFrame())
        assert len(forecast) == trained_entity_model.context.horizon
        assert forecast["prediction"].notna().all()
    dependencies = mlflow.pyfunc.get_model_dependencies(str(tmp_path / "first"))
    assert Path(dependencies).read_text().splitlines() == requirements()


def test_folders_in_a_local_store_replace_a_repeated_task_s_and_leave_nothing_partial(
    tmp_path: Path, trained_entity_model
) -> None:
    store = tmp_path / "artifacts"
    for _attempt in range(2):  # a task that Dask runs twice writes the same folders again
        sink = EntityFolders(store.as_uri(), "models/abc", entity_model_files(requirements()))
        try:
            assert sink.add("store=1", trained_entity_model) == "models/abc/store=1"
            sink.add("store=2", trained_entity_model)
            sink.upload()
        finally:
            sink.close()
        assert sorted(p.name for p in (store / "models/abc").iterdir()) == ["store=1", "store=2"]
    loaded = mlflow.pyfunc.load_model(str(store / "models/abc/store=2"))
    assert len(loaded.predict(pd.DataFrame())) == trained_entity_model.context.horizon


def test_a_task_that_fails_before_uploading_leaves_no_folders(
    tmp_path: Path, trained_entity_model
) -> None:
    store = tmp_path / "artifacts"
    sink = EntityFolders(store.as_uri(), "models/abc", entity_model_files(requirements()))
    sink.add("store=1", trained_entity_model)
    sink.close()
    assert list((store / "models/abc").iterdir()) == []


def test_mlmodel_matches_what_mlflow_save_model_writes_but_for_id_and_time(
    tmp_path: Path, trained_entity_model
) -> None:
    import yaml

    ModelWriter(entity_model_files(requirements())).save(trained_entity_model, tmp_path / "ours")
    data = tmp_path / "ours" / "data" / "entity_model.pkl"
    code = tmp_path / "ours" / "code"
    mlflow.pyfunc.save_model(str(tmp_path / "theirs"), loader_module="manymodels_flavor_loader",
                             data_path=str(data), pip_requirements=requirements(),
                             code_paths=[str(code / "manymodels_flavor_loader.py"),
                                         str(code / "manymodels_shipped")])  # fmt: skip
    ours, theirs = (yaml.safe_load((tmp_path / name / "MLmodel").read_text())
                    for name in ("ours", "theirs"))  # fmt: skip
    assert ours["model_uuid"] != theirs["model_uuid"]
    for payload in (ours, theirs):
        payload.pop("model_uuid")
        payload.pop("utc_time_created")
        payload.pop("model_size_bytes", None)  # measured by save_model after copying the data
    assert ours == theirs
    code = {name: sorted(p.relative_to(tmp_path / name).as_posix()
                         for p in (tmp_path / name / "code").rglob("*.py"))
            for name in ("ours", "theirs")}  # fmt: skip
    shipped = "code/manymodels_shipped/manymodels/entity_model.py"
    assert code["ours"] == code["theirs"] and shipped in code["ours"]
