"""Everything the report and the notebook API read about a finished job, in one place.

A job's MLflow run holds its summary metrics, ``entity_results.parquet``, ``failures.csv`` and,
when the job backtested, ``backtest.parquet``. This module finds the run, reads the results
into DataFrames (the backtest table stays a file, read whole only when asked: with every
candidate of a large job it is gigabytes) and fetches the few entities' series that a report
plots: history from ``data.path``, forecasts from the entity's registered model, backtest rows
from the table. Columns that newer jobs add (``winner``, ``skill_mase``, ``coverage_80``, ...)
pass through untouched; the report decides from their presence which sections to draw.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from manymodels import lineage
from manymodels.artifacts.loader import ModelLoader
from manymodels.config import Config
from manymodels.data import Partition, discover_partitions
from manymodels.errors import ManyModelsError
from manymodels.jobs.backtests import BacktestFiles
from manymodels.jobs.results import failures_table
from manymodels.naming import model_name
from manymodels.tasks.entities import iter_entities
from manymodels.timeseries import future_frame, regularize
from manymodels.tracking.run_reads import download_table, read_table, training_runs
from manymodels.tracking.store import Tracking, open_tracking

if TYPE_CHECKING:
    from mlflow.entities import Run

__all__ = ["EntitySeries", "JobData", "entity_series", "list_jobs", "load_job"]


BACKTEST_ARTIFACT = "backtest.parquet"
RESULTS_ARTIFACT = "entity_results.parquet"
# Columns of entity_results that model selection adds (when absent, their sections are left
# out of the report): the chosen candidate, skill against seasonal naive, each candidate's
# backtest score as ``<evaluation.metric>_<candidate>``, and the observed coverage of each
# interval level as ``coverage_<level>``.
WINNER_COL = "winner"
SKILL_COL = "skill_mase"
COVERAGE_PREFIX = "coverage_"


@dataclass
class JobData:
    """A training job as its MLflow run records it.

    Attributes:
        config: the config the job is read with (entity columns, metric, paths).
        job_id: the job's id, also its run's name.
        run_id: the MLflow run.
        kind: ``train`` or ``retrain``.
        status: the run's status (``FINISHED``, ``FAILED``, ``KILLED``, ``RUNNING``).
        started: when the run started (UTC), or None.
        params: the run's parameters (the flattened config).
        metrics: the run's summary metrics.
        entities: ``entity_results``: one row per entity.
        backtest: the backtest predictions' file, when the job recorded them, else None
            (``backtest.read()`` for the whole table).
        partitions: the dataset's listing as the job's driver made it, when the job is
            finishing (its report reads a few entities without listing the dataset again);
            None for a job read back from its run.
    """

    config: Config
    job_id: str
    run_id: str
    kind: str
    status: str
    started: pd.Timestamp | None
    params: dict[str, str]
    metrics: dict[str, float]
    entities: pd.DataFrame
    backtest: BacktestFiles | None = None
    partitions: list[Partition] | None = None

    @property
    def entity_cols(self) -> list[str]:
        return list(self.config.data.entity_cols)

    @property
    def failures(self) -> pd.DataFrame:
        """The failed entities, as the run's ``failures.csv`` lists them."""
        return failures_table(self.entities, self.entity_cols)

    @property
    def trained(self) -> pd.DataFrame:
        """The entities that got a model in this job."""
        if "status" not in self.entities:
            return self.entities.iloc[:0]
        return self.entities[self.entities["status"] == "ok"]

    def has(self, *columns: str) -> bool:
        """Whether every one of ``columns`` is in ``entities`` with at least one value."""
        return all(c in self.entities and self.entities[c].notna().any() for c in columns)


@dataclass
class EntitySeries:
    """What a report plots for one entity.

    Attributes:
        keys: the entity's key values.
        history: the observed series, regular and filled (time and target columns), or empty.
        forecast: the time column, ``prediction`` and any ``lo-*``/``hi-*`` columns, or empty.
        backtest: this entity's backtest rows, or empty.
        note: why a part is missing, for the reader.
    """

    keys: dict[str, str]
    history: pd.DataFrame
    forecast: pd.DataFrame
    backtest: pd.DataFrame = field(default_factory=pd.DataFrame)
    note: str = ""


def list_jobs(config: Config, session: Tracking | None = None) -> pd.DataFrame:
    """The training jobs of the config's experiment, newest first.

    Returns:
        One row per job: ``job_id``, ``kind``, ``status``, ``started``, ``run_id`` and the
        run's summary metrics.
    """
    session = session or open_tracking(config)
    rows = [
        {
            "job_id": run.data.tags.get(lineage.JOB_ID),
            "kind": run.data.tags.get(lineage.JOB_KIND),
            "status": run.info.status,
            "started": _started(run),
            "run_id": run.info.run_id,
            **run.data.metrics,
        }
        for run in training_runs(session, None, max_results=1000)
    ]
    return pd.DataFrame(rows, columns=None if rows else ["job_id", "kind", "status", "started"])


def load_job(config: Config, job_id: str | None = None, session: Tracking | None = None) -> JobData:
    """Read a training job's run: the newest one with results, or the one named ``job_id``.

    Raises:
        ManyModelsError: no such job, or no training job with results in the experiment.
    """
    session = session or open_tracking(config)
    for run in training_runs(session, job_id, max_results=20):
        entities = read_table(session, run.info.run_id, RESULTS_ARTIFACT)
        if entities is None:
            continue  # a job still running, or killed before its tables were logged
        job = JobData(
            config=config,
            job_id=run.data.tags.get(lineage.JOB_ID, run.info.run_name),
            run_id=run.info.run_id,
            kind=run.data.tags.get(lineage.JOB_KIND, "train"),
            status=run.info.status,
            started=_started(run),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            entities=_typed(entities, config),
        )
        job.backtest = _backtest_copy(job, session, config)
        return job
    what = f"job {job_id}" if job_id else "training job with results"
    raise ManyModelsError(
        f"{config.label()}: no {what} in experiment '{config.tracking.experiment}' at "
        f"{session.target.describe()}. Hint: run 'manymodels train -c CONFIG' first, or copy "
        "a job id from a training summary."
    )


def _backtest_copy(job: JobData, session: Tracking, config: Config) -> BacktestFiles | None:
    """A local copy of the run's backtest table, removed with ``job``; None without one."""
    folder = Path(tempfile.mkdtemp(prefix="manymodels-backtest-"))
    weakref.finalize(job, shutil.rmtree, folder, True)
    path = download_table(session, job.run_id, BACKTEST_ARTIFACT, folder)
    return BacktestFiles((path,), tuple(config.data.entity_cols)) if path else None


def _started(run: Run) -> pd.Timestamp | None:
    start = run.info.start_time
    return pd.Timestamp(start, unit="ms", tz="UTC") if start else None


def _typed(entities: pd.DataFrame, config: Config) -> pd.DataFrame:
    """Key columns as strings, the way the registry tags and folder names carry them."""
    for col in config.data.entity_cols:
        if col in entities:
            entities[col] = entities[col].astype(str)
    return entities


def entity_series(
    job: JobData, keys: Sequence[Mapping[str, str]], session: Tracking | None = None
) -> list[EntitySeries]:
    """History, forecast and backtest of a few entities of a job, for plotting.

    The history is read from ``data.path``; the forecast comes from the entity's model version
    that the job registered, as the forecast job would make it. A part that cannot be had
    (no model, unreadable data) is left empty and explained in ``note``.
    """
    config = job.config
    wanted = [{col: str(k[col]) for col in config.data.entity_cols} for k in keys]
    frames = _entity_frames(config, wanted, job.partitions)
    models = _entity_models(job, wanted, session or open_tracking(config))
    backtests = _entity_backtests(job, wanted)
    return [
        _one_series(job, k, frames.get(_key(k, config)), models.get(_key(k, config)),
                    backtests.get(_key(k, config), pd.DataFrame()))  # fmt: skip
        for k in wanted
    ]


def _key(keys: Mapping[str, str], config: Config) -> tuple[str, ...]:
    return tuple(str(keys[col]) for col in config.data.entity_cols)


def _entity_frames(
    config: Config, wanted: list[dict[str, str]], listing: list[Partition] | None = None
) -> dict[tuple[str, ...], Any]:
    """The raw rows of the wanted entities, reading only their partitions (found in
    ``listing`` when given, else by listing ``data.path``)."""
    data = config.data
    partition_keys = {tuple((col, k[col]) for col in data.partition_by) for k in wanted}
    if listing is None:
        listing = discover_partitions(data.path, data.partition_by, data.storage_options)
    partitions = [p for p in listing if p.keys in partition_keys]
    targets = {_key(k, config) for k in wanted}
    found: dict[tuple[str, ...], Any] = {}
    for keys, frame, failure in iter_entities(partitions, config):
        key = _key(keys, config) if failure is None else None
        if key in targets:
            found[key] = frame
    return found


def _entity_models(
    job: JobData, wanted: list[dict[str, str]], session: Tracking
) -> dict[tuple[str, ...], Any]:
    """The job's model of each wanted entity (missing ones are left out)."""
    if "model_version" not in job.entities:
        return {}
    loader = ModelLoader(session.target.tracking_uri)
    locations = _model_locations(job, wanted, session)
    models = {}
    for key, location in locations.items():
        try:
            models[key] = loader.load(location)
        except Exception:  # noqa: BLE001 - a model that cannot load only leaves its plot bare
            continue
    return models


def _model_locations(
    job: JobData, wanted: list[dict[str, str]], session: Tracking
) -> dict[tuple[str, ...], str]:
    config = job.config
    rows = job.entities.set_index(config.data.entity_cols, drop=False)
    pairs: dict[tuple[str, int], tuple[str, ...]] = {}
    for keys in wanted:
        key = _key(keys, config)
        if key not in rows.index:
            continue
        row = rows.loc[key]
        row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
        if pd.notna(row.get("model_version")) and row.get("status") == "ok":
            # The name now, from the keys: a job of an older release recorded escaped names.
            entity = dict(zip(config.data.entity_cols, key, strict=True))
            name = model_name(config.tracking.model_prefix, entity)
            pairs[(name, int(row["model_version"]))] = key
    if config.tracking.registration == "per_job":
        return _bundle_locations(job, pairs, session)
    refs = session.registry.versions(chosen=list(pairs))
    return {
        pairs[(ref.name, ref.version)]: ref.source
        for ref in refs
        if (ref.name, ref.version) in pairs
    }


def _bundle_locations(
    job: JobData, pairs: dict[tuple[str, int], tuple[str, ...]], session: Tracking
) -> dict[tuple[str, ...], str]:
    from manymodels.jobs.modes import mode_of

    versions = {version for _, version in pairs}
    found: dict[tuple[str, ...], str] = {}
    for version in versions:
        refs = mode_of(job.config).entity_models(session.registry, job.config, None, version)
        for (name, number), key in pairs.items():
            if number == version and name in refs:
                found[key] = refs[name][1][2]
    return found


def _one_series(
    job: JobData, keys: dict[str, str], frame: Any, model: Any, backtest: pd.DataFrame
) -> EntitySeries:
    config, data = job.config, job.config.data
    empty = pd.DataFrame()
    if frame is None:
        return EntitySeries(keys, empty, empty, backtest, "no data found for this entity")
    try:
        series = regularize(
            frame,
            data.time_col,
            data.target_col,
            list(data.exog_cols),
            data.freq,
            data.fill_missing,
        )
    except ManyModelsError as exc:
        return EntitySeries(keys, empty, empty, backtest, f"history unreadable: {exc}")
    history = series.history[[data.time_col, data.target_col]]
    if model is None:
        return EntitySeries(keys, history, empty, backtest, "no model from this job")
    try:
        future = future_frame(
            series.history,
            series.future,
            data.time_col,
            list(data.exog_cols),
            series.freq,
            config.horizon,
        )
        forecast = model.forecast(
            history=series.history, future=future, levels=config.forecast.levels
        )
    except Exception as exc:  # noqa: BLE001 - the report shows why, the job is not at stake
        return EntitySeries(keys, history, empty, backtest, f"forecast failed: {exc}")
    return EntitySeries(keys, history, forecast, backtest)


def _entity_backtests(
    job: JobData, wanted: list[dict[str, str]]
) -> dict[tuple[str, ...], pd.DataFrame]:
    """The backtest rows of each wanted entity, in one pass over the table."""
    if job.backtest is None:
        return {}
    rows = job.backtest.of(wanted)
    cols = job.config.data.entity_cols
    if rows.empty or not set(cols) <= set(rows.columns):
        return {}
    keys = rows[cols].astype(str)
    return {
        _key(dict(zip(cols, key, strict=True)), job.config): group
        for key, group in rows.groupby([keys[col] for col in cols], sort=False)
    }


def interval_columns(frame: pd.DataFrame) -> list[str]:
    """The interval levels (as column labels: ``80``, ``97.5``) whose ``lo-``/``hi-`` columns
    ``frame`` holds, narrowest first."""
    labels = [col.removeprefix("lo-") for col in frame.columns if str(col).startswith("lo-")]
    found = [label for label in labels if f"hi-{label}" in frame]
    return sorted(found, key=float)


def candidate_columns(job: JobData) -> dict[str, str]:
    """Each candidate's backtest score column, by candidate name (empty without selection)."""
    if WINNER_COL not in job.entities:
        return {}
    prefix = f"{job.config.evaluation.metric}_"
    return {
        col.removeprefix(prefix): col
        for col in job.entities.columns
        if col.startswith(prefix) and job.entities[col].notna().any()
    }


def coverage_columns(job: JobData) -> dict[str, str]:
    """The observed coverage column of each interval level, by level label."""
    return {
        col.removeprefix(COVERAGE_PREFIX): col
        for col in job.entities.columns
        if col.startswith(COVERAGE_PREFIX) and job.entities[col].notna().any()
    }
