"""What a job returns to its caller."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from manymodels.metrics import METRICS

# The columns of a job run's failures.csv, after the entity's key columns.
FAILURE_COLUMNS = ("model_name", "stage", "error_type", "error", "traceback")


def failures_table(entities: pd.DataFrame, entity_cols: list[str]) -> pd.DataFrame:
    """The failed entities of a job, as its run's ``failures.csv`` lists them."""
    failed = entities[entities["status"] == "failed"] if "status" in entities else entities
    keep = [col for col in [*entity_cols, *FAILURE_COLUMNS] if col in failed]
    return (failed[keep] if keep else failed).reset_index(drop=True)


__all__ = ["ForecastResult", "TrainResult"]


def _failure_digest(table: pd.DataFrame, limit: int) -> list[str]:
    if table.empty or "status" not in table:
        return []
    failed = table[table["status"] == "failed"]
    if failed.empty:
        return []
    counts = failed.groupby(["stage", "error_type", "error"], dropna=False).size()
    counts = counts.sort_values(ascending=False)
    # The whole message, on one line: a hint cut short is a hint lost.
    lines = [
        f"{count} x {stage}/{kind}: {' '.join(str(message).split())}"
        for (stage, kind, message), count in counts.head(limit).items()
    ]
    if len(counts) > limit:
        lines.append(f"... and {len(counts) - limit} other errors (see failures.csv in the run)")
    return lines


@dataclass
class TrainResult:
    """The outcome of a ``train`` or ``retrain`` job.

    Attributes:
        job_id: the job's id (also its MLflow run name and a tag on every model version).
        run_id: the MLflow run that tracks the job.
        kind: ``train`` or ``retrain``.
        entities: one row per entity: keys, model name and version, status, metrics, error.
        promoted: names of the models whose champion alias moved (retrain).
        first_champions: names of the entities that had no champion before this job.
        budget_exceeded: more entities failed than ``failures.max_share``/``max_count`` allow.
        stopped_early: the job stopped before the end because the budget was already spent.
        resumed_with: for a resumed job, how many entities its earlier session had finished.
        metric: the metric that chose each entity's model (``evaluation.metric``).
        backtest_dir: the local folder of the backtest table's parts (see :meth:`backtest`).
        windows: the backtest windows asked for (``evaluation.windows``).
        registration: ``tracking.registration``: ``per_entity`` or ``per_job`` (one bundle).
        prior: each candidate's factor in the job-level prior (see :mod:`manymodels.priors`);
            empty when the job chose without one.
        calibration: the factor that widened the job's intervals at each level of
            ``forecast.levels``, as ``{level: factor}`` (see :mod:`manymodels.calibration`);
            empty without a calibration.
        panel_from: the job whose prior and calibration a small retrain took (None: its own).
    """

    job_id: str
    run_id: str
    kind: str
    tracking_uri: str
    entities: pd.DataFrame
    seconds: float
    promoted: list[str] = field(default_factory=list)
    first_champions: list[str] = field(default_factory=list)
    budget_exceeded: bool = False
    stopped_early: bool = False
    ui_hint: str | None = None
    resumed_with: int | None = None
    metric: str = "mase"
    backtest_dir: str | None = None
    windows: int = 0
    registration: str = "per_entity"
    prior: dict[str, float] = field(default_factory=dict)
    calibration: dict[float, float] = field(default_factory=dict)
    panel_from: str | None = None

    @property
    def total(self) -> int:
        return len(self.entities)

    def _count(self, status: str) -> int:
        return int((self.entities["status"] == status).sum()) if self.total else 0

    @property
    def trained(self) -> int:
        return self._count("ok")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def skipped_unread(self) -> int:
        """Entities skipped on the driver, their files listed as when their champion was
        trained: no worker read them (column ``unread`` of :attr:`entities`)."""
        if not self.total or "unread" not in self.entities:
            return 0
        return int(self.entities["unread"].eq(True).sum())

    @property
    def failures(self) -> pd.DataFrame:
        """The failed entities with stage, error type and message."""
        if not self.total:
            return self.entities
        return self.entities[self.entities["status"] == "failed"].reset_index(drop=True)

    def mean_metrics(self) -> dict[str, float]:
        """Mean holdout metrics over the trained entities (undefined values left out)."""
        ok = self.entities[self.entities["status"] == "ok"] if self.total else self.entities
        return {
            name: float(np.nanmean(ok[name].to_numpy(dtype=float)))
            for name in METRICS
            if name in ok and ok[name].notna().any()
        }

    def failure_digest(self, limit: int = 5) -> list[str]:
        """The most common failures, one line each."""
        return _failure_digest(self.entities, limit)

    def champion_counts(self) -> dict[str, int]:
        """What became of the job's new versions (``per_entity``): ``new`` versions,
        ``first`` (the entity's first champion), ``promoted`` (took ``champion`` from an earlier
        version: a retrain's winner, or ``train --promote``) and ``kept`` (the earlier champion
        stayed)."""
        ok = self._trained_rows()
        new = int(ok["model_version"].notna().sum()) if "model_version" in ok else len(ok)
        promoted_rows = ok["promoted"].eq(True) if "promoted" in ok else None
        became = int(promoted_rows.sum()) if promoted_rows is not None else len(self.promoted)
        first = min(len(self.first_champions), became)
        return {"new": new, "first": first, "promoted": became - first, "kept": new - became}

    def backtest(self) -> pd.DataFrame:
        """Every candidate's out-of-sample predictions in every backtest window: entity keys,
        ``cutoff``, the time column, ``actual`` (null where it was filled in), ``prediction``,
        ``candidate`` and ``window`` (also ``backtest.parquet`` in the job's run)."""
        from pathlib import Path

        from manymodels.jobs.backtests import BacktestFiles

        if not self.backtest_dir:
            return pd.DataFrame()
        return BacktestFiles.in_folder(Path(self.backtest_dir)).read()

    def winners(self) -> dict[str, int]:
        """How many entities each candidate won, most first."""
        ok = self._trained_rows()
        if "winner" not in ok:
            return {}
        return {str(k): int(v) for k, v in ok["winner"].value_counts().items()}

    def selection_summary(self) -> dict[str, float]:
        """Job-level numbers of the selection: entities that beat seasonal naive, mean skill,
        fallbacks, heavily filled series, silenced warnings."""
        ok = self._trained_rows()
        skill = f"skill_{self.metric}"
        summary: dict[str, float] = {}
        if skill in ok and ok[skill].notna().any():
            values = ok[skill].to_numpy(dtype=float)
            summary["beats_seasonal_naive"] = int(np.sum(values > 0))
            summary["scored_against_seasonal_naive"] = int(np.sum(np.isfinite(values)))
            summary[f"mean_{skill}"] = float(np.nanmean(values))
        if "fallback" in ok:
            summary["fallbacks"] = int(ok["fallback"].eq(True).sum())  # null: not a fallback
        if "windows" in ok and self.windows:
            # Entities on the fallback are counted as such, not again here.
            fallback = ok["fallback"].eq(True) if "fallback" in ok else False
            fewer = (ok["windows"].fillna(0) < self.windows) & ~fallback
            summary["fewer_windows"] = int(fewer.sum())
        if "filled_share" in ok:
            summary["heavily_filled"] = int((ok["filled_share"].fillna(0) > HEAVILY_FILLED).sum())
        if "warnings" in ok:
            summary["library_warnings"] = int(ok["warnings"].fillna(0).sum())
        for column in [col for col in ok if str(col).startswith("coverage_")]:
            if ok[column].notna().any():
                summary[f"mean_{column}"] = float(np.nanmean(ok[column].to_numpy(dtype=float)))
        return summary

    def _trained_rows(self) -> pd.DataFrame:
        if not self.total or "status" not in self.entities:
            return self.entities
        return self.entities[self.entities["status"] == "ok"]


# An entity with more than this share of its target values filled in gets a warning.
HEAVILY_FILLED = 0.2


@dataclass
class ForecastResult:
    """The outcome of a ``forecast`` job."""

    job_id: str
    run_id: str
    output: str
    entities: pd.DataFrame
    rows: int
    seconds: float

    @property
    def total(self) -> int:
        return len(self.entities)

    @property
    def forecast(self) -> int:
        return int((self.entities["status"] == "ok").sum()) if self.total else 0

    @property
    def failed(self) -> int:
        return int((self.entities["status"] == "failed").sum()) if self.total else 0

    @property
    def carried_forward(self) -> int:
        """Entities whose missing future exogenous values were carried forward
        (``data.future_exog: carry_forward``)."""
        if not self.total or "carried_forward" not in self.entities:
            return 0
        return int(self.entities["carried_forward"].eq(True).sum())

    @property
    def without_model(self) -> int:
        """Entities with data but no registered model under the alias or version."""
        return int((self.entities["status"] == "no_model").sum()) if self.total else 0

    def failure_digest(self, limit: int = 5) -> list[str]:
        """The most common failures, one line each."""
        return _failure_digest(self.entities, limit)

    def failures_named(self) -> list[str]:
        """The model names of the entities that failed, sorted."""
        if not self.failed:
            return []
        return sorted(self.entities.loc[self.entities["status"] == "failed", "model_name"])

    def read(self) -> pd.DataFrame:
        """The published forecasts as one DataFrame, key columns as strings."""
        frame = pd.read_parquet(self.output)
        for col in frame.columns[frame.dtypes == "category"]:
            frame[col] = frame[col].astype(str)
        return frame
