"""``manymodels serve``: the real server process, called over HTTP.

One server (a cache of two models, the alias read again every half second) serves the
champions of a real training job; each test asks about entities of its own, so the order in
which they run does not matter.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

import manymodels
from manymodels.data import write_partitioned
from manymodels.naming import model_name
from manymodels.tracking.store import open_tracking
from tests.conftest import base_config
from tests.servers import call, free_port, quiet_env, running

pytestmark = pytest.mark.slow

CACHE_SIZE = 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory, oj_frame, dask_scheduler):
    """A config file, and its registry after one training job of 12 entities."""
    root = tmp_path_factory.mktemp("serving")
    write_partitioned(oj_frame, str(root / "data"), ["store", "brand"], basename="part")
    raw = base_config(root / "data", root / "work", compute={"scheduler": dask_scheduler},
                      serve={"refresh_seconds": 0.5})  # fmt: skip
    manymodels.train(manymodels.config_from_dict(raw))
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """The URL of a running ``manymodels serve`` process on a free port."""
    path, _ = trained
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [*_cli(), "serve", "-c", str(path), "--port", str(port),
               "--cache-size", str(CACHE_SIZE)]  # fmt: skip
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    with running(command, url, log, path.parent, quiet_env(), "/health"):
        yield url


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("manymodels")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "manymodels.cli"]


def _future(oj_frame: pd.DataFrame, store: int, brand: str, weeks: int) -> list[dict]:
    rows = oj_frame[(oj_frame["store"] == store) & (oj_frame["brand"] == brand)
                    & oj_frame["sales"].isna()].head(weeks)  # fmt: skip
    return [{"week": week.isoformat(), "price": float(price), "deal": int(deal)}
            for week, price, deal in zip(rows["week"], rows["price"], rows["deal"], strict=True)]  # fmt: skip


def _pyfunc_forecast(raw: dict, name: str, future: list[dict]) -> pd.DataFrame:
    """What the registered champion forecasts in-process, for comparison."""
    config = manymodels.config_from_dict(raw)
    source = open_tracking(config).registry.resolve(alias="champion")[name].source
    frame = pd.DataFrame(future).assign(week=lambda f: pd.to_datetime(f["week"]))
    return mlflow.pyfunc.load_model(source).predict(frame)


def test_health_counts_the_served_entities(server):
    status, body = call(f"{server}/health")
    assert status == 200
    assert body["status"] == "ok" and body["alias"] == "champion"
    assert body["entities"] == 12 and body["cache_size"] == CACHE_SIZE
    status, listed = call(f"{server}/entities")
    assert status == 200 and len(listed["entities"]) == 12
    keys = {"store": "1", "brand": "dominicks"}
    assert {"keys": keys, "model": model_name("oj", keys), "version": 1} in listed["entities"]


def test_a_forecast_loads_the_model_once_then_serves_it_cached(server, trained, oj_frame):
    future = _future(oj_frame, 1, "minute.maid", 4)
    request = {"keys": {"store": 1, "brand": "minute.maid"}, "future": future}
    status, first = call(f"{server}/forecast", request)
    assert status == 200, first
    status, second = call(f"{server}/forecast", request)
    assert status == 200, second
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["forecast"] == second["forecast"]
    name = model_name("oj", {"store": "1", "brand": "minute.maid"})
    assert first["model"] == {"name": name, "version": 1}
    rows = pd.DataFrame(first["forecast"])
    assert list(rows.columns) == ["week", "prediction", "lo-80", "hi-80", "lo-95", "hi-95"]
    assert rows["week"].tolist() == [row["week"] for row in future]
    expected = _pyfunc_forecast(trained[1], name, future)
    assert rows["prediction"].tolist() == pytest.approx(expected["prediction"].tolist())


def test_horizon_and_levels_shape_the_forecast(server, oj_frame):
    future = _future(oj_frame, 1, "tropicana", 8)
    request = {"keys": {"store": "1", "brand": "tropicana"}, "future": future, "horizon": 3,
               "levels": [90]}  # fmt: skip
    status, body = call(f"{server}/forecast", request)
    assert status == 200, body
    rows = pd.DataFrame(body["forecast"])
    assert list(rows.columns) == ["week", "prediction", "lo-90", "hi-90"]
    assert rows["week"].tolist() == [row["week"] for row in future[:3]]
    assert (rows["lo-90"] < rows["prediction"]).all() and (rows["prediction"] < rows["hi-90"]).all()


def test_the_least_recently_used_model_leaves_a_full_cache(server, oj_frame):
    def ask(store: int, brand: str) -> bool:
        request = {"keys": {"store": store, "brand": brand},
                   "future": _future(oj_frame, store, brand, 2)}  # fmt: skip
        status, body = call(f"{server}/forecast", request)
        assert status == 200, body
        return body["cached"]

    assert [ask(2, "dominicks"), ask(2, "minute.maid"), ask(2, "dominicks")] == [False, False, True]
    assert ask(2, "tropicana") is False  # evicts minute.maid, the least recently used
    assert [ask(2, "dominicks"), ask(2, "minute.maid")] == [True, False]
    health = call(f"{server}/health")[1]
    assert health["cached_models"] == CACHE_SIZE and health["cache_hits"] >= 2


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "the body is not JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        ({"keys": {"store": 1}}, 400, r"missing \['brand'\]"),
        ({"keys": {"store": 1, "brand": "x", "shelf": 2}}, 400, r"unknown \['shelf'\]"),
        ({"keys": {"store": 1, "brand": "dominicks"}, "horizon": 0}, 400,
         r"The 'horizon' field must be an integer in the range \[1, 10000\]. Got 0 instead."),
        ({"keys": {"store": 1, "brand": "dominicks"}, "levels": [120]}, 400, "'levels' field"),
        ({"keys": {"store": 1, "brand": "dominicks"}, "horizn": 3}, 400,
         "unknown field 'horizn' \\(did you mean 'horizon'\\?\\)"),
        ({"keys": {"store": 1, "brand": "dominicks"}, "future": [{"week": "2022-05-08",
                                                                  "prise": 2.0}]}, 400,
         "unknown column 'prise' \\(did you mean 'price'\\?\\)"),
        ({"keys": {"store": 1, "brand": "dominicks"}, "future": [{"week": "soon"}]}, 400,
         "not a date or time"),
        ({"keys": {"store": 1, "brand": "dominicks"}}, 400,
         "needs future values of 'price', 'deal'; 4 of the 4 periods"),
        ({"keys": {"store": 1, "brand": "dominicks"}, "future": [{"week": "2022-05-09",
                                                                  "price": 2, "deal": 0}]}, 400,
         "2022-05-09T00:00:00, which is not one of the periods to forecast"),
        ({"keys": {"store": 99, "brand": "dominicks"}}, 404,
         r"no model serves the entity \{'store': '99', 'brand': 'dominicks'\}"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_4xx_with_a_clear_message(server, body, status, message):
    raw = body if isinstance(body, bytes) else None
    answer_status, answer = call(f"{server}/forecast", None if raw else body, raw=raw)
    assert answer_status == status, answer
    assert set(answer) == {"error"}
    assert re.search(message, answer["error"]), answer


def test_wrong_routes_and_methods_are_json_4xx(server):
    assert call(f"{server}/nowhere") == (404, {"error": "Not Found"})
    assert call(f"{server}/forecast")[0] == 405


def test_a_promotion_is_served_without_a_restart(server, trained, oj_frame):
    _, raw = trained
    keys = {"store": 3, "brand": "dominicks"}
    name = model_name("oj", {"store": "3", "brand": "dominicks"})
    request = {"keys": keys, "future": _future(oj_frame, 3, "dominicks", 4)}
    status, before = call(f"{server}/forecast", request)
    assert status == 200 and before["model"]["version"] == 1
    other = {**raw, "model": {"template": "seasonal_naive", "params": {}}}
    manymodels.train(manymodels.config_from_dict(other))  # version 2 of every entity
    config = manymodels.config_from_dict(raw)
    open_tracking(config).registry.set_alias(name, "champion", 2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, after = call(f"{server}/forecast", request)
        assert status == 200, after
        if after["model"]["version"] == 2:
            break
        time.sleep(0.2)
    assert after["model"] == {"name": name, "version": 2} and after["cached"] is False
    expected = _pyfunc_forecast(raw, name, request["future"])
    served = [row["prediction"] for row in after["forecast"]]
    assert served == pytest.approx(expected["prediction"].tolist())
    assert served != pytest.approx([row["prediction"] for row in before["forecast"]])
