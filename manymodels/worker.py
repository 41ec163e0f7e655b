"""What runs on a Dask worker: train or forecast one batch of partitions.

A task receives partition keys and file names, never data: it reads its own partitions,
handles each entity inside its own error guard, writes models or forecasts, and returns small
:class:`EntityResult` records. Nothing here raises for one bad entity, and nothing here touches
the tracking store or the registry (that is the driver's job).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from manymodels import data as data_io
from manymodels.config import Config
from manymodels.data import Partition
from manymodels.entity_model import PREDICTION_COL, EntityModel
from manymodels.fitting import EntityFit, FitSpec, fit_entity, score_model
from manymodels.guard import Failure, call_with_limits, failure_from
from manymodels.naming import entity_slug, model_name
from manymodels.secrets import scrub_row
from manymodels.templates import TemplateSource, load_template
from manymodels.timeseries import future_frame, regularize

__all__ = ["EntityResult", "TrainTask", "ForecastTask", "train_batch", "forecast_batch"]


@dataclass(frozen=True)
class Champion:
    """The current champion of an entity, for a retrain to compare against."""

    version: int
    source: str
    tags: Mapping[str, str]


@dataclass(frozen=True)
class TrainTask:
    """Everything a training task needs besides its partitions.

    ``artifact_dir`` is unique to each driver session of a job, so the tasks of a resumed job
    never write over the files of a killed session's stragglers.
    """

    config: Config
    template: TemplateSource
    params: Mapping[str, Any]
    artifact_uri: str
    pip_requirements: list[str]
    artifact_dir: str = "models"
    skip: frozenset[str] = frozenset()
    champions: Mapping[str, Champion] = field(default_factory=dict)


@dataclass
class EntityResult:
    """The outcome for one entity, sent back to the driver."""

    keys: dict[str, str]
    name: str
    status: str
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    fingerprint: str | None = None
    observations: int | None = None
    filled: int | None = None
    holdout_start: str | None = None
    trained_until: str | None = None
    artifact_path: str | None = None
    failure: Failure | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    forecast_rows: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict[str, Any]:
        """A flat record for the job's results table."""
        row: dict[str, Any] = {**self.keys, "model_name": self.name, "status": self.status}
        row.update({k: v for k, v in self.metrics.items()})
        row.update({f"champion_{k}": v for k, v in self.champion_metrics.items()})
        row.update(
            observations=self.observations, filled=self.filled, fingerprint=self.fingerprint,
            holdout_start=self.holdout_start, trained_until=self.trained_until,
            seconds=round(self.seconds, 4),
        )  # fmt: skip
        if self.failure:
            row.update(stage=self.failure.stage, error_type=self.failure.error_type,
                       error=self.failure.message, traceback=self.failure.traceback)  # fmt: skip
        return scrub_row(row)


def fit_spec(config: Config, template_source: TemplateSource, params: Mapping[str, Any]) -> FitSpec:
    """The fitting specification of a job, built on the worker from the config."""
    data = config.data
    return FitSpec(
        template=load_template(template_source),
        params=dict(params),
        time_col=data.time_col,
        target_col=data.target_col,
        exog_cols=tuple(data.exog_cols),
        freq=data.freq,
        fill_missing=data.fill_missing,
        horizon=config.horizon,
        holdout=config.holdout,
        refit=config.evaluation.refit,
        season_length=config.evaluation.season_length,
    )


def train_batch(partitions: list[Partition], task: TrainTask) -> list[EntityResult]:
    """Train every entity of some partitions; upload their models in one go.

    Returns:
        One result per entity (or per unreadable partition).
    """
    from manymodels.flavor import ModelWriter
    from manymodels.tracking import upload_dir

    spec = fit_spec(task.config, task.template, task.params)
    results: list[EntityResult] = []
    with tempfile.TemporaryDirectory(prefix="manymodels-") as staging, ModelWriter(
        task.pip_requirements
    ) as writer:
        for keys, frame, failure in _entities(partitions, task.config):
            if failure is not None:
                results.append(_failed(task.config, keys, failure))
                continue
            name = model_name(task.config.tracking.model_prefix, keys)
            if name in task.skip:
                continue
            results.append(_train_entity(keys, name, frame, spec, task, writer, staging))
        saved = [result for result in results if result.artifact_path]
        if saved:
            try:
                upload_dir(task.artifact_uri, staging, task.artifact_dir)
            except Exception as exc:  # one failed upload fails this batch's entities only
                for result in saved:
                    result.status, result.artifact_path = "failed", None
                    result.failure = failure_from("upload", exc)
    return results


@dataclass(frozen=True)
class ForecastTask:
    """Everything a forecasting task needs besides its partitions and model versions."""

    config: Config
    staging: str
    horizon: int


def forecast_batch(
    items: list[tuple[Partition, dict[str, tuple[str, int, str]]]], task: ForecastTask, batch_id: str
) -> list[EntityResult]:
    """Forecast every entity of some partitions with its registered model.

    Args:
        items: partitions, each with ``{model name: (name, version, source)}`` of its entities.
        task: the forecast settings and the staging folder to write into.
        batch_id: names this batch's output files, so a repeated task replaces them.
    """
    config = task.config
    results: list[EntityResult] = []
    frames: list[pd.DataFrame] = []
    models_of = {name: ref for _, refs in items for name, ref in refs.items()}
    for keys, frame, failure in _entities([partition for partition, _ in items], config):
        name = model_name(config.tracking.model_prefix, keys)
        if failure is not None:
            results.append(_failed(config, keys, failure))
            continue
        ref = models_of.get(name)
        if ref is None:
            results.append(EntityResult(keys, name, "no_model"))
            continue
        started = time.perf_counter()
        try:
            predictions = _forecast_entity(ref, frame, config, task.horizon)
        except BaseException as exc:  # noqa: BLE001 - one entity's failure is recorded, not raised
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            results.append(_failed(config, keys, failure_from("forecast", exc)))
            continue
        for key, value in keys.items():
            predictions.insert(0, key, value)
        predictions["model_name"], predictions["model_version"] = ref[0], ref[1]
        frames.append(predictions)
        results.append(EntityResult(keys, name, "ok", time.perf_counter() - started,
                                    forecast_rows=len(predictions)))  # fmt: skip
    if frames:
        columns = [*config.data.entity_cols, config.data.time_col, PREDICTION_COL,
                   "model_name", "model_version"]  # fmt: skip
        output = pd.concat(frames, ignore_index=True)[columns]
        data_io.write_partitioned(output, task.staging, config.data.partition_by, f"part-{batch_id}")
    return results


def _forecast_entity(
    ref: tuple[str, int, str], frame: pd.DataFrame, config: Config, horizon: int
) -> pd.DataFrame:
    model = _load_model(ref[2])
    data = config.data
    series = regularize(frame, data.time_col, data.target_col, list(data.exog_cols),
                        model.context.freq, data.fill_missing)  # fmt: skip
    future = future_frame(series.history, series.future, data.time_col, list(data.exog_cols),
                          series.freq, horizon)  # fmt: skip
    return model.forecast(history=series.history, future=future)


def _load_model(source: str) -> EntityModel:
    from manymodels.flavor import load_entity_model

    if source.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return load_entity_model(unquote(urlparse(source).path))
    if os.path.isabs(source):
        return load_entity_model(source)
    import mlflow

    return load_entity_model(mlflow.artifacts.download_artifacts(artifact_uri=source))


def _train_entity(
    keys: dict[str, str], name: str, frame: pd.DataFrame, spec: FitSpec, task: TrainTask,
    writer: Any, staging: str,
) -> EntityResult:
    config = task.config
    started = time.perf_counter()
    data = config.data
    fingerprint = data_io.fingerprint(frame, [data.time_col, data.target_col, *data.exog_cols])
    champion = task.champions.get(name)
    if champion is not None and _unchanged(champion, fingerprint, task):
        return EntityResult(keys, name, "skipped", fingerprint=fingerprint)
    failures = config.failures
    slug = entity_slug(keys)
    stage = "train"
    try:
        fit: EntityFit = call_with_limits(
            lambda: fit_entity(frame, keys, spec),
            timeout=failures.entity_timeout, retries=failures.retries, backoff=failures.retry_backoff,
        )  # fmt: skip
        stage = "save"
        writer.save(fit.model, os.path.join(staging, slug))
    except BaseException as exc:  # noqa: BLE001 - one entity's failure is recorded, not raised
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        result = _failed(config, keys, failure_from(stage, exc))
        result.fingerprint, result.seconds = fingerprint, time.perf_counter() - started
        return result
    result = EntityResult(
        keys=keys, name=name, status="ok", seconds=time.perf_counter() - started,
        metrics=fit.metrics, fingerprint=fingerprint, observations=fit.observations,
        filled=fit.filled, holdout_start=fit.holdout_start.isoformat(),
        trained_until=fit.trained_until.isoformat(), artifact_path=f"{task.artifact_dir}/{slug}",
    )  # fmt: skip
    if champion is not None:
        result.champion_metrics = _champion_metrics(champion, frame, spec, fit)
    return result


def _unchanged(champion: Champion, fingerprint: str, task: TrainTask) -> bool:
    from manymodels.registry import TAG_PREFIX

    tags = champion.tags
    return (
        tags.get(f"{TAG_PREFIX}data_fingerprint") == fingerprint
        and tags.get(f"{TAG_PREFIX}template_digest") == task.template.digest
        and tags.get(f"{TAG_PREFIX}params_digest") == params_digest(task.params, task.config)
    )


def params_digest(params: Mapping[str, Any], config: Config) -> str:
    """A hash of everything besides data and code that shapes a model."""
    import hashlib
    import json

    shaping = {"params": params, "horizon": config.horizon, "holdout": config.holdout,
               "refit": config.evaluation.refit, "data": config.data.model_dump(exclude={"path",
               "storage_options"})}  # fmt: skip
    text = json.dumps(shaping, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _champion_metrics(
    champion: Champion, frame: pd.DataFrame, spec: FitSpec, fit: EntityFit
) -> dict[str, float]:
    """The champion's metrics on the challenger's holdout; empty when it cannot be scored."""
    from manymodels.registry import TAG_PREFIX

    tags = champion.tags
    if tags.get(f"{TAG_PREFIX}holdout_start") == fit.holdout_start.isoformat():
        # Same holdout as when the champion was trained: its recorded, out-of-sample score.
        recorded = {
            name: float(tags[f"{TAG_PREFIX}metric.{name}"])
            for name in fit.metrics
            if f"{TAG_PREFIX}metric.{name}" in tags
        }
        if len(recorded) == len(fit.metrics):
            return recorded
    try:
        metrics, _ = score_model(_load_model(champion.source), frame, spec)
    except Exception:  # a champion that cannot forecast any more loses to the challenger
        return {}
    return metrics


def _entities(
    partitions: list[Partition], config: Config
) -> Iterator[tuple[dict[str, str], pd.DataFrame, Failure | None]]:
    data = config.data
    columns = [*data.entity_cols, data.time_col, data.target_col, *data.exog_cols]
    extra = [col for col in data.entity_cols if col not in data.partition_by]
    for partition in partitions:
        try:
            frame = data_io.read_partition(partition, columns, data.storage_options)
            missing = [col for col in columns if col not in frame.columns]
            if missing:
                raise KeyError(f"column '{missing[0]}' is missing from this partition's files")
        except Exception as exc:  # a corrupt or odd partition fails alone
            yield partition.key_dict, pd.DataFrame(), failure_from("read", exc)
            continue
        if not extra:
            yield partition.key_dict, frame, None
            continue
        for values, group in frame.groupby(extra, dropna=False, sort=True):
            values = values if isinstance(values, tuple) else (values,)
            keys = {**partition.key_dict, **{col: str(v) for col, v in zip(extra, values)}}
            yield {col: keys[col] for col in data.entity_cols}, group, None


def _failed(config: Config, keys: dict[str, str], failure: Failure) -> EntityResult:
    return EntityResult(
        keys=keys, name=model_name(config.tracking.model_prefix, keys), status="failed",
        failure=failure,
    )  # fmt: skip
