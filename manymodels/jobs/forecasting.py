"""The batch forecasting job.

Looks up every entity's model version in bulk, forecasts on the workers from each entity's
latest data (and known future exogenous values), and writes partitioned Parquet: workers write
into a staging folder, which replaces the output folder at the end, unless more entities failed
than the failure budget allows.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING

import pandas as pd

from manymodels import tracking
from manymodels.bundle import bundle_name, read_manifest
from manymodels.config import Config
from manymodels.data import Partition, key_types
from manymodels.engine import cluster_in_background, map_batches, worker_count
from manymodels.errors import JobError, ManyModelsError, RegistryError
from manymodels.exploration.frames import with_frame
from manymodels.guard import Failure, failure_from
from manymodels.jobs.budget import allowed_failures
from manymodels.jobs.results import ForecastResult, failures_table
from manymodels.jobs.session import (
    Tracking,
    log_config,
    open_job_run,
    open_tracking,
    validate_inputs,
    worker_modules,
)  # fmt: skip
from manymodels.mainguard import require_main_guard
from manymodels.naming import model_name
from manymodels.outcomes import EntityResult
from manymodels.outputs import check_output, remove_dir, replace_dir, staging_path
from manymodels.planning import batch_count, plan_batches
from manymodels.registry import Registry
from manymodels.report import announce_dashboard, progress_bar
from manymodels.tasks import ForecastTask, forecast_batch
from manymodels.tasks.forecasting import ModelRef

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["forecast"]

ModelRefs = dict[str, ModelRef]


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
    with cluster_in_background(config.compute, worker_modules(config)) as pending:
        session = open_tracking(config)
        try:
            refs = entity_models(session.registry, config, alias, version)
        except ManyModelsError as exc:
            raise type(exc)(f"{config.label()}: {exc}") from None
        items, orphans = _assign(inputs.partitions, refs, config)
        job = open_job_run(session, config, "forecast", uuid.uuid4().hex, None, fresh=True)
        log_config(session, job.run_id, config, {"alias": alias, "version": version})
        staging = staging_path(target)
        task = ForecastTask(
            config, staging, horizon or config.horizon, _key_types(refs),
            session.target.tracking_uri,
        )  # fmt: skip
        try:
            results = _forecast_batches(items, task, config, progress, pending.client())
            pending.release()
            result = _result(job.job_id, job.run_id, target, results + orphans, started)
            refusal = _refusal(result, config)
            _publish(staging, target, refusal)
        except BaseException:
            session.client.set_terminated(job.run_id, status="KILLED")
            remove_dir(staging)
            raise
        _log(session, job.run_id, result, config, published=refusal is None)
    if refusal:
        raise _not_published(result, config, refusal)
    return result


def _check_target(config: Config, target: str, what: str) -> None:
    """Refuse, before anything runs, an output whose replacement would delete data."""
    try:
        check_output(target, what, {"data.path": config.data.path})
    except ManyModelsError as exc:
        raise type(exc)(f"{config.label()}: {exc}") from None


def _key_types(refs: dict[str, tuple[dict[str, str], ModelRef]]) -> dict[str, str]:
    values: dict[str, set[str]] = defaultdict(set)
    for keys, _ in refs.values():
        for column, value in keys.items():
            values[column].add(value)
    return key_types(values)


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


_LACKING = "entities lack future values of"


def _missing_future(entities: pd.DataFrame) -> str | None:
    """One line on the entities whose forecast periods lack exogenous values, if any."""
    if "error_type" not in entities:
        return None
    lacking = entities[entities["error_type"] == "FutureValuesError"]
    if lacking.empty:
        return None
    columns = sorted(set(lacking["error"].str.extract(r"no future value of '([^']*)'")[0].dropna()))
    return (
        f"{len(lacking)} {_LACKING} {', '.join(columns)} for the forecast "
        "periods (give them as rows after the last observed target or in forecast.future_path, "
        "or set data.future_exog: carry_forward)"
    )


def _publish(staging: str, target: str, refusal: str | None) -> None:
    if refusal is None:
        replace_dir(staging, target)
    else:
        remove_dir(staging)


def _not_published(result: ForecastResult, config: Config, refusal: str) -> JobError:
    digest = [] if _LACKING in refusal else result.failure_digest(limit=1)
    common = f" Most common failure: {digest[0].rstrip('.')}." if digest else ""
    return JobError(
        f"{config.label()}: {refusal}, so nothing was published and the previous output at "
        f"{result.output} was left as it was.{common} See failures.csv in run {result.run_id}."
    )


def entity_models(
    registry: Registry, config: Config, alias: str | None, version: int | None
) -> dict[str, tuple[dict[str, str], ModelRef]]:
    """Every entity's key values and model, looked up in bulk by alias or version.

    Raises:
        RegistryError: nothing is registered under that alias or version.
    """
    entity_cols = config.data.entity_cols
    bundle = bundle_name(config.tracking.model_prefix)
    resolved = registry.resolve(alias=alias, version=version)
    if config.tracking.registration == "per_job":
        ref = resolved.get(bundle)
        if ref is None:
            what = f"alias '{alias}'" if alias is not None else f"version {version}"
            raise RegistryError(f"the job bundle '{bundle}' has no {what}. Hint: run "
                                "'manymodels train' with tracking.registration: per_job first.")  # fmt: skip
        return {
            row["model_name"]: (
                {col: str(row[col]) for col in entity_cols},
                (ref.name, ref.version, row["location"]),
            )  # fmt: skip
            for row in read_manifest(ref.source).to_dict("records")
        }
    return {
        name: (
            {col: ref.tags.get(col, "") for col in entity_cols},
            (ref.name, ref.version, ref.source),
        )
        for name, ref in resolved.items()
        if name != bundle
    }


def _assign(
    partitions: list[Partition], refs: dict[str, tuple[dict[str, str], ModelRef]], config: Config
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


def _forecast_batches(
    items: list[tuple[Partition, ModelRefs]], task: ForecastTask, config: Config, progress: bool,
    client: Client,
) -> list[EntityResult]:  # fmt: skip
    results: list[EntityResult] = []
    announce_dashboard(client, progress)
    batches = _batches(items, worker_count(client), config)
    name = f"forecast-{uuid.uuid4().hex[:8]}"
    with progress_bar("forecast", len(items), progress) as bar:
        indexed = list(enumerate(batches))
        for (_, batch), outcome in map_batches(client, _forecast_indexed, indexed, task, name=name):
            if not isinstance(outcome, list):
                outcome = _task_failed(batch, outcome, config)
            ok = sum(result.status == "ok" for result in outcome)
            failed = sum(result.status == "failed" for result in outcome)
            bar.advance(len(batch), ok, failed)
            results.extend(outcome)
    return results


def _forecast_indexed(
    indexed: tuple[int, list[tuple[Partition, ModelRefs]]], task: ForecastTask
) -> list[EntityResult]:
    index, batch = indexed
    return forecast_batch(batch, task, batch_id=str(index))


def _batches(
    items: list[tuple[Partition, ModelRefs]], workers: int, config: Config
) -> list[list[tuple[Partition, ModelRefs]]]:
    if config.tracking.registration == "per_job":
        batches = batch_count(len(items), workers, config.compute.batch_size)
        return _by_shard(items, math.ceil(len(items) / batches))
    refs_of = {partition.keys: refs for partition, refs in items}
    planned = plan_batches(
        [partition for partition, _ in items], workers, config.compute.batch_size
    )
    return [[(partition, refs_of[partition.keys]) for partition in batch] for batch in planned]


def _by_shard(
    items: list[tuple[Partition, ModelRefs]], size: int
) -> list[list[tuple[Partition, ModelRefs]]]:
    """Batches of at most ``size`` partitions whose models share a bundle shard: each task
    then unpickles one shard, not a piece of every shard (a shard holds the models of one
    training task, which may have had other batch settings or another cluster)."""
    groups: dict[str, list[tuple[Partition, ModelRefs]]] = defaultdict(list)
    for partition, refs in items:
        location = next(iter(refs.values()))[2] if refs else ""
        groups[location.partition("#")[0]].append((partition, refs))
    batches = [group[start : start + size] for group in groups.values()
               for start in range(0, len(group), size)]  # fmt: skip
    return sorted(batches, key=len, reverse=True)


def _task_failed(
    batch: list[tuple[Partition, ModelRefs]], exc: BaseException, config: Config
) -> list[EntityResult]:
    failure = failure_from("task", exc)
    prefix = config.tracking.model_prefix
    return [
        EntityResult(
            partition.key_dict, model_name(prefix, partition.key_dict), "failed", failure=failure
        )  # fmt: skip
        for partition, _ in batch
    ]


def _log(
    session: Tracking, run_id: str, result: ForecastResult, config: Config, published: bool
) -> None:
    client = session.client
    tracking.log_table(client, run_id, result.entities, "entity_results.parquet")
    if result.failed:
        failures = failures_table(result.entities, config.data.entity_cols)
        tracking.log_table(client, run_id, failures, "failures.csv")
    metrics = {"entities_total": result.total, "entities_forecast": result.forecast,
               "entities_failed": result.failed, "rows": result.rows, "seconds": result.seconds,
               "entities_per_second": result.forecast / result.seconds if result.seconds else 0.0,
               "entities_carried_forward": result.carried_forward}  # fmt: skip
    tracking.log_metrics(client, run_id, metrics)
    summary = {**metrics, "output": result.output, "published": published}
    tracking.log_json(client, run_id, summary, "summary.json")
    client.set_terminated(run_id, status="FINISHED" if published else "FAILED")
