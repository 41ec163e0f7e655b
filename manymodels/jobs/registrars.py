"""Registering a training job's results, once each, as they arrive on the driver.

:class:`EntityRegistrar` gives every entity its own registered model (``per_entity``);
:class:`BundleRegistrar` collects a manifest and registers one bundle version per job
(``per_job``). Both answer the same questions: which entities this job already registered
(so a resumed job skips them), who the champions are (for a retrain), and what each result
becomes in the registry.
"""

from __future__ import annotations

import math
from typing import Any

from manymodels import lineage
from manymodels.artifacts.bundle import bundle_name, read_manifest, write_bundle
from manymodels.artifacts.model_files import requirements
from manymodels.artifacts.signature import job_signature
from manymodels.guard import failure_from
from manymodels.inputs import Inputs
from manymodels.intervals import level_label
from manymodels.lifecycle.renames import rename_legacy_models
from manymodels.metrics import METRICS
from manymodels.naming import model_name
from manymodels.outcomes import Champion, EntityResult
from manymodels.secrets import scrub_row
from manymodels.tasks import params_digest
from manymodels.tracking.aliases import CHALLENGER, CHAMPION, takes_champion
from manymodels.tracking.registry_types import ModelRecord, Registration, VersionRef
from manymodels.tracking.runs import JobRun
from manymodels.tracking.store import Tracking

__all__ = ["BundleRegistrar", "EntityRegistrar", "lineage_tags"]

_BUNDLE_ENTRY = "bundle_entry"


class _Registrar:
    """What both registrars know: the job, its inputs, and what has been promoted so far."""

    def __init__(self, session: Tracking, job: JobRun, inputs: Inputs, kind: str, promote: bool):
        self.session, self.job, self.inputs, self.kind = session, job, inputs, kind
        self.config = inputs.config
        self.digest = params_digest(inputs.params, inputs.config)
        self.promote_all = promote
        self.promoted: list[str] = []
        # Entities with no champion before this job: their new model is the first champion.
        self.first_champions: list[str] = []


class EntityRegistrar(_Registrar):
    """One registered model per entity; a new version per trained entity, registered at once."""

    carries_champions = False

    def __init__(self, session: Tracking, job: JobRun, inputs: Inputs, kind: str, promote: bool):
        super().__init__(session, job, inputs, kind, promote)
        self._champions: dict[str, Champion] | None = None
        # A registry written by the older naming is renamed first, so entities find their models.
        self.known: dict[str, ModelRecord] = rename_legacy_models(session.registry)
        if job.resumed:
            # The killed session may have left a version without champion, or one twice.
            session.registry.settle(job.run_id)
            self.known = session.registry.models()
        self.registered: dict[str, VersionRef] = (
            {ref.name: ref for ref in session.registry.versions(run_ids=[job.run_id])}
            if job.resumed
            else {}
        )

    def reconcile(self, ledger_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The ledger's rows, plus rows for versions registered after the last ledger write."""
        rows = {row["model_name"]: row for row in ledger_rows}
        for name, ref in self.registered.items():
            if name not in rows:
                rows[name] = _row_from_tags(ref, self.config.data.entity_cols)
        return list(rows.values())

    def champions(self) -> dict[str, Champion]:
        """The current champion of every entity under the prefix (read once)."""
        if self._champions is None:
            self._champions = self._read_champions()
        return self._champions

    def _read_champions(self) -> dict[str, Champion]:
        wanted = {(name, record.aliases[CHAMPION]) for name, record in self.known.items()
                  if CHAMPION in record.aliases}  # fmt: skip
        if not wanted:
            return {}
        return {
            ref.name: Champion(ref.version, ref.source, ref.tags)
            for ref in self.session.registry.versions(chosen=wanted)
        }

    def handle(self, results: list[EntityResult]) -> list[dict[str, Any]]:
        """Register the batch's successful results at once; return every result's row."""
        rows = [result.row() for result in results]
        fresh = []
        for result, row in zip(results, rows, strict=True):
            if result.status != "ok":
                continue
            existing = self.registered.get(result.name)
            if existing is not None:  # a repeated task: the version already exists
                row["model_version"] = existing.version
            else:
                fresh.append((result, row))
        registrations = [
            Registration(
                name=result.name,
                keys=result.keys,
                source=f"{self.job.artifact_uri}/{result.artifact_path}",
                tags=self._version_tags(result),
            )  # fmt: skip
            for result, _ in fresh
        ]
        before = {result.name: self.known.get(result.name) for result, _ in fresh}
        outcomes = self.session.registry.register_many(registrations, self.job.run_id, self.known)
        moves = []
        for result, row in fresh:
            outcome = outcomes[result.name]
            if isinstance(outcome, Exception):  # the registry refused this one; the others go on
                failure = failure_from("register", outcome)
                row.update(status="failed", stage=failure.stage, error_type=failure.error_type,
                           error=failure.message, traceback=failure.traceback)  # fmt: skip
                continue
            self.registered[result.name] = outcome
            row["model_version"] = outcome.version
            moves.extend(self._alias_moves(result, outcome, before[result.name], row))
            record = self.known.setdefault(
                result.name, ModelRecord(result.name, {}, dict(result.keys))
            )
            if row.get("promoted"):
                record.aliases[CHAMPION] = outcome.version
        self.session.registry.set_aliases(moves)
        self._refresh_sources(results)
        return [scrub_row(row) for row in rows]

    def _refresh_sources(self, results: list[EntityResult]) -> None:
        """Give the new source fingerprint to the champions that this check kept: those of
        skipped entities whose files were listed differently (rows unchanged), and those that
        beat their challenger on the new data. The next retrain then skips them unread
        instead of training (and losing) the same challenger again."""
        updates = []
        for result in results:
            champion = self.champions().get(result.name) if _kept_champion(result) else None
            tags = source_tags(result)
            if (
                champion is not None
                and tags
                and any(champion.tags.get(key) != value for key, value in tags.items())
            ):
                updates.append((result.name, champion.version, tags))
        if updates:
            self.session.registry.set_version_tags(updates)

    def finish(self, rows: list[dict[str, Any]], complete: bool) -> None:
        """Every version was registered as its batch arrived; what is left is to make sure,
        by the run's id, that none was created twice (see
        :meth:`~manymodels.tracking.registry.Registry.settle`)."""
        _settle(self.session, self.job, rows)

    def _version_tags(self, result: EntityResult) -> dict[str, str]:
        tags = lineage_tags(result, self.inputs, self.job.job_id, self.digest)
        return {**tags, **_champion_before(self.known.get(result.name))}

    def _alias_moves(
        self, result: EntityResult, ref: VersionRef, before: ModelRecord | None, row: dict[str, Any]
    ) -> list[tuple[str, str, int]]:
        had_champion = before is not None and CHAMPION in before.aliases
        if not had_champion:
            # The registry gave champion as it created the version, by the same rule.
            row["promoted"] = takes_champion(ref.version, before is not None, had_champion)
            if row["promoted"]:
                self.first_champions.append(ref.name)
            return []
        if self.kind == "train":
            row["promoted"] = self.promote_all
            return [(ref.name, CHAMPION, ref.version)] if self.promote_all else []
        wins = bool(result.wins)
        row["promoted"] = wins
        if wins:
            self.promoted.append(ref.name)
        return [(ref.name, CHAMPION if wins else CHALLENGER, ref.version)]


class BundleRegistrar(_Registrar):
    """One bundle version per job: results are collected, registered once at the end."""

    carries_champions = True

    def __init__(self, session: Tracking, job: JobRun, inputs: Inputs, kind: str, promote: bool):
        super().__init__(session, job, inputs, kind, promote)
        self.name = bundle_name(self.config.tracking.model_prefix)
        self.record = session.registry.models().get(self.name)
        self.registered: dict[str, VersionRef] = {}
        self.version: int | None = None
        self._champions: dict[str, Champion] | None = None

    def reconcile(self, ledger_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The ledger's rows; entities trained after the last ledger write are trained again."""
        return list({row["model_name"]: row for row in ledger_rows}.values())

    def champions(self) -> dict[str, Champion]:
        """Every entity's model in the champion bundle, as a champion to beat (read once)."""
        if self._champions is None:
            self._champions = self._read_champions()
        return self._champions

    def _read_champions(self) -> dict[str, Champion]:
        if self.record is None or CHAMPION not in self.record.aliases:
            return {}
        version = self.record.aliases[CHAMPION]
        (ref,) = self.session.registry.versions(chosen=[(self.name, version)])
        manifest = read_manifest(ref.source)
        prefix, entity_cols = self.config.tracking.model_prefix, self.config.data.entity_cols
        # The key columns too: a partition carried unread gets its entities' keys from here.
        tag_cols = [col for col in manifest.columns if col.startswith(lineage.TAG_PREFIX)
                    or col in entity_cols]  # fmt: skip
        # By the name computed now: a bundle written by the older naming lists escaped names.
        return {
            model_name(prefix, {col: str(row[col]) for col in entity_cols}): Champion(
                version, row["location"], {col: str(row[col]) for col in tag_cols}
            )
            for row in manifest.to_dict("records")
        }

    def handle(self, results: list[EntityResult]) -> list[dict[str, Any]]:
        """Rows for the results, each with the manifest entry of the model the bundle keeps."""
        rows = []
        for result in results:
            row = result.row()
            if result.artifact_path:
                if result.kept == "champion":
                    tags = dict(self.champions()[result.name].tags)
                    if _kept_champion(result):  # checked against these files: stamp them
                        tags.update(source_tags(result))
                else:
                    tags = lineage_tags(result, self.inputs, self.job.job_id, self.digest)
                row[_BUNDLE_ENTRY] = {**result.keys, "model_name": result.name,
                                      "location": result.artifact_path, **tags}  # fmt: skip
            if result.wins and result.status == "ok":
                self.promoted.append(result.name)
            elif (
                self.kind == "retrain"
                and result.status == "ok"
                and (result.name not in self.champions())
            ):
                self.first_champions.append(result.name)
            row["promoted"] = bool(result.wins) and result.status == "ok"
            rows.append(scrub_row(row))
        return rows

    def finish(self, rows: list[dict[str, Any]], complete: bool) -> None:
        """Write and register the bundle of every kept model (once per job run)."""
        entries = [row.pop(_BUNDLE_ENTRY) for row in rows if row.get(_BUNDLE_ENTRY)]
        if not any(row.get("status") == "ok" for row in rows) and self._champions:
            # Nothing new: the champion bundle already holds every entity's model.
            for row in rows:
                if row.get("status") == "skipped":
                    row["model_version"] = next(iter(self._champions.values())).version
            return
        if not complete or not entries:
            return
        registry = self.session.registry
        existing = [
            ref for ref in registry.versions(run_ids=[self.job.run_id]) if ref.name == self.name
        ]
        if existing:
            self.version = existing[0].version
            return
        import pandas as pd

        source = write_bundle(self.job.artifact_uri, pd.DataFrame(entries),
                              self.config.data.entity_cols, requirements(),
                              job_signature(self.config, bundle=True))  # fmt: skip
        tags = {lineage.JOB_ID: self.job.job_id, lineage.ENTITIES: str(len(entries)),
                lineage.TEMPLATE: self.inputs.trained_plan.name,
                **self.config.tracking.tags}  # fmt: skip
        known = {self.name: self.record} if self.record else {}
        ref = registry.register(Registration(self.name, {}, source, tags), self.job.run_id, known)
        self.version = ref.version
        had_champion = self.record is not None and CHAMPION in self.record.aliases
        if had_champion and (self.kind == "retrain" or self.promote_all):
            # After a retrain the bundle holds each entity's better model: it is the champion.
            registry.set_alias(self.name, CHAMPION, ref.version)
        self.version = registry.settle(self.job.run_id).get(self.name, ref.version)
        for row in rows:
            if row.get("status") in ("ok", "skipped"):
                row["model_version"] = self.version


def _settle(session: Tracking, job: JobRun, rows: list[dict[str, Any]]) -> None:
    """One version per model from the job's run; rows name the version that stays."""
    kept = session.registry.settle(job.run_id)
    for row in rows:
        if row.get("status") == "ok" and row.get("model_name") in kept:
            row["model_version"] = kept[row["model_name"]]


def lineage_tags(result: EntityResult, inputs: Inputs, job_id: str, digest: str) -> dict[str, str]:
    """The tags of a newly trained model: job, template, data fingerprint, holdout, metrics.

    ``digest`` is :func:`~manymodels.tasks.params_digest` of the job, computed once.
    """
    plan = inputs.trained_plan
    selection = result.selection
    return {
        lineage.JOB_ID: job_id,
        lineage.TEMPLATE: selection.template if selection else plan.name,
        lineage.TEMPLATE_DIGEST: plan.digest,
        lineage.PARAMS_DIGEST: digest,
        lineage.DATA_FINGERPRINT: result.fingerprint or "",
        lineage.HOLDOUT_START: result.holdout_start or "",
        lineage.TRAINED_UNTIL: result.trained_until or "",
        lineage.OBSERVATIONS: str(result.observations),
        lineage.FIT_SECONDS: f"{result.seconds:.3f}",
        **source_tags(result),
        **{lineage.metric_tag(k): repr(float(v)) for k, v in result.metrics.items()},
        **(selection_tags(result, plan.name) if selection else {}),
        **inputs.config.tracking.tags,
    }


def _kept_champion(result: EntityResult) -> bool:
    """Whether the check of ``result`` kept its champion: unchanged rows, or a challenger
    that lost."""
    return result.status == "skipped" or (result.status == "ok" and result.wins is False)


def source_tags(result: EntityResult) -> dict[str, str]:
    """The tags that let a later retrain skip the entity's partition unread (when listed)."""
    if not result.source_fingerprint:
        return {}
    return {lineage.SOURCE_FINGERPRINT: result.source_fingerprint,
            lineage.PARTITION_ENTITIES: str(result.partition_entities)}  # fmt: skip


def selection_tags(result: EntityResult, plan: str) -> dict[str, str]:
    """How the version was chosen: the plan, the winner, its margins, its backtest."""
    selection = result.selection
    assert selection is not None
    margins = selection.margins(result.metrics)
    tags = {
        lineage.PLAN: plan,
        lineage.WINNER: selection.winner,
        lineage.BACKTEST_WINDOWS: str(selection.windows),
        lineage.FALLBACK: str(selection.fallback).lower(),
        lineage.MARGIN_RUNNER_UP: repr(margins["runner_up"]),
        lineage.MARGIN_SEASONAL_NAIVE: repr(margins["seasonal_naive"]),
    }
    for level, value in selection.coverage.items():
        tags[lineage.coverage_tag(level_label(level))] = repr(value)
    return tags


def _champion_before(record: ModelRecord | None) -> dict[str, str]:
    """The tag that remembers which version was champion when a new one was registered."""
    if record is None or CHAMPION not in record.aliases:
        return {}
    return {lineage.CHAMPION_BEFORE: str(record.aliases[CHAMPION])}


def _row_from_tags(ref: VersionRef, entity_cols: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {col: ref.tags.get(col) for col in entity_cols}
    row.update(model_name=ref.name, status="ok", model_version=ref.version)
    for name in METRICS:
        value = ref.tags.get(lineage.metric_tag(name))
        row[name] = float(value) if value is not None else math.nan
    return row
