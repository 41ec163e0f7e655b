"""The small records that tasks send back to the driver."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from manymodels.guard import Failure
from manymodels.intervals import level_label
from manymodels.secrets import scrub_row

__all__ = ["Champion", "EntityResult", "Selection"]


@dataclass(frozen=True)
class Champion:
    """An entity's current champion, for a retrain to compare against (or carry over).

    Attributes:
        version: its registered version (of the entity's model, or of the job bundle).
        location: where its model is: a model folder URI, or ``shard-uri#member``.
        tags: its lineage and holdout metrics, under the ``manymodels.`` tag names.
    """

    version: int
    location: str
    tags: Mapping[str, str]


@dataclass
class Selection:
    """How an entity's model was chosen: its backtest, the baseline beside it, its intervals.

    Attributes:
        winner: the chosen candidate's name.
        template: the chosen candidate's template.
        metric: the metric that chose it.
        scores: every backtested candidate's mean ``metric``.
        baseline: seasonal naive's mean metrics on the same windows.
        windows: backtest windows the series afforded.
        fallback: the entity was too short for every candidate and got the fallback template.
        coverage: empirical interval coverage over the backtest, by level.
        warnings: library warnings raised while fitting (silenced).
        errors: candidates that failed, with their error.
        selected_by: the metric that chose the winner (``metric``, or the intermittent one).
    """

    winner: str
    template: str
    metric: str
    scores: dict[str, float]
    baseline: dict[str, float]
    windows: int
    fallback: bool
    coverage: dict[float, float]
    warnings: int
    errors: dict[str, str]
    selected_by: str = ""

    def margins(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The winner's relative margin over the runner-up and over seasonal naive on the
        deciding metric (positive: the winner is better)."""
        mine = metrics.get(self.metric, math.nan)
        others = [v for name, v in self.scores.items() if name != self.winner and math.isfinite(v)]
        return {
            "runner_up": _relative(mine, min(others)) if others else math.nan,
            "seasonal_naive": _relative(mine, self.baseline.get(self.metric, math.nan)),
        }

    def row(self, metrics: Mapping[str, float]) -> dict[str, Any]:
        """The columns of the job's results table that describe the selection."""
        row: dict[str, Any] = {"winner": self.winner, "template": self.template,
                               "windows": self.windows, "fallback": self.fallback,
                               "warnings": self.warnings,
                               "selected_by": self.selected_by or self.metric}  # fmt: skip
        row.update({f"baseline_{name}": value for name, value in self.baseline.items()})
        for name in ("mase", "mae", "rmse", "wape"):
            row[f"skill_{name}"] = _relative(metrics.get(name, math.nan),
                                             self.baseline.get(name, math.nan))  # fmt: skip
        row.update({f"{self.metric}_{name}": value for name, value in self.scores.items()})
        row.update({f"coverage_{level_label(level)}": value
                    for level, value in self.coverage.items()})  # fmt: skip
        if self.errors:
            row["candidate_errors"] = "; ".join(f"{k}: {v}" for k, v in self.errors.items())
        return row


def _relative(mine: float, other: float) -> float:
    """``1 - mine / other``: the skill of ``mine`` against ``other`` (lower is better)."""
    if not (math.isfinite(mine) and math.isfinite(other)) or other == 0:
        return math.nan
    return 1.0 - mine / other


@dataclass
class EntityResult:
    """The outcome for one entity.

    ``status`` is ``ok``, ``failed``, ``skipped`` (retrain: nothing changed) or ``no_model``
    (forecast: nothing registered). ``kept`` says which model a job bundle holds for the entity
    after a retrain: ``challenger`` or ``champion``. ``selection`` describes the backtest that
    chose the model; ``backtest`` holds its out-of-sample predictions (a DataFrame), which the
    driver writes to the job's backtest table. ``source_fingerprint`` and
    ``partition_entities`` describe the entity's partition as listed (see
    :mod:`manymodels.tasks.unchanged`); ``unread`` marks an entity skipped without its rows
    being read.
    """

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
    wins: bool | None = None
    kept: str | None = None
    forecast_rows: int = 0
    carried_forward: bool = False
    selection: Selection | None = None
    backtest: Any = field(default=None, repr=False)
    source_fingerprint: str | None = None
    partition_entities: int = 0
    unread: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict[str, Any]:
        """A flat record for the job's results table (credentials masked)."""
        row: dict[str, Any] = {**self.keys, "model_name": self.name, "status": self.status}
        row.update(self.metrics)
        if self.selection is not None:
            row.update(self.selection.row(self.metrics))
        row.update({f"champion_{k}": v for k, v in self.champion_metrics.items()})
        row.update(
            observations=self.observations, filled=self.filled, fingerprint=self.fingerprint,
            holdout_start=self.holdout_start, trained_until=self.trained_until,
            seconds=round(self.seconds, 4),
        )  # fmt: skip
        if self.filled is not None and self.observations:
            row["filled_share"] = self.filled / self.observations
        if self.wins is not None:
            row["challenger_wins"] = self.wins
        if self.carried_forward:
            row["carried_forward"] = True
        if self.unread:
            row["unread"] = True
        if self.failure:
            row.update(stage=self.failure.stage, error_type=self.failure.error_type,
                       error=self.failure.message, traceback=self.failure.traceback)  # fmt: skip
        return scrub_row(row)


def failed(keys: Mapping[str, str], name: str, failure: Failure) -> EntityResult:
    """A failed entity's result."""
    return EntityResult(keys=dict(keys), name=name, status="failed", failure=failure)
