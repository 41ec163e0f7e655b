"""The small records that tasks send back to the driver."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from manymodels.guard import Failure
from manymodels.secrets import scrub_row

__all__ = ["Champion", "EntityResult"]


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
class EntityResult:
    """The outcome for one entity.

    ``status`` is ``ok``, ``failed``, ``skipped`` (retrain: nothing changed) or ``no_model``
    (forecast: nothing registered). ``kept`` says which model a job bundle holds for the entity
    after a retrain: ``challenger`` or ``champion``.
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

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict[str, Any]:
        """A flat record for the job's results table (credentials masked)."""
        row: dict[str, Any] = {**self.keys, "model_name": self.name, "status": self.status}
        row.update(self.metrics)
        row.update({f"champion_{k}": v for k, v in self.champion_metrics.items()})
        row.update(
            observations=self.observations, filled=self.filled, fingerprint=self.fingerprint,
            holdout_start=self.holdout_start, trained_until=self.trained_until,
            seconds=round(self.seconds, 4),
        )  # fmt: skip
        if self.wins is not None:
            row["challenger_wins"] = self.wins
        if self.failure:
            row.update(stage=self.failure.stage, error_type=self.failure.error_type,
                       error=self.failure.message, traceback=self.failure.traceback)  # fmt: skip
        return scrub_row(row)


def failed(keys: Mapping[str, str], name: str, failure: Failure) -> EntityResult:
    """A failed entity's result."""
    return EntityResult(keys=dict(keys), name=name, status="failed", failure=failure)
