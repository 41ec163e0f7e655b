"""Models saved by an earlier release keep loading.

``tests/data/release-0.1.0`` holds an entity model folder and a job bundle written by release
0.1.0 (before MLflow's code moved into ``manymodels.tracking`` and ``manymodels.artifacts``):
seasonal naive models (horizon 4) of two generated series, ``oj_sales(n_entities=2,
n_weeks=30, seed=1)``: store 1 of dominicks (the folder, and in the bundle) and of minute.maid
(in the bundle). Their ``MLmodel`` files name ``manymodels.flavor`` and ``manymodels.bundle`` as
loader modules, and their pickles name ``manymodels.entity_model`` and the template's module.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from manymodels.artifacts import bundle
from manymodels.artifacts.entity_folder import entity_model_files
from manymodels.artifacts.loader import ModelLoader
from manymodels.artifacts.model_files import requirements
from manymodels.entity_model import EntityModel

SAVED = Path(__file__).parent / "data" / "release-0.1.0"
# What the saved dominicks model forecasts: its last season's value, for 4 weeks.
EXPECTED = [9531.0] * 4


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """A copy of the saved models, so that nothing a loader writes lands in the repository."""
    shutil.copytree(SAVED, tmp_path / "saved")
    return tmp_path / "saved"


@pytest.mark.parametrize(
    ("module", "attribute"),
    [("manymodels.flavor", "_load_pyfunc"), ("manymodels.bundle", "_load_pyfunc"),
     ("manymodels.entity_model", "EntityModel")],
)  # fmt: skip
def test_module_paths_that_saved_models_name_stay_importable(module, attribute):
    assert callable(getattr(importlib.import_module(module), attribute))


def test_an_entity_model_saved_by_0_1_0_loads_and_forecasts(saved: Path) -> None:
    mlmodel = yaml.safe_load((saved / "entity_model" / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "manymodels.flavor"

    loaded = mlflow.pyfunc.load_model(str(saved / "entity_model"))
    assert loaded.predict(pd.DataFrame())["prediction"].tolist() == EXPECTED

    model = ModelLoader().load((saved / "entity_model").as_uri())
    assert isinstance(model, EntityModel)
    assert model.forecast()["prediction"].tolist() == EXPECTED


def test_a_job_bundle_saved_by_0_1_0_loads_and_forecasts(saved: Path) -> None:
    loaded = mlflow.pyfunc.load_model(str(saved / "bundle"))
    keys = pd.DataFrame({"store": ["1", "1"], "brand": ["dominicks", "minute.maid"]})
    forecast = loaded.predict(keys)
    assert len(forecast) == 8 and forecast["prediction"].notna().all()
    assert forecast[forecast["brand"] == "dominicks"]["prediction"].tolist() == EXPECTED

    manifest = bundle.read_manifest((saved / "bundle").as_uri())
    location = manifest.loc[manifest["brand"] == "dominicks", "location"].item()
    assert ModelLoader().load(location).forecast()["prediction"].tolist() == EXPECTED


def test_models_saved_now_hand_over_to_the_same_loader_modules() -> None:
    # Older installations load what this release saves, and the other way round: the loader
    # that a new model names is shipped inside it and hands over to the same modules.
    files = entity_model_files(requirements())
    loader = files.mlmodel["flavors"]["python_function"]["loader_module"]
    assert loader == "manymodels_flavor_loader"
    assert 'import_module("manymodels.flavor")' in files.code[f"{loader}.py"]
    assert bundle.LOADER_MODULE == "manymodels.bundle"
