"""The training and retraining jobs.

Plan on the driver, train on the workers, register on the driver as results stream in, and
write the ledger after every batch. A job that chooses among candidates backtests every
entity first, for its prior and interval calibration (see :mod:`manymodels.jobs.prior_phase`).
``train`` gives each entity a new version (``champion`` on the first); ``retrain`` also scores
the current champion on the challenger's holdout and moves ``champion`` only where the
challenger wins.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pandas as pd

from manymodels.artifacts.entity_folder import entity_model_files
from manymodels.artifacts.model_files import requirements
from manymodels.artifacts.signature import job_signature
from manymodels.config import Config
from manymodels.crashes import blame
from manymodels.data import Partition
from manymodels.engine import (
    Kept,
    PendingCluster,
    cluster_in_background,
    full_size,
    halves,
    map_batches,
    release,
    worker_count,
)
from manymodels.errors import ConfigError
from manymodels.exploration.frames import with_frame
from manymodels.guard import failure_from
from manymodels.inputs import Inputs, validate_inputs
from manymodels.intervals import widening
from manymodels.jobs.backtests import BacktestLog
from manymodels.jobs.budget import allowed_failures, systematic_failure
from manymodels.jobs.dispatch import Dispatch, plan_dispatch
from manymodels.jobs.modes import Registrar, mode_of
from manymodels.jobs.preload import worker_modules
from manymodels.jobs.prior_phase import (
    first_phase,
    inherited_panel,
    runs_first_phase,
    wants_panel,
)  # fmt: skip
from manymodels.jobs.results import TrainResult, failures_table
from manymodels.ledger import Ledger
from manymodels.mainguard import require_main_guard
from manymodels.naming import model_name
from manymodels.outcomes import EntityResult
from manymodels.planning import workers_for
from manymodels.report import announce_dashboard, progress_bar
from manymodels.tasks import TrainTask, train_batch
from manymodels.tracking.runs import JobRun, config_hash, open_job_run
from manymodels.tracking.store import Tracking, TrackingTarget, open_tracking

__all__ = ["train", "retrain"]


def train(
    config: Config,
    *,
    resume: str | None = None,
    fresh: bool = False,
    promote: bool = False,
    progress: bool = False,
    data: pd.DataFrame | None = None,
) -> TrainResult:
    """Train one model per entity and register a new version of each.

    Args:
        config: the job configuration (see :func:`manymodels.load_config`).
        resume: the id of an unfinished job to resume. By default an unfinished job of the same
            config (one whose driver died) is resumed automatically.
        fresh: start a new job even when an unfinished one of the same config exists.
        promote: move ``champion`` to every new version (by default only version 1 gets it).
        progress: draw a progress bar on stderr.
        data: a long DataFrame to train on instead of ``data.path``; it is staged as
            partitioned Parquet under ``work_dir/frames/`` (the same rows, the same folder).

    Returns:
        The job's outcome; check ``budget_exceeded`` for the failure budget.

    Raises:
        ConfigError, DataError, TemplateError: bad input, found before anything is written.
        ResumeError: ``resume`` names no unfinished job.
    """
    config = with_frame(config, data)
    return _run(config, "train", resume, fresh, progress, promote=promote)


def retrain(
    config: Config,
    *,
    resume: str | None = None,
    fresh: bool = False,
    force: bool = False,
    new_versions: bool = False,
    progress: bool = False,
    data: pd.DataFrame | None = None,
) -> TrainResult:
    """Train challengers and promote those that beat the champion on the same holdout.

    Entities whose data, template and parameters are unchanged since their champion was
    trained are skipped unless ``force``: on the driver, without reading their rows, where the
    dataset's listing (file names, sizes, ETags or modification times) is as it was; else by a
    hash of their rows on a worker. A challenger becomes ``champion`` when its
    ``evaluation.metric`` is lower than the champion's by at least ``retrain.min_improvement``
    (relative); otherwise it gets the ``challenger`` alias.

    Args:
        force: train and compare unchanged entities too. Where data, template and params
            equal the champion's, the comparison is recorded (``champion_*`` columns) and the
            entity counts as skipped: nothing new is registered.
        new_versions: with ``force``, register those identical models as new versions too.
        others: as for :func:`train`.

    Raises:
        ConfigError: ``new_versions`` without ``force``; and as for :func:`train`.

    Example:
        >>> result = manymodels.retrain(config)  # doctest: +SKIP
        >>> result.skipped_unread  # entities skipped without reading a row  # doctest: +SKIP
    """
    if new_versions and not force:
        raise ConfigError(
            "The 'new_versions' parameter of retrain needs force=True (unchanged entities are "
            "skipped otherwise). Got new_versions=True, force=False instead."
        )
    config = with_frame(config, data)
    return _run(config, "retrain", resume, fresh, progress, force=force,
                new_versions=new_versions)  # fmt: skip


def _run(
    config: Config, kind: str, resume: str | None, fresh: bool, progress: bool,
    promote: bool = False, force: bool = False, new_versions: bool = False,
) -> TrainResult:  # fmt: skip
    started = time.perf_counter()
    require_main_guard(config.compute.scheduler is None, f"manymodels.{kind}()")
    inputs = validate_inputs(config)
    # A retrain starts one worker and adds the others once it knows its work: most scheduled
    # retrains have little, and each worker process costs a second of CPU to start.
    start = 1 if kind == "retrain" else None
    with cluster_in_background(config.compute, worker_modules(config),
                               dashboard=progress, start=start) as pending:  # fmt: skip
        session = open_tracking(config)
        # The cluster is usually up by now; an unreachable scheduler must fail here, before a
        # job run exists that the next command would take for an interrupted job. A retrain on
        # a local cluster waits only when it has work to send: one that finds nothing changed
        # returns without waiting for worker processes to start.
        if kind == "train" or config.compute.scheduler is not None:
            pending.client()
        digest = config_hash(config, kind, inputs.trained_plan.digest)
        job = open_job_run(session, config, kind, digest, resume, fresh)
        registrar = mode_of(config).registrar(session, job, inputs, kind, promote)
        ledger = Ledger(config.work_dir, job.job_id)
        backtests = BacktestLog(config.work_dir, job.job_id, config.data.entity_cols)
        done, rows = ledger.read() if job.resumed else (set(), [])
        rows = registrar.reconcile(rows)
        resumed_with = len(rows) if job.resumed else None
        if not job.resumed:
            job.log_config(config, {"template": inputs.trained_plan.name,
                                    "partitions": len(inputs.partitions)})  # fmt: skip
        todo = [partition for partition in inputs.partitions if partition.keys not in done]
        champions = {} if kind == "train" else registrar.champions()
        dispatch = plan_dispatch(todo, champions, registrar, force)
        task = TrainTask(
            config=config, template=inputs.trained_plan, params=inputs.params,
            artifact_uri=job.artifact_uri,
            model_files=entity_model_files(requirements(), job_signature(config)),
            artifact_dir=f"models/{uuid.uuid4().hex[:8]}",
            tracking_uri=session.target.tracking_uri, skip=frozenset(registrar.registered),
            champions=champions, force=force, carry=dispatch.carry, new_versions=new_versions,
        )  # fmt: skip
        rows.extend(dispatch.record(registrar, ledger))
        try:
            stopped_early, task = _train_partitions(dispatch, inputs, task, registrar, ledger,
                                                    backtests, rows, progress, pending)  # fmt: skip
        except BaseException:
            # Interrupted or broken: leave the run resumable by the next run of the same command.
            job.end("KILLED")
            raise
        pending.release()
        registrar.finish(rows, complete=not stopped_early)
        result = _finish(session, job, kind, config, rows, registrar, started, stopped_early,
                         backtests)  # fmt: skip
    result.resumed_with = resumed_with
    result.prior, result.panel_from = dict(task.prior), task.panel_from
    if task.calibration:
        result.calibration = {level: widening(task.calibration, level)
                              for level in config.forecast.levels}  # fmt: skip
    return result


def _train_partitions(
    dispatch: Dispatch, inputs: Inputs, task: TrainTask, registrar: Registrar,
    ledger: Ledger, backtest_log: BacktestLog, rows: list[dict[str, Any]], progress: bool,
    pending: PendingCluster,
) -> tuple[bool, TrainTask]:  # fmt: skip
    """Train the dispatched partitions: whether the job stopped early, and the task as it
    trained them (with the job's prior and calibration, where it has them)."""
    config, todo, estimate = inputs.config, dispatch.todo, dispatch.estimated_seconds
    if not todo:
        return False, task
    workers = workers_for(estimate, full_size(config.compute))
    client = pending.client(workers=workers)
    announce_dashboard(client, progress)
    # A local cluster's new workers are still starting: plan for the threads it will have.
    threads = (worker_count(client) if config.compute.scheduler
               else max(worker_count(client), workers * config.compute.threads_per_worker))  # fmt: skip
    batches = dispatch.tasks(task.champions, threads, config.compute.batch_size)
    name = f"{registrar.job.job_id}-{uuid.uuid4().hex[:6]}"
    backtests = None
    if runs_first_phase(config, task, len(dispatch.to_train)):
        task, backtests = first_phase(client, batches, task, registrar.job, progress, name)
    elif task.champions and wants_panel(config, task):
        task = inherited_panel(task, registrar.job)
    try:
        stopped_early = _train_batches(client, batches, task, backtests, name, inputs, registrar,
                                       ledger, backtest_log, rows, progress)  # fmt: skip
        return stopped_early, task
    finally:
        release(backtests or [])


def _train_batches(
    client: Any, batches: list[list[Partition]], task: TrainTask,
    backtests: list[Kept | None] | None, name: str, inputs: Inputs, registrar: Registrar,
    ledger: Ledger, backtest_log: BacktestLog, rows: list[dict[str, Any]], progress: bool,
) -> bool:  # fmt: skip
    config = inputs.config
    total = sum(len(batch) for batch in batches)
    with progress_bar(registrar.kind, total, progress) as bar:
        outcomes = map_batches(client, train_batch, batches, task, name=name, split=halves,
                               inputs=backtests)  # fmt: skip
        for batch, outcome in outcomes:
            results = outcome if isinstance(outcome, list) else _task_failed(config, batch, outcome)
            backtest_log.add(results)
            new_rows = registrar.handle(results)
            # From the rows, not the results: a registration can still fail an entity.
            finished = _finished_partitions(batch, new_rows, config)
            ledger.append(finished, [row for row in new_rows if row["status"] != "failed"])
            rows.extend(new_rows)
            failed = sum(row["status"] == "failed" for row in new_rows)
            bar.advance(len(batch), len(new_rows) - failed, failed)
            if systematic_failure(config, rows, len(inputs.partitions)):
                return True
    return False


def _task_failed(config: Config, batch: list[Partition], exc: BaseException) -> list[EntityResult]:
    if len(batch) == 1:
        exc = blame(exc, batch[0].key_dict)
    failure = failure_from("task", exc)
    return [
        EntityResult(
            partition.key_dict,
            model_name(config.tracking.model_prefix, partition.key_dict),
            "failed",
            failure=failure,
        )  # fmt: skip
        for partition in batch
    ]


def _finished_partitions(
    batch: list[Partition], rows: list[dict[str, Any]], config: Config
) -> list[tuple[tuple[str, str], ...]]:
    """Partitions all of whose entities succeeded (failed ones are retried on resume)."""
    failed = {
        tuple((col, row.get(col)) for col in config.data.partition_by)
        for row in rows
        if row["status"] == "failed"
    }
    return [partition.keys for partition in batch if partition.keys not in failed]


def _finish(
    session: Tracking, job: JobRun, kind: str, config: Config, rows: list[dict[str, Any]],
    registrar: Registrar, started: float, stopped_early: bool, backtests: BacktestLog,
) -> TrainResult:  # fmt: skip
    entities = pd.DataFrame(rows)
    if entities.empty:
        entities = pd.DataFrame(columns=["model_name", "status"])
    # A task that ran twice reports its entities twice; the registry holds one version of each.
    entities = entities.drop_duplicates("model_name", keep="first").reset_index(drop=True)
    if "model_version" in entities:
        entities["model_version"] = entities["model_version"].astype("Int64")
    seconds = time.perf_counter() - started
    result = TrainResult(
        job_id=job.job_id, run_id=job.run_id, kind=kind,
        tracking_uri=session.target.describe(), entities=entities, seconds=seconds,
        promoted=registrar.promoted, first_champions=registrar.first_champions,
        stopped_early=stopped_early,
        ui_hint=_ui_hint(session.target, job), metric=config.evaluation.metric,
        windows=config.evaluation.windows,
        backtest_dir=str(backtests.folder), registration=config.tracking.registration,
    )  # fmt: skip
    result.budget_exceeded = stopped_early or result.failed > allowed_failures(config, result.total)
    # A retrain that found nothing to do records its check (metrics, summary.json) but no
    # results tables or report: 'manymodels report' keeps showing the last job that trained.
    checked_only = kind == "retrain" and result.total > 0 and result.skipped == result.total
    if not checked_only:
        job.log_table(entities, "entity_results.parquet")
        job.log_table(failures_table(entities, config.data.entity_cols), "failures.csv")
    metrics = {
        "entities_total": result.total, "entities_trained": result.trained,
        "entities_failed": result.failed, "entities_skipped": result.skipped,
        "entities_skipped_unread": result.skipped_unread,
        "failure_share": result.failed / result.total if result.total else 0.0,
        "seconds": seconds, "models_per_second": result.trained / seconds if seconds else 0.0,
        "promoted": len(result.promoted),
        **{f"mean_{k}": v for k, v in result.mean_metrics().items()},
        **result.selection_summary(),
    }  # fmt: skip
    job.log_metrics(metrics)
    job.log_json({**metrics, "job_id": job.job_id, "kind": kind, "stopped_early": stopped_early},
                 "summary.json")  # fmt: skip
    if not checked_only:
        _log_exploration(session, job, kind, config, entities, metrics, backtests,
                         registrar.inputs.partitions)  # fmt: skip
    job.end("FAILED" if result.budget_exceeded else "FINISHED")
    return result


def _log_exploration(
    session: Tracking, job: JobRun, kind: str, config: Config, entities: pd.DataFrame,
    metrics: dict[str, Any], backtests: BacktestLog, partitions: list[Partition],
) -> None:  # fmt: skip
    backtests.log(job)
    # Imported here: the exploration package reads job results through manymodels.jobs.
    from manymodels.exploration.job_artifacts import job_data, log_exploration

    explored = job_data(config, job.job_id, job.run_id, kind, entities, metrics,
                        {"template": config.model.template}, backtests.files(),
                        partitions)  # fmt: skip
    log_exploration(job, explored, session)


def _ui_hint(target: TrackingTarget, job: JobRun) -> str | None:
    if target.embedded:
        return f"mlflow ui --backend-store-uri {target.describe()}"
    if target.tracking_uri.startswith(("http://", "https://")):
        base = target.describe().rstrip("/")
        return f"{base}/#/experiments/{job.experiment_id}/runs/{job.run_id}"
    return None
