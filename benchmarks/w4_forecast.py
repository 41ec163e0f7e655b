"""W4, batch forecasts: 2,000 entities forecast from the registry after a W1-style train.

The floor is the plain in-memory forecast loop (regularise, future rows, ``forecast``) over
models and frames loaded beforehand, divided by 2. ``manymodels forecast`` runs from the models
of a ``per_entity`` train and, as a second row, from the bundle of a ``per_job`` train. Target:
at least 200 entities per second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from _common import (
    N_WORKERS,
    PREFIX,
    RIDGE,
    Outcome,
    Row,
    config_dict,
    make_config,
    make_dataset,
    preload,
    say,
    timed_train,
)

N_WEEKS = 156
MIN_ENTITIES_PER_SECOND = 200.0
TARGET = f">= {MIN_ENTITIES_PER_SECOND:.0f} entities/s"


def run(root: Path, n_entities: int, state: dict[str, Any]) -> Outcome:
    outcome = Outcome()
    configs = {mode: _trained_config(root, n_entities, state, mode)
               for mode in ("per_entity", "per_job")}  # fmt: skip
    floor = None
    if configs["per_entity"] is not None:
        loop_seconds, loop_ok = _forecast_loop(configs["per_entity"])
        floor = loop_seconds / N_WORKERS
        state["w4_loop"] = {"seconds": loop_seconds, "ok": loop_ok}
    for mode, config in configs.items():
        label = f"W4 forecast: from {mode} models"
        if config is None:
            outcome.rows.append(Row(label, n_entities, target=TARGET, met=False,
                                    detail="train failed"))  # fmt: skip
            outcome.notes.append(f"W4 {mode}: the train job before the forecast failed")
            continue
        outcome.rows.append(_timed_forecast(label, config, n_entities, floor, state))
    return outcome


def _timed_forecast(label: str, config: Any, n_entities: int, floor: float | None,
                    state: dict[str, Any]) -> Row:  # fmt: skip
    import manymodels

    say(f"{label}, {n_entities} entities ...")
    started = time.perf_counter()
    error = None
    try:
        result = manymodels.forecast(config)
        forecast, failed = result.forecast, result.failed
    except Exception as exc:  # reported in the table
        error, forecast, failed = f"{type(exc).__name__}: {exc}", 0, n_entities
    seconds = time.perf_counter() - started
    say(f"manymodels forecast: {forecast} ok, {failed} failed in {seconds:.1f} s"
        + (f" ({error})" if error else ""))  # fmt: skip
    rate = forecast / seconds if error is None else None
    return Row(
        workload=label, entities=n_entities, floor_s=floor,
        seconds=seconds if error is None else None, rate=rate, rate_unit="entities/s",
        target=TARGET, met=rate is not None and rate >= MIN_ENTITIES_PER_SECOND,
        detail="" if error is None else "job failed",
        extra={"forecast": forecast, "failed": failed, "error": error,
               "sequential_forecast": state.get("w4_loop")},
    )  # fmt: skip


def _trained_config(root: Path, n_entities: int, state: dict[str, Any], mode: str) -> Any:
    """W1's trained store of that mode when it has the same size, else a train of its own."""
    previous = state.get("w1", {}).get(mode)
    if previous and previous["entities"] == n_entities:
        say(f"W4: forecasting from the {mode} models W1 trained")
        return previous["config"]
    data = make_dataset(root, f"data-{n_entities}x{N_WEEKS}", n_entities, N_WEEKS)
    config = make_config(config_dict(data, root / f"w4-{mode}", RIDGE, mode))
    say(f"W4: training {n_entities} entities ({mode}) first, not timed ...")
    job = timed_train(config)
    return config if job.ok and job.trained else None


def champion_models(config: Any) -> dict[str, Any]:
    """Every entity's champion model from a ``per_entity`` store, through MLflow's client."""
    from mlflow import MlflowClient

    from manymodels.artifacts.entity_folder import load_entity_model

    uri = f"sqlite:///{Path(config.work_dir) / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champions: dict[str, str] = {}
    token = None
    while True:
        page = client.search_registered_models(f"name LIKE '{PREFIX}.%'", max_results=1000,
                                               page_token=token)  # fmt: skip
        champions.update({m.name: str(m.aliases["champion"]) for m in page
                          if "champion" in (m.aliases or {})})  # fmt: skip
        token = page.token
        if not token:
            break
    sources: dict[str, str] = {}
    token = None
    while True:
        page = client.search_model_versions(f"name LIKE '{PREFIX}.%'", max_results=10_000,
                                            page_token=token)  # fmt: skip
        sources.update({v.name: v.source for v in page if champions.get(v.name) == str(v.version)})
        token = page.token
        if not token:
            break
    return {name: load_entity_model(unquote(urlparse(source).path))
            for name, source in sources.items()}  # fmt: skip


def _forecast_loop(config: Any) -> tuple[float, int]:
    """Forecast every entity in this process from models and rows already in memory."""
    from threadpoolctl import threadpool_limits

    from manymodels.naming import model_name
    from manymodels.timeseries import future_frame, regularize

    models = champion_models(config)
    loaded = preload(config)
    data = config.data
    pairs = [(models.get(model_name(PREFIX, keys)), frame) for keys, frame in loaded.frames]
    ok = 0
    with threadpool_limits(1):
        started = time.perf_counter()
        for model, frame in pairs:
            if model is None:
                continue
            try:
                series = regularize(frame, data.time_col, data.target_col, list(data.exog_cols),
                                    model.context.freq, data.fill_missing)  # fmt: skip
                future = future_frame(series.history, series.future, data.time_col,
                                      list(data.exog_cols), series.freq, config.horizon)  # fmt: skip
                model.forecast(history=series.history, future=future)
                ok += 1
            except Exception:  # a bad entity fails alone, as in the job
                pass
        seconds = time.perf_counter() - started
    say(f"sequential forecast loop: {ok} of {len(pairs)} in {seconds:.2f} s")
    return seconds, ok
