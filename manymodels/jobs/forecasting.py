"""The batch forecasting job.

Looks up every entity's model version in bulk, forecasts on the workers from each entity's
latest data (and known future exogenous values), and writes partitioned Parquet: workers write
into a staging folder, which replaces the output folder at the end, unless more entities failed
than the failure budget allows.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import re
import time
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING

import fsspec
import pandas as pd

from manymodels.config import Config
from manymodels.crashes import WorkerCrash, blame
from manymodels.data import (
    Partition,
    check_columns,
    discover_partitions,
    integer_columns,
    key_types,
)
from manymodels.engine import cluster_in_background, halves, map_batches, worker_count
from manymodels.errors import JobError, ManyModelsError
from manymodels.exploration.frames import with_frame
from manymodels.guard import Failure, failure_from
from manymodels.inputs import validate_inputs
from manymodels.jobs.budget import allowed_failures
from manymodels.jobs.forecast_models import EntityModels, ModelRefs
from manymodels.jobs.modes import mode_of
from manymodels.jobs.preload import worker_modules
from manymodels.jobs.results import ForecastResult, failures_table
from manymodels.keys import KeyType
from manymodels.mainguard import require_main_guard
from manymodels.naming import model_name
from manymodels.outcomes import EntityResult
from manymodels.outputs import check_output, remove_dir, replace_dir, start_staging
from manymodels.report import announce_dashboard, progress_bar
from manymodels.tasks import ForecastTask, forecast_batch
from manymodels.tracking.registry import Registry
from manymodels.tracking.runs import JobRun, open_job_run, retire_abandoned
from manymodels.tracking.store import open_tracking

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["forecast"]

# A batch of partitions with their models, and the id that names its output files.
Indexed = tuple[str, list[tuple[Partition, ModelRefs]]]


def forecast(
    config: Config,
    *,
    alias: str | None = None,
    version: int | None = None,
    output: str | None = None,
    horizon: int | None = None,
    progress: bool = False,
    data: pd.DataFrame | None = None,
) -> ForecastResult:
    """Forecast every entity with its registered model and write partitioned Parquet.

    The forecasts replace the output folder as a whole, and only when no more entities failed
    than the failure budget allows; otherwise the previous output stays as it was.

    Args:
        config: the job configuration.
        alias: the registry alias to use (``forecast.alias``, ``champion`` by default).
        version: a version number to use instead of an alias.
        output: the output folder (``forecast.output`` by default): absent, empty, or an earlier
            output of manymodels, apart from ``data.path``.
        horizon: periods to forecast (``horizon`` by default).
        progress: draw a progress bar on stderr.
        data: a long DataFrame to forecast from instead of ``data.path`` (staged as for
            :func:`~manymodels.train`).

    Returns:
        The outcome (``read()`` gives the forecasts as a DataFrame); the forecasts have the entity keys, the time column, ``prediction``,
        ``model_name`` and ``model_version``.

    Raises:
        ConfigError: the output folder overlaps ``data.path`` or holds something manymodels did
            not write (checked before anything runs).
        RegistryError: no model has the alias or version.
        JobError: no entity could be forecast, or more failed than the failure budget allows;
            nothing was published.
    """
    started = time.perf_counter()
    config = with_frame(config, data)
    require_main_guard(config.compute.scheduler is None, "manymodels.forecast()")
    if version is None and alias is None:
        alias = config.forecast.alias
    target = output or config.forecast.output
    _check_target(config, target, "output" if output else "forecast.output")
    inputs = validate_inputs(config, needs_template=False)
    future = _future_partitions(config)
    with cluster_in_background(config.compute, worker_modules(config),
                               dashboard=progress) as pending:  # fmt: skip
        session = open_tracking(config)
        try:
            refs = mode_of(config).entity_models(session.registry, config, alias, version)
        except ManyModelsError as exc:
            raise type(exc)(f"{config.label()}: {exc}") from None
        items, orphans = _assign(inputs.partitions, refs, config)
        retire_abandoned(session, "forecast")
        job = open_job_run(session, config, "forecast", uuid.uuid4().hex, None, fresh=True)
        job.log_config(config, {"alias": alias, "version": version})
        staging = start_staging(target)
        task = ForecastTask(
            config, staging, horizon or config.horizon, _key_types(refs, inputs.partitions, config),
            session.target.tracking_uri, future_partitions=future,
        )  # fmt: skip
        try:
            results = _forecast_batches(items, task, config, progress, pending.client())
            results = _without_alias(results, session.registry, alias, version)
            pending.release()
            result = _result(job.job_id, job.run_id, target, results + orphans, started)
            refusal = _refusal(result, config)
            _publish(staging, target, refusal)
        except BaseException:
            job.end("KILLED")
            remove_dir(staging)
            raise
        _log(job, result, config, published=refusal is None)
    if refusal:
        raise _not_published(result, config, refusal)
    return result


def _future_partitions(config: Config) -> dict[tuple[tuple[str, str], ...], Partition] | None:
    """The partitions of ``forecast.future_path`` by their keys, checked like the data's."""
    path = config.forecast.future_path
    if path is None:
        return None
    data = config.data
    try:
        partitions = discover_partitions(path, data.partition_by, data.storage_options)
        required = {col: "data.exog_cols" for col in data.exog_cols}
        required[data.time_col] = "data.time_col"
        check_columns(partitions[0], required, list(data.exog_cols), data.storage_options)
    except ManyModelsError as exc:
        raise type(exc)(f"{config.label()}: forecast.future_path: {exc}") from None
    return {partition.keys: partition for partition in partitions}


def _check_target(config: Config, target: str, what: str) -> None:
    """Refuse, before anything runs, an output whose replacement would delete data."""
    try:
        check_output(target, what, {"data.path": config.data.path})
    except ManyModelsError as exc:
        raise type(exc)(f"{config.label()}: {exc}") from None


def _key_types(
    refs: EntityModels, partitions: list[Partition], config: Config
) -> dict[str, KeyType]:
    """How the output holds each key column: typed as the data files declare the entity
    columns they hold, and the partition columns from their values."""
    values: dict[str, set[str]] = defaultdict(set)
    for keys, _ in refs.values():
        for column, value in keys.items():
            values[column].add(value)
    inside = [col for col in config.data.entity_cols if col not in config.data.partition_by]
    declared = {}
    if inside and partitions:
        with contextlib.suppress(Exception):  # an unreadable footer fails its own entities later
            declared = integer_columns(partitions[0], inside, config.data.storage_options)
    return key_types(values, declared)


def _result(
    job_id: str, run_id: str, target: str, results: list[EntityResult], started: float
) -> ForecastResult:
    entities = pd.DataFrame([result.row() for result in results])
    rows = int(sum(result.forecast_rows for result in results))
    return ForecastResult(job_id, run_id, target, entities, rows, time.perf_counter() - started)


def _refusal(result: ForecastResult, config: Config) -> str | None:
    """Why the forecasts must not replace the previous output, or None when they may."""
    missing = _missing_future(result.entities)
    if missing:
        return missing
    if not result.rows:
        return "no entity could be forecast"
    allowed = allowed_failures(config, result.total)
    if result.failed > allowed:
        return (
            f"{result.failed} of {result.total} entities failed to forecast, more than the "
            f"{allowed} allowed"
        )
    return None


def _missing_future(entities: pd.DataFrame) -> str | None:
    """One line on the entities whose forecast periods lack exogenous values, if any."""
    if "error_type" not in entities:
        return None
    lacking = entities[entities["error_type"] == "FutureValuesError"]
    if lacking.empty:
        return None
    named = lacking["error"].str.extract(r"no future values of ((?:'[^']*'(?:, )?)+)")[0].dropna()
    columns = sorted({column for text in named for column in re.findall(r"'([^']*)'", text)})
    return (
        f"{len(lacking)} entities lack future values of {', '.join(columns)} for the forecast "
        "periods (give them as rows after the last observed target or in forecast.future_path, "
        "or set data.future_exog: carry_forward)"
    )


def _publish(staging: str, target: str, refusal: str | None) -> None:
    if refusal is None:
        replace_dir(staging, target)
    else:
        remove_dir(staging)


def _not_published(result: ForecastResult, config: Config, refusal: str) -> JobError:
    # A refusal for missing future values names its cause already; others quote the failures.
    lacking = _missing_future(result.entities) is not None
    digest = [] if lacking else result.failure_digest(limit=1)
    common = f" Most common failure: {digest[0].rstrip('.')}." if digest else ""
    names = result.failures_named()
    named = f" Failed: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}." if names else ""
    return JobError(
        f"{config.label()}: {refusal}, so nothing was published and the previous output at "
        f"{result.output} was left as it was.{common}{named} See failures.csv in run "
        f"{result.run_id}."
    )


def _assign(
    partitions: list[Partition], refs: EntityModels, config: Config
) -> tuple[list[tuple[Partition, ModelRefs]], list[EntityResult]]:
    """Pair every partition with the models of its entities; list models without data."""
    by_partition: dict[tuple[tuple[str, str], ...], ModelRefs] = defaultdict(dict)
    for name, (keys, ref) in refs.items():
        by_partition[tuple((col, keys.get(col, "")) for col in config.data.partition_by)][name] = (
            ref
        )
    items = [(partition, by_partition.pop(partition.keys, {})) for partition in partitions]
    orphans = []
    for models in by_partition.values():
        for name in models:
            failure = Failure("lookup", "DataError", "registered model has no data partition", "")
            orphans.append(EntityResult(refs[name][0], name, "failed", failure=failure))
    return items, orphans


def _without_alias(
    results: list[EntityResult], registry: Registry, alias: str | None, version: int | None
) -> list[EntityResult]:
    """Entities whose registered model lacks the alias or version asked for are failures, not
    entities without a model: a model that lost ``champion`` must not drop out unnoticed."""
    if not any(result.status == "no_model" for result in results):
        return results
    models = registry.models()
    what = f"alias '{alias}'" if alias is not None else f"version {version}"
    hint = (
        "Hint: rerun the training command to finish its job, or set the alias with "
        "MlflowClient().set_registered_model_alias."
        if alias is not None
        else "Hint: forecast with --alias, or with a version every model has."
    )
    failure = Failure("lookup", "RegistryError", f"the registered model has no {what}. {hint}", "")
    return [
        EntityResult(result.keys, result.name, "failed", failure=failure)
        if result.status == "no_model" and result.name in models
        else result
        for result in results
    ]


def _forecast_batches(
    items: list[tuple[Partition, ModelRefs]], task: ForecastTask, config: Config, progress: bool,
    client: Client,
) -> list[EntityResult]:  # fmt: skip
    results: list[EntityResult] = []
    announce_dashboard(client, progress)
    batches = mode_of(config).forecast_batches(items, worker_count(client), config)
    name = f"forecast-{uuid.uuid4().hex[:8]}"
    with progress_bar("forecast", len(items), progress) as bar:
        indexed: list[Indexed] = [(str(index), batch) for index, batch in enumerate(batches)]
        split = functools.partial(_split_indexed, task.staging)
        outcomes = map_batches(client, _forecast_indexed, indexed, task, name=name, split=split)
        for (index, batch), outcome in outcomes:
            if isinstance(outcome, WorkerCrash):
                _discard_files(task.staging, index)
            if not isinstance(outcome, list):
                outcome = _task_failed(batch, outcome, config)
            ok = sum(result.status == "ok" for result in outcome)
            failed = sum(result.status == "failed" for result in outcome)
            bar.advance(len(batch), ok, failed)
            results.extend(outcome)
    return results


def _forecast_indexed(indexed: Indexed, task: ForecastTask) -> list[EntityResult]:
    index, batch = indexed
    return forecast_batch(batch, task, batch_id=index)


def _split_indexed(staging: str, indexed: Indexed) -> list[Indexed]:
    """Halves of a batch whose task was lost, each with an id of its own for its files.

    Whatever the lost task had written goes: its halves write their rows again.
    """
    index, batch = indexed
    parts = halves(batch)
    if len(parts) < 2:
        return [indexed]
    _discard_files(staging, index)
    return [(f"{index}.{number}", part) for number, part in enumerate(parts)]


def _discard_files(staging: str, index: str) -> None:
    """Remove the files that the task of batch ``index`` wrote, perhaps only in part, before
    its process died."""
    fs, root = fsspec.core.url_to_fs(staging)
    for path in fs.glob(f"{root.rstrip('/')}/**/part-{glob.escape(index)}-0.parquet"):
        with contextlib.suppress(OSError):
            fs.rm(path)


def _task_failed(
    batch: list[tuple[Partition, ModelRefs]], exc: BaseException, config: Config
) -> list[EntityResult]:
    if len(batch) == 1:
        exc = blame(exc, batch[0][0].key_dict)
    failure = failure_from("task", exc)
    prefix = config.tracking.model_prefix
    return [
        EntityResult(
            partition.key_dict, model_name(prefix, partition.key_dict), "failed", failure=failure
        )  # fmt: skip
        for partition, _ in batch
    ]


def _log(job: JobRun, result: ForecastResult, config: Config, published: bool) -> None:
    job.log_table(result.entities, "entity_results.parquet")
    if result.failed:
        job.log_table(failures_table(result.entities, config.data.entity_cols), "failures.csv")
    metrics = {"entities_total": result.total, "entities_forecast": result.forecast,
               "entities_failed": result.failed, "rows": result.rows, "seconds": result.seconds,
               "entities_per_second": result.forecast / result.seconds if result.seconds else 0.0,
               "entities_carried_forward": result.carried_forward}  # fmt: skip
    job.log_metrics(metrics)
    job.log_json({**metrics, "output": result.output, "published": published}, "summary.json")
    job.end("FINISHED" if published else "FAILED")
