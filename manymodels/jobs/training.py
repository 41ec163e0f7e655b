"""The training and retraining jobs.

Plan on the driver, train on the workers, register on the driver as results stream in, and
write the ledger after every batch. ``train`` gives each entity a new version (``champion`` on
the first); ``retrain`` also scores the current champion on the challenger's holdout and moves
``champion`` only where the challenger wins.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

import pandas as pd

from manymodels import tracking
from manymodels.config import Config
from manymodels.data import Partition
from manymodels.engine import cluster, map_batches, worker_count
from manymodels.errors import JobError
from manymodels.flavor import requirements
from manymodels.guard import failure_from
from manymodels.jobs.results import TrainResult
from manymodels.jobs.session import (
    Inputs, JobRun, Tracking, config_hash, log_config, open_job_run, open_tracking, validate_inputs,
)  # fmt: skip
from manymodels.ledger import Ledger
from manymodels.metrics import METRICS
from manymodels.naming import model_name
from manymodels.planning import plan_batches
from manymodels.registry import CHALLENGER, CHAMPION, TAG_PREFIX, ModelRecord, Registration, VersionRef
from manymodels.report import progress_bar
from manymodels.secrets import scrub_row
from manymodels.worker import Champion, EntityResult, TrainTask, params_digest, train_batch

__all__ = ["train", "retrain"]

# Stop early only on clear evidence of a systematic failure, not on a few bad entities.
_EARLY_STOP_MIN_FAILED = 20


def train(
    config: Config,
    *,
    resume: str | None = None,
    fresh: bool = False,
    promote: bool = False,
    progress: bool = False,
) -> TrainResult:
    """Train one model per entity and register a new version of each.

    Args:
        config: the job configuration (see :func:`manymodels.load_config`).
        resume: the id of an unfinished job to resume. By default an unfinished job of the same
            config (one whose driver died) is resumed automatically.
        fresh: start a new job even when an unfinished one of the same config exists.
        promote: move ``champion`` to every new version (by default only version 1 gets it).
        progress: draw a progress bar on stderr.

    Returns:
        The job's outcome; check ``budget_exceeded`` for the failure budget.

    Raises:
        ConfigError, DataError, TemplateError: bad input, found before anything is written.
        ResumeError: ``resume`` names no unfinished job.
    """
    return _run(config, "train", resume, fresh, progress, promote=promote)


def retrain(
    config: Config,
    *,
    resume: str | None = None,
    fresh: bool = False,
    force: bool = False,
    progress: bool = False,
) -> TrainResult:
    """Train challengers and promote those that beat the champion on the same holdout.

    Entities whose data, template and parameters are unchanged since their champion was
    trained are skipped unless ``force``. A challenger becomes ``champion`` when its
    ``evaluation.metric`` is lower than the champion's by at least ``retrain.min_improvement``
    (relative); otherwise it gets the ``challenger`` alias.

    Args: as for :func:`train`, plus ``force`` to retrain unchanged entities too.
    """
    return _run(config, "retrain", resume, fresh, progress, force=force)


def _run(
    config: Config, kind: str, resume: str | None, fresh: bool, progress: bool,
    promote: bool = False, force: bool = False,
) -> TrainResult:  # fmt: skip
    started = time.perf_counter()
    inputs = validate_inputs(config)
    session = open_tracking(config)
    digest = config_hash(config, kind, inputs.template.source.digest)
    job = open_job_run(session, config, kind, digest, resume, fresh)
    registrar = _Registrar(session, job, inputs, kind, promote)
    ledger = Ledger(config.work_dir, job.job_id)
    done, rows = ledger.read() if job.resumed else (set(), [])
    rows = registrar.reconcile(rows)
    rows_before = list(rows)
    if not job.resumed:
        log_config(session, job.run_id, config, {"template": inputs.template.name,
                                                  "partitions": len(inputs.partitions)})  # fmt: skip
    todo = [partition for partition in inputs.partitions if partition.keys not in done]
    task = TrainTask(
        config=config, template=inputs.template.source, params=inputs.params,
        artifact_uri=job.artifact_uri, pip_requirements=requirements(),
        artifact_dir=f"models/{uuid.uuid4().hex[:8]}", skip=frozenset(registrar.registered),
        champions={} if kind == "train" or force else registrar.champions(),
    )  # fmt: skip
    stopped_early = False
    try:
        stopped_early = _train_partitions(todo, inputs, task, registrar, ledger, rows, progress)
    except BaseException:
        # Interrupted or broken: leave the run resumable by the next run of the same command.
        session.client.set_terminated(job.run_id, status="KILLED")
        raise
    result = _finish(session, job, kind, config, rows, registrar, started, stopped_early)
    result.resumed_with = len(rows_before) if job.resumed else None
    return result


def _train_partitions(
    todo: list[Partition], inputs: Inputs, task: TrainTask, registrar: _Registrar,
    ledger: Ledger, rows: list[dict[str, Any]], progress: bool,
) -> bool:  # fmt: skip
    config = inputs.config
    if not todo:
        return False
    with cluster(config.compute) as client:
        batches = plan_batches(todo, worker_count(client), config.compute.batch_size)
        name = f"{registrar.job.job_id}-{uuid.uuid4().hex[:6]}"
        with progress_bar(registrar.kind, len(todo), progress) as bar:
            for batch, outcome in map_batches(client, train_batch, batches, task, name=name):
                results = outcome if isinstance(outcome, list) else _task_failed(config, batch, outcome)
                new_rows = registrar.handle(results)
                finished = _finished_partitions(batch, results, config)
                ledger.append(finished, [row for row in new_rows if row["status"] != "failed"])
                rows.extend(new_rows)
                failed = sum(row["status"] == "failed" for row in new_rows)
                bar.advance(len(batch), len(new_rows) - failed, failed)
                if _budget_spent(config, rows, len(inputs.partitions), len(todo)):
                    return True
    return False


def _task_failed(config: Config, batch: list[Partition], exc: BaseException) -> list[EntityResult]:
    failure = failure_from("task", exc)
    return [
        EntityResult(partition.key_dict, model_name(config.tracking.model_prefix, partition.key_dict),
                     "failed", failure=failure)  # fmt: skip
        for partition in batch
    ]


def _finished_partitions(
    batch: list[Partition], results: list[EntityResult], config: Config
) -> list[tuple[tuple[str, str], ...]]:
    """Partitions all of whose entities succeeded (failed ones are retried on resume)."""
    failed = {
        tuple((col, result.keys.get(col)) for col in config.data.partition_by)
        for result in results
        if result.status == "failed"
    }
    return [partition.keys for partition in batch if partition.keys not in failed]


def allowed_failures(config: Config, total: int) -> int:
    """How many failed entities the failure budget allows out of ``total``."""
    if config.failures.max_count is not None:
        return config.failures.max_count
    return math.floor(config.failures.max_share * total + 1e-9)


def _budget_spent(config: Config, rows: list[dict[str, Any]], partitions: int, todo: int) -> bool:
    failed = sum(row["status"] == "failed" for row in rows)
    if failed < _EARLY_STOP_MIN_FAILED or failed < 0.5 * len(rows):
        return False
    expected_total = max(len(rows), partitions)
    return failed > allowed_failures(config, expected_total)


class _Registrar:
    """Registers results as they arrive, once each, and moves aliases."""

    def __init__(self, session: Tracking, job: JobRun, inputs: Inputs, kind: str, promote: bool):
        self.session, self.job, self.inputs, self.kind = session, job, inputs, kind
        self.config = inputs.config
        self.promote_all = promote
        self.known: dict[str, ModelRecord] = session.registry.models()
        self.registered: dict[str, VersionRef] = (
            {ref.name: ref for ref in session.registry.versions(run_ids=[job.run_id])}
            if job.resumed
            else {}
        )
        self.promoted: list[str] = []
        self._versions: dict[tuple[str, int], VersionRef] | None = None

    def reconcile(self, ledger_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The ledger's rows, plus rows for versions registered after the last ledger write."""
        rows = {row["model_name"]: row for row in ledger_rows}
        for name, ref in self.registered.items():
            if name not in rows:
                rows[name] = _row_from_tags(ref, self.config)
        return list(rows.values())

    def champions(self) -> dict[str, Champion]:
        """The current champion of every model under the prefix (for a retrain)."""
        wanted = {(name, record.aliases[CHAMPION]) for name, record in self.known.items()
                  if CHAMPION in record.aliases}  # fmt: skip
        if not wanted:
            return {}
        return {
            ref.name: Champion(ref.version, ref.source, ref.tags)
            for ref in self.session.registry.versions()
            if (ref.name, ref.version) in wanted
        }

    def handle(self, results: list[EntityResult]) -> list[dict[str, Any]]:
        rows = []
        for result in results:
            row = result.row()
            if result.status == "ok":
                self._register(result, row)
            rows.append(scrub_row(row))
        return rows

    def _register(self, result: EntityResult, row: dict[str, Any]) -> None:
        existing = self.registered.get(result.name)
        if existing is not None:  # a repeated task: the version already exists
            row["model_version"] = existing.version
            return
        registration = Registration(
            name=result.name, keys=result.keys,
            source=f"{self.job.artifact_uri}/{result.artifact_path}", tags=self._tags(result),
        )  # fmt: skip
        try:
            ref = self.session.registry.register(registration, self.job.run_id, self.known)
            self.registered[result.name] = ref
            row["model_version"] = ref.version
            self._move_aliases(result, ref, row)
        except Exception as exc:  # the registry refused this one; the others go on
            failure = failure_from("register", exc)
            row.update(status="failed", stage=failure.stage, error_type=failure.error_type,
                       error=failure.message)  # fmt: skip
            return
        record = self.known.setdefault(result.name, ModelRecord(result.name, {}, dict(result.keys)))
        if ref.version == 1 or row.get("promoted"):
            record.aliases[CHAMPION] = ref.version

    def _move_aliases(self, result: EntityResult, ref: VersionRef, row: dict[str, Any]) -> None:
        record = self.known.get(result.name)
        has_champion = record is not None and CHAMPION in record.aliases
        if self.kind == "train":
            if self.promote_all and has_champion:
                self.session.registry.set_alias(ref.name, CHAMPION, ref.version)
                row["promoted"] = True
            return
        if not has_champion:
            row["promoted"] = ref.version == 1 or record is not None
            return
        wins = challenger_wins(result.metrics, result.champion_metrics, self.config)
        alias = CHAMPION if wins else CHALLENGER
        self.session.registry.set_alias(ref.name, alias, ref.version)
        row["promoted"] = wins
        if wins:
            self.promoted.append(ref.name)

    def _tags(self, result: EntityResult) -> dict[str, str]:
        template = self.inputs.template
        tags = {
            f"{TAG_PREFIX}job_id": self.job.job_id,
            f"{TAG_PREFIX}template": template.name,
            f"{TAG_PREFIX}template_digest": template.source.digest,
            f"{TAG_PREFIX}params_digest": params_digest(self.inputs.params, self.config),
            f"{TAG_PREFIX}data_fingerprint": result.fingerprint or "",
            f"{TAG_PREFIX}holdout_start": result.holdout_start or "",
            f"{TAG_PREFIX}trained_until": result.trained_until or "",
            f"{TAG_PREFIX}observations": str(result.observations),
            **{f"{TAG_PREFIX}metric.{k}": repr(float(v)) for k, v in result.metrics.items()},
            **self.config.tracking.tags,
        }
        return tags


def challenger_wins(challenger: dict[str, float], champion: dict[str, float], config: Config) -> bool:
    """Whether a challenger beats the champion by the configured margin on the chosen metric.

    Falls back to MAE where the chosen metric is undefined for either (MASE of a constant
    series); a champion that could not be scored always loses.
    """
    if not champion:
        return True
    metric = config.evaluation.metric
    new, old = challenger.get(metric, math.nan), champion.get(metric, math.nan)
    if not (math.isfinite(new) and math.isfinite(old)):
        new, old = challenger.get("mae", math.nan), champion.get("mae", math.nan)
    if not math.isfinite(new):
        return False
    if not math.isfinite(old):
        return True
    return new < old * (1.0 - config.retrain.min_improvement) if old > 0 else new < old


def _row_from_tags(ref: VersionRef, config: Config) -> dict[str, Any]:
    row: dict[str, Any] = {col: ref.tags.get(col) for col in config.data.entity_cols}
    row.update(model_name=ref.name, status="ok", model_version=ref.version)
    for name in METRICS:
        value = ref.tags.get(f"{TAG_PREFIX}metric.{name}")
        row[name] = float(value) if value is not None else math.nan
    return row


def _finish(
    session: Tracking, job: JobRun, kind: str, config: Config, rows: list[dict[str, Any]],
    registrar: _Registrar, started: float, stopped_early: bool,
) -> TrainResult:  # fmt: skip
    entities = pd.DataFrame(rows)
    if entities.empty:
        entities = pd.DataFrame(columns=["model_name", "status"])
    # A task that ran twice reports its entities twice; the registry holds one version of each.
    entities = entities.drop_duplicates("model_name", keep="first").reset_index(drop=True)
    seconds = time.perf_counter() - started
    result = TrainResult(
        job_id=job.job_id, run_id=job.run_id, kind=kind,
        tracking_uri=session.target.describe(), entities=entities, seconds=seconds,
        promoted=registrar.promoted, stopped_early=stopped_early,
        ui_hint=_ui_hint(session.target),
    )  # fmt: skip
    result.budget_exceeded = stopped_early or result.failed > allowed_failures(config, result.total)
    client, run_id = session.client, job.run_id
    tracking.log_table(client, run_id, entities, "entity_results.parquet")
    failures = result.failures
    keep = [c for c in [*config.data.entity_cols, "model_name", "stage", "error_type", "error",
                        "traceback"] if c in failures]  # fmt: skip
    tracking.log_table(client, run_id, failures[keep] if keep else failures, "failures.csv")
    metrics = {
        "entities_total": result.total, "entities_trained": result.trained,
        "entities_failed": result.failed, "entities_skipped": result.skipped,
        "failure_share": result.failed / result.total if result.total else 0.0,
        "seconds": seconds, "models_per_second": result.trained / seconds if seconds else 0.0,
        "promoted": len(result.promoted),
        **{f"mean_{k}": v for k, v in result.mean_metrics().items()},
    }  # fmt: skip
    tracking.log_metrics(client, run_id, metrics)
    tracking.log_json(client, run_id, {**metrics, "job_id": job.job_id, "kind": kind,
                                       "stopped_early": stopped_early}, "summary.json")  # fmt: skip
    client.set_terminated(run_id, status="FAILED" if result.budget_exceeded else "FINISHED")
    return result


def _ui_hint(target: tracking.TrackingTarget) -> str | None:
    if target.embedded:
        return f"mlflow ui --backend-store-uri {target.tracking_uri}"
    return None


def require_within_budget(result: TrainResult, config: Config) -> None:
    """Raise when a job's failures exceed the budget (the CLI's exit status).

    Raises:
        JobError: naming how many failed, the budget, and where the failures are listed.
    """
    if not result.budget_exceeded:
        return
    allowed = allowed_failures(config, result.total)
    how = "stopped early: " if result.stopped_early else ""
    raise JobError(
        f"{how}{result.failed} of {result.total} entities failed, more than the "
        f"{allowed} allowed by failures.max_share/max_count; see failures.csv in run "
        f"{result.run_id}, fix the data or template, then rerun to resume."
    )
