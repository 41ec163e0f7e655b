"""Context: the W1 work done "the tutorial way", on a small sample, extrapolated.

Per entity: fit (the same ``fit_entity`` work), an MLflow run with params and metrics, and
``mlflow.sklearn.log_model(..., registered_model_name=...)`` letting MLflow infer the pip
requirements, as tutorials do (no ``input_example``, which would only add time). Reported as
seconds per model and extrapolated to the W1 size.
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

from _common import (
    N_WORKERS,
    REFERENCE,
    RIDGE,
    Outcome,
    Row,
    config_dict,
    fit_all,
    make_config,
    make_dataset,
    preload,
    say,
)

N_WEEKS = 156


def run(root: Path, n_entities: int, state: dict[str, Any], extrapolate_to: int) -> Outcome:
    data = make_dataset(root, f"data-{n_entities}x{N_WEEKS}", n_entities, N_WEEKS)
    work_dir = root / "tutorial"
    loaded = preload(make_config(config_dict(data, work_dir, RIDGE)))
    fit_seconds = _fit_only(loaded)
    times = _tutorial_loop(loaded, work_dir)
    per_model = statistics.fmean(times)
    extrapolated = per_model * extrapolate_to
    floor_per_entity = state.get("w1", {}).get("floor_per_entity_s")
    floor_source = "W1's floor"
    if floor_per_entity is None:
        floor_per_entity = fit_seconds / len(loaded.frames) / N_WORKERS
        floor_source = f"the fit-only time of the same {len(loaded.frames)} entities"
    row = Row(
        workload="ctx: tutorial MLflow loop",
        entities=extrapolate_to, entities_label=f"{extrapolate_to:,} (from {len(times)})",
        floor_s=floor_per_entity * extrapolate_to, seconds=extrapolated, rate=1 / per_model,
        detail=f"{per_model:.2f} s/model",
        reference=f"~{REFERENCE['tutorial_seconds_per_model']} s/model",
        extra={"sample": len(times), "seconds_per_model": per_model,
               "median_seconds_per_model": statistics.median(times),
               "first_model_s": times[0], "sample_fit_only_s": fit_seconds,
               "floor_from": floor_source},
    )  # fmt: skip
    note = (f"tutorial loop: {per_model:.2f} s per model (median {statistics.median(times):.2f}, "
            f"first {times[0]:.2f}) on {len(times)} entities, extrapolated to "
            f"{extrapolate_to:,}; floor from {floor_source}")  # fmt: skip
    return Outcome([row], [note])


def _fit_only(loaded: Any) -> float:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        started = time.perf_counter()
        fit_all(loaded.frames, loaded.spec)
        return time.perf_counter() - started


def _tutorial_loop(loaded: Any, work_dir: Path) -> list[float]:
    import mlflow
    import mlflow.sklearn
    from threadpoolctl import threadpool_limits

    from manymodels.fitting import fit_entity
    from manymodels.naming import entity_slug

    work_dir.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work_dir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("tutorial", (work_dir / "mlartifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    params = {key: str(value) for key, value in loaded.params.items()}
    times = []
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for keys, frame in loaded.frames:
            slug = entity_slug(keys)
            started = time.perf_counter()
            try:
                with mlflow.start_run(run_name=slug):
                    fit = fit_entity(frame, keys, loaded.spec)
                    mlflow.log_params(params)
                    mlflow.log_metrics(fit.metrics)
                    mlflow.sklearn.log_model(fit.model.model.estimator, name="model",
                                             registered_model_name=f"tutorial.{slug}")  # fmt: skip
            except Exception as exc:  # a short series, as in the job: not a model
                say(f"tutorial loop: {slug} failed ({type(exc).__name__}); not counted")
                continue
            times.append(time.perf_counter() - started)
            say(f"tutorial loop: model {len(times)} in {times[-1]:.2f} s")
    return times
