"""The training task: fit every entity of a batch of partitions and store their models."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from manymodels import lineage
from manymodels.artifacts.bundle import split_location
from manymodels.artifacts.loader import ModelLoader
from manymodels.artifacts.model_files import ModelFiles
from manymodels.artifacts.sinks import EntityFolders, Shard, open_sink
from manymodels.calibration import RatioHistogram
from manymodels.candidates import ModelPlan
from manymodels.config import Config
from manymodels.data import Partition
from manymodels.entity_model import EntityModel
from manymodels.fitting import (
    Backtested,
    EntityFit,
    FitSpec,
    backtest_entity,
    fit_entity,
    score_model,
)  # fmt: skip
from manymodels.guard import Failure, call_with_limits, failure_from
from manymodels.intervals import Calibration
from manymodels.naming import entity_slug, model_name
from manymodels.outcomes import Champion, EntityResult, Selection, failed
from manymodels.promotion import challenger_wins
from manymodels.tasks.entities import entity_fingerprint, fit_spec, iter_entities
from manymodels.tasks.unchanged import PartitionKeys, stamp_sources

__all__ = [
    "PanelEvidence", "TrainTask", "backtest_batch", "backtest_evidence", "params_digest",
    "train_batch",
]  # fmt: skip


@dataclass(frozen=True)
class TrainTask:
    """Everything a training task needs besides its partitions.

    ``artifact_dir`` is unique to each driver session of a job, so the tasks of a resumed job
    never write over the files of a killed session's stragglers. ``tracking_uri`` lets a
    worker reach a server's artifact store. ``skip`` names entities that already have a
    version from this job; ``champions`` are compared against (retrain). ``carry`` names,
    per partition, the champions that a job bundle carries over without the partition being
    read. ``new_versions`` registers a forced retrain's models even where data, code and
    params equal the champion's. ``prior`` and ``calibration`` are the job's (see
    :mod:`manymodels.jobs.prior_phase`), or those of the job named by ``panel_from``.
    """

    config: Config
    template: ModelPlan
    params: Mapping[str, Any]
    artifact_uri: str
    model_files: ModelFiles
    artifact_dir: str = "models"
    tracking_uri: str | None = None
    skip: frozenset[str] = frozenset()
    champions: Mapping[str, Champion] = field(default_factory=dict)
    force: bool = False
    carry: Mapping[PartitionKeys, tuple[str, ...]] = field(default_factory=dict)
    new_versions: bool = False
    prior: Mapping[str, float] = field(default_factory=dict)
    calibration: Calibration = ()
    panel_from: str | None = None


Backtests = Mapping[str, Backtested | Failure]
"""What a job's first phase leaves for its training tasks: each entity's backtests, or why
they failed (the training records the failure without trying again)."""


def backtest_batch(
    partitions: list[Partition], task: TrainTask
) -> dict[str, Backtested | Failure]:
    """The first phase of a job that chooses with a prior: backtest every entity that
    :func:`train_batch` would train, and keep the backtests for it (see
    :mod:`manymodels.priors`), or the failure of an entity whose backtests failed.
    """
    config = task.config
    spec = fit_spec(config, task.template)
    backtests: dict[str, Backtested | Failure] = {}
    to_read = [partition for partition in partitions if partition.keys not in task.carry]
    for keys, frame, failure in iter_entities(to_read, config):
        name = model_name(config.tracking.model_prefix, keys)
        if failure is not None or name in task.skip or _kept_as_is(
            task.champions.get(name), entity_fingerprint(frame, config), task
        ):  # fmt: skip
            continue
        try:
            backtests[name] = call_with_limits(
                functools.partial(backtest_entity, frame, keys, spec),
                timeout=config.failures.entity_timeout, retries=config.failures.retries,
                backoff=config.failures.retry_backoff,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - recorded by the training task
            backtests[name] = failure_from("train", exc)
    return backtests


@dataclass
class PanelEvidence:
    """What the driver needs of a batch's backtests to make the job's prior and calibration.

    Attributes:
        relative: each entity's relative candidate scores (see :mod:`manymodels.priors`).
        ratios: the entities' forward ratios (see :mod:`manymodels.calibration`).
    """

    relative: list[dict[str, float]] = field(default_factory=list)
    ratios: RatioHistogram = field(default_factory=RatioHistogram)


def backtest_evidence(backtests: Backtests) -> PanelEvidence:
    """What a batch's backtests say of the panel, computed where they are kept."""
    evidence = PanelEvidence()
    for backtested in backtests.values():
        if isinstance(backtested, Backtested):
            evidence.relative.append(backtested.relative_scores())
            evidence.ratios.add(backtested.forward_ratios())
    return evidence


def train_batch(
    partitions: list[Partition], task: TrainTask, backtests: Backtests | None = None
) -> list[EntityResult]:
    """Train every entity of some partitions; upload their models in one go.

    Args:
        backtests: entities' backtests from :func:`backtest_batch`, by model name; the others
            are backtested here.

    Returns:
        One result per entity (or per unreadable partition).
    """
    config = task.config
    spec = fit_spec(config, task.template)
    if task.prior or task.calibration:
        spec = replace(spec, prior=task.prior, calibration=task.calibration)
    batch_key = repr(sorted(partition.keys for partition in partitions))
    sink = open_sink(config.tracking.registration, task.artifact_uri, task.artifact_dir,
                     task.model_files, batch_key, task.tracking_uri)  # fmt: skip
    loader = ModelLoader(task.tracking_uri)
    results: list[EntityResult] = []
    to_read = [partition for partition in partitions if partition.keys not in task.carry]
    if isinstance(sink, Shard):
        for shard_uri in _old_shards(partitions, task):
            sink.copy(shard_uri)
    try:
        for keys, frame, failure in iter_entities(to_read, config):
            name = model_name(config.tracking.model_prefix, keys)
            if failure is not None:
                results.append(failed(keys, name, failure))
            elif name not in task.skip:
                backtested = backtests.get(name) if backtests else None
                results.append(_train_entity(keys, name, frame, spec, task, sink, loader,
                                             backtested))  # fmt: skip
        stamp_sources(results, to_read, config.data.partition_by, task.template.digest,
                      params_digest(task.params, config))  # fmt: skip
        for partition in partitions:
            results.extend(_carry_partition(partition, task, sink, loader))
        _upload(sink, results)
    finally:
        sink.close()
    return results


def params_digest(params: Mapping[str, Any], config: Config) -> str:
    """A hash of everything besides data and code that shapes a model."""
    shaping = {"params": params, "horizon": config.horizon, "holdout": config.holdout,
               "refit": config.evaluation.refit, "windows": config.evaluation.windows,
               "step": config.evaluation.step, "metric": config.evaluation.metric,
               "data": config.data.model_dump(exclude={"path", "storage_options"})}  # fmt: skip
    text = json.dumps(shaping, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _upload(sink: EntityFolders | Shard, results: list[EntityResult]) -> None:
    stored = [result for result in results if result.artifact_path]
    if not stored:
        return
    try:
        sink.upload()
    except Exception as exc:  # one failed upload fails this batch's entities only
        failure = failure_from("upload", exc)
        for result in stored:
            result.status, result.artifact_path, result.failure = "failed", None, failure


def _train_entity(
    keys: dict[str, str], name: str, frame: pd.DataFrame, spec: FitSpec, task: TrainTask,
    sink: EntityFolders | Shard, loader: ModelLoader,
    backtested: Backtested | Failure | None = None,
) -> EntityResult:  # fmt: skip
    config = task.config
    started = time.perf_counter()
    fingerprint = entity_fingerprint(frame, config)
    champion = task.champions.get(name)
    slug = entity_slug(keys)
    same = champion is not None and _unchanged(champion, fingerprint, task)
    if champion is not None and _kept_as_is(champion, fingerprint, task):
        return _carry_over(keys, name, slug, champion, sink, loader, fingerprint, "skipped")
    if isinstance(backtested, Failure):  # the first phase tried, within the same limits
        return _failed_entity(keys, name, backtested, fingerprint, champion, slug, sink, loader,
                              started)  # fmt: skip
    stage = "train"
    try:
        fit: EntityFit = call_with_limits(
            lambda: fit_entity(frame, keys, spec, backtested),
            timeout=config.failures.entity_timeout,
            retries=config.failures.retries, backoff=config.failures.retry_backoff,
        )  # fmt: skip
        stage = "compare"
        outcome = _challenger(keys, name, fingerprint, fit, spec)
        if champion is not None:
            outcome.champion_metrics = _champion_metrics(
                champion, frame, spec, fit, loader, fingerprint
            )
            outcome.wins = challenger_wins(outcome.metrics, outcome.champion_metrics,
                                           config.evaluation.metric,
                                           config.retrain.min_improvement)  # fmt: skip
        stage = "save"
        if champion is not None and same and not task.new_versions:
            # Forced on the champion's own data, code and params: the comparison is recorded,
            # and the champion stays as it is instead of gaining an identical version.
            outcome.status = "skipped"
            if sink.carries_champions:
                _keep_champion(outcome, slug, champion, sink, loader)
        elif outcome.wins is False and champion is not None and sink.carries_champions:
            # A job bundle holds the better model of each entity: here, the champion's.
            outcome.artifact_path = sink.add(slug, loader.load(champion.location))
            outcome.kept = "champion"
        else:
            outcome.artifact_path = sink.add(slug, fit.model)
            outcome.kept = "challenger"
    except BaseException as exc:  # noqa: BLE001 - one entity's failure is recorded, not raised
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return _failed_entity(keys, name, failure_from(stage, exc), fingerprint, champion, slug,
                              sink, loader, started)  # fmt: skip
    outcome.seconds = time.perf_counter() - started
    return outcome


def _failed_entity(
    keys: dict[str, str], name: str, failure: Failure, fingerprint: str,
    champion: Champion | None, slug: str, sink: EntityFolders | Shard, loader: ModelLoader,
    started: float,
) -> EntityResult:  # fmt: skip
    result = failed(keys, name, failure)
    result.fingerprint = fingerprint
    if champion is not None and sink.carries_champions:
        # The new bundle still needs a model for this entity: the champion stays.
        with contextlib.suppress(Exception):
            _keep_champion(result, slug, champion, sink, loader)
    result.seconds = time.perf_counter() - started
    return result


def _challenger(
    keys: dict[str, str], name: str, fingerprint: str, fit: EntityFit, spec: FitSpec
) -> EntityResult:
    selection = Selection(
        winner=fit.winner, template=fit.model.template, metric=spec.metric,
        scores={cand: scores.get(spec.metric, math.nan) for cand, scores in fit.scores.items()},
        baseline=fit.baseline, windows=fit.windows, fallback=fit.fallback,
        coverage=fit.coverage, warnings=fit.warnings, errors=fit.errors,
        selected_by=fit.selected_by,
    )  # fmt: skip
    return EntityResult(
        keys=keys, name=name, status="ok", metrics=fit.metrics, fingerprint=fingerprint,
        observations=fit.observations, filled=fit.filled,
        holdout_start=fit.holdout_start.isoformat() if fit.holdout_start is not None else None,
        trained_until=fit.trained_until.isoformat(), selection=selection,
        backtest=fit.backtest,
    )  # fmt: skip


def _carry_over(
    keys: dict[str, str], name: str, slug: str, champion: Champion, sink: EntityFolders | Shard,
    loader: ModelLoader, fingerprint: str, status: str,
) -> EntityResult:  # fmt: skip
    result = EntityResult(keys=keys, name=name, status=status, fingerprint=fingerprint)
    if sink.carries_champions:
        try:
            _keep_champion(result, slug, champion, sink, loader)
        except Exception as exc:  # the old shard is unreadable: this entity needs a retrain
            return failed(keys, name, failure_from("carry", exc))
    return result


def _carry_partition(
    partition: Partition, task: TrainTask, sink: EntityFolders | Shard, loader: ModelLoader
) -> list[EntityResult]:
    """The champions of a partition the driver found unchanged, carried into the job bundle."""
    results = []
    for name in task.carry.get(partition.keys, ()):
        champion = task.champions[name]
        keys = {col: champion.tags.get(col, "") for col in task.config.data.entity_cols}
        fingerprint = champion.tags.get(lineage.DATA_FINGERPRINT)
        result = _carry_over(keys, name, entity_slug(keys), champion, sink, loader,
                             fingerprint or "", "skipped")  # fmt: skip
        result.unread = result.status == "skipped"
        results.append(result)
    return results


def _keep_champion(
    result: EntityResult, slug: str, champion: Champion, sink: EntityFolders | Shard,
    loader: ModelLoader,
) -> None:  # fmt: skip
    copied = sink.copied(champion.location) if isinstance(sink, Shard) else None
    result.artifact_path = copied or sink.add(slug, loader.load(champion.location))
    result.kept = "champion"


def _old_shards(partitions: list[Partition], task: TrainTask) -> list[str]:
    """The shards of the old bundle that hold the champions of ``partitions`` when every one
    of them is carried (the driver plans such tasks: see
    :meth:`manymodels.jobs.dispatch.Dispatch.tasks`); else none, and champions are loaded
    and written again one by one."""
    shards: set[str] = set()
    for partition in partitions:
        names = task.carry.get(partition.keys)
        if not names:
            return []
        shards.update(split_location(task.champions[name].location)[0] for name in names)
    return sorted(shards)


def _kept_as_is(champion: Champion | None, fingerprint: str, task: TrainTask) -> bool:
    """Whether a retrain keeps the entity's champion without training: its data, code and
    params are the champion's, and the retrain is not forced."""
    return champion is not None and not task.force and _unchanged(champion, fingerprint, task)


def _unchanged(champion: Champion, fingerprint: str, task: TrainTask) -> bool:
    tags = champion.tags
    return (
        tags.get(lineage.DATA_FINGERPRINT) == fingerprint
        and tags.get(lineage.TEMPLATE_DIGEST) == task.template.digest
        and tags.get(lineage.PARAMS_DIGEST) == params_digest(task.params, task.config)
    )


def _champion_metrics(
    champion: Champion, frame: pd.DataFrame, spec: FitSpec, fit: EntityFit, loader: ModelLoader,
    fingerprint: str,
) -> dict[str, float]:  # fmt: skip
    """The champion's metrics on the challenger's backtest windows, its own specification
    refitted at each cutoff (see :func:`~manymodels.fitting.score_model`); empty when it cannot
    be scored."""
    tags = champion.tags
    start = fit.holdout_start.isoformat() if fit.holdout_start is not None else ""
    same_windows = (tags.get(lineage.HOLDOUT_START) == start
                    and tags.get(lineage.BACKTEST_WINDOWS, str(fit.windows)) == str(fit.windows))  # fmt: skip
    if same_windows and tags.get(lineage.DATA_FINGERPRINT) == fingerprint:
        # Same data and windows as when the champion was trained: its recorded backtest is the
        # one it would get now (revised values in the holdout change the fingerprint).
        recorded = {
            metric: float(tags[lineage.metric_tag(metric)])
            for metric in fit.metrics
            if lineage.metric_tag(metric) in tags
        }
        if len(recorded) == len(fit.metrics):
            return recorded
    try:
        model: EntityModel = loader.load(champion.location)
        metrics, _ = score_model(model, frame, spec)
    except Exception:  # a champion that cannot forecast any more loses to the challenger
        return {}
    return metrics
