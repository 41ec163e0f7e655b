"""Every registered model serves on its own with MLflow: ``mlflow models serve`` over HTTP,
requirements that a package index can install, and loading where manymodels is not installed.

Every requirement names a distribution that is installed here from an index (never manymodels,
never a local path or URL); the model loads and forecasts in a Python process whose
``sys.path`` holds only the standard library and the installed libraries, with no manymodels
among them, so that the package code the model ships (``code/``) is what runs; and MLflow
serves a champion from a virtualenv it builds from the model's requirements and the package
index (where pyenv holds this Python version, which that environment manager needs).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import distribution, version
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from packaging.requirements import Requirement

import manymodels
from manymodels import lineage
from manymodels.artifacts.locations import local_path
from manymodels.data import write_partitioned
from manymodels.tracking.store import open_tracking
from tests.conftest import base_config
from tests.servers import call, free_port, quiet_env, running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, oj_frame, dask_scheduler):
    """A real training job under ``auto`` (so several templates win), and its champions."""
    root = tmp_path_factory.mktemp("model-serving")
    write_partitioned(oj_frame, str(root / "data"), ["store", "brand"], basename="part")
    raw = base_config(root / "data", root / "work", compute={"scheduler": dask_scheduler},
                      model={"template": "auto", "params": {}})  # fmt: skip
    config = manymodels.config_from_dict(raw)
    result = manymodels.train(config)
    assert (result.entities["status"] == "ok").all()
    session = open_tracking(config)
    champions = session.registry.resolve(alias="champion")
    return config, session.target.tracking_uri, champions


def _folders(champions) -> dict[str, Path]:
    return {name: Path(str(local_path(ref.source))) for name, ref in champions.items()}


def _future_rows(oj_frame: pd.DataFrame, keys) -> pd.DataFrame:
    rows = oj_frame[(oj_frame["store"].astype(str) == keys["store"])
                    & (oj_frame["brand"] == keys["brand"]) & oj_frame["sales"].isna()]  # fmt: skip
    return rows[["week", "price", "deal"]].reset_index(drop=True)


def test_every_requirement_is_a_published_distribution_pinned_to_what_is_installed(trained):
    _, _, champions = trained
    for folder in _folders(champions).values():
        lines = (folder / "requirements.txt").read_text().split()
        for line in lines:
            requirement = Requirement(line)
            assert requirement.name.lower() != "manymodels" and requirement.url is None, line
            installed = distribution(requirement.name)
            # Installed from an index: pip records a direct_url.json only for a local path,
            # an archive URL or a VCS checkout.
            assert installed.read_text("direct_url.json") is None, line
            assert str(requirement.specifier) == f"=={version(requirement.name)}", line
        names = {Requirement(line).name.lower() for line in lines}
        assert {"mlflow", "pandas", "numpy", "cloudpickle", "statsforecast"} <= names
        conda = yaml.safe_load((folder / "conda.yaml").read_text())
        pip = next(entry["pip"] for entry in conda["dependencies"] if isinstance(entry, dict))
        assert [line for line in pip if line != "pip"] == lines  # conda lists pip itself too
        assert (folder / "code" / "manymodels_shipped" / "manymodels" / "entity_model.py").is_file()


def test_every_model_has_a_signature_and_an_input_example(trained):
    _, _, champions = trained
    folder = next(iter(_folders(champions).values()))
    signature = mlflow.models.get_model_info(str(folder)).signature
    assert signature.inputs.input_names() == ["week", "price", "deal", "sales"]
    assert not any(spec.required for spec in signature.inputs.inputs)
    assert signature.outputs.input_names() == ["week", "prediction", "lo-80", "hi-80", "lo-95",
                                                "hi-95"]  # fmt: skip
    assert signature.params.params[0].name == "horizon"
    # The input example is the model's next periods, and a valid input of its own.
    example = mlflow.models.Model.load(str(folder)).load_input_example(str(folder))
    assert list(example.columns) == ["week", "price", "deal"] and len(example) == 4
    forecast = mlflow.pyfunc.load_model(str(folder)).predict(example)
    assert pd.to_datetime(forecast["week"]).tolist() == pd.to_datetime(example["week"]).tolist()


ISOLATED_LOAD = """
import importlib.util, json, sys
sys.path.append(sys.argv[1])  # the installed libraries, without their .pth hooks
assert importlib.util.find_spec("manymodels") is None, "manymodels is importable"
import mlflow, pandas as pd
out = {}
for folder in sys.argv[2:]:
    forecast = mlflow.pyfunc.load_model(folder).predict(pd.DataFrame())
    out[folder] = forecast["prediction"].tolist()
import manymodels
out["manymodels"] = manymodels.__file__
print(json.dumps(out))
"""


def test_models_load_and_forecast_where_manymodels_is_not_installed(trained, tmp_path):
    _, _, champions = trained
    folders = [str(folder) for folder in _folders(champions).values()]
    # -I: no PYTHON* variables, no current folder on sys.path; -S: no site-packages and no
    # .pth files, so the editable install of manymodels (a .pth hook) is not there either.
    site_packages = sysconfig.get_paths()["purelib"]
    command = [sys.executable, "-I", "-S", "-c", ISOLATED_LOAD, site_packages, *folders]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # The first model loaded put its shipped code on sys.path; the others reuse it.
    assert out.pop("manymodels").startswith(folders[0])
    for folder in folders:
        expected = mlflow.pyfunc.load_model(folder).predict(pd.DataFrame())["prediction"]
        assert out[folder] == pytest.approx(expected.tolist(), rel=1e-9)


INSTALLED_LOAD = """
import sys, mlflow, pandas as pd
mlflow.pyfunc.load_model(sys.argv[1]).predict(pd.DataFrame())
import manymodels, manymodels.jobs  # the whole installed package, not the model's copy
print(manymodels.__file__)
"""


def test_the_shipped_code_never_hides_an_installed_manymodels(trained, tmp_path):
    # A process that loads a model first and then uses manymodels (or starts Dask workers,
    # which inherit its sys.path) must get the installed package, not the model's partial copy.
    _, _, champions = trained
    folder = str(next(iter(_folders(champions).values())))
    done = subprocess.run([sys.executable, "-c", INSTALLED_LOAD, folder], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == manymodels.__file__


def test_a_champion_serves_with_mlflow_models_serve_over_http(trained, oj_frame, tmp_path):
    config, tracking_uri, champions = trained
    name, ref = sorted(champions.items())[0]
    future = _future_rows(oj_frame, ref.tags)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@champion",
               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = quiet_env(MLFLOW_TRACKING_URI=tracking_uri)
    with running(command, url, tmp_path / "serve.log", tmp_path, env, "/ping", timeout=180):
        split = json.loads(future.to_json(orient="split", index=False, date_format="iso"))
        status, body = call(f"{url}/invocations", {"dataframe_split": split})
        assert status == 200, body
        served = pd.DataFrame(body["predictions"])
        status, short = call(f"{url}/invocations", {"dataframe_split": {"columns": [], "data": []},
                                                    "params": {"horizon": 2}})  # fmt: skip
        assert status == 200, short
        status, wrong = call(f"{url}/invocations", {"dataframe_split": {"columns": ["week"],
                                                                        "data": [["soon"]]}})  # fmt: skip
        assert 400 <= status < 500, wrong
    expected = mlflow.pyfunc.load_model(ref.source).predict(future)
    assert list(served.columns) == ["week", "prediction", "lo-80", "hi-80", "lo-95", "hi-95"]
    assert pd.to_datetime(served["week"]).tolist() == future["week"].tolist()
    assert served["prediction"].tolist() == pytest.approx(expected["prediction"].tolist())
    assert len(short["predictions"]) == 2


def _pyenv_with_this_python() -> str | None:
    """The pyenv executable when it holds this Python version (``--env-manager virtualenv``
    builds the model's environment on the model's Python version, from pyenv)."""
    pyenv = shutil.which("pyenv") or str(Path.home() / ".pyenv" / "bin" / "pyenv")
    if not Path(pyenv).is_file():
        return None
    done = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True,
                          check=False)  # fmt: skip
    return pyenv if platform.python_version() in done.stdout.split() else None


def test_a_champion_serves_from_a_virtualenv_built_from_its_requirements(trained, tmp_path):
    """What a model needs besides its own folder comes from the package index: MLflow builds
    a fresh virtualenv from ``python_env.yaml`` and ``requirements.txt`` (no manymodels in
    it) and serves the model from there. The first build downloads the libraries (about two
    minutes here); MLflow keeps the environment in ``~/.mlflow/envs`` for the next run."""
    pyenv = _pyenv_with_this_python()
    if pyenv is None:
        pytest.skip(f"--env-manager virtualenv needs pyenv with Python {platform.python_version()}")
    config, tracking_uri, champions = trained
    # An ensemble, so that statsforecast and the shipped templates must all install and load.
    name, ref = next((name, ref) for name, ref in sorted(champions.items())
                     if ref.tags.get(lineage.WINNER) == "combination")  # fmt: skip
    folder = _folders(champions)[name]
    body = json.loads((folder / "serving_input_example.json").read_text())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}@champion",
               "--env-manager", "virtualenv", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = quiet_env(MLFLOW_TRACKING_URI=tracking_uri)
    env["PATH"] = os.pathsep.join([str(Path(pyenv).parent), env["PATH"]])
    log = tmp_path / "serve.log"
    with running(command, url, log, tmp_path, env, "/ping", timeout=540):
        status, answer = call(f"{url}/invocations", body)
    # Served from an environment under ~/.mlflow/envs, built now or by an earlier run.
    assert re.search(r"(Creating a new environment in|Environment) \S*mlflow/envs/", log.read_text())
    assert status == 200, answer
    served = pd.DataFrame(answer["predictions"])
    example = mlflow.models.Model.load(str(folder)).load_input_example(str(folder))
    expected = mlflow.pyfunc.load_model(str(folder)).predict(example)
    assert served["prediction"].tolist() == pytest.approx(expected["prediction"].tolist())
    assert served["hi-95"].tolist() == pytest.approx(expected["hi-95"].tolist())
