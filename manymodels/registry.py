"""The MLflow model registry, used in bulk and idempotently.

A job registers one version per trained entity. Reads are done in bulk (one paged query for
all models with the job's prefix), and writes are idempotent: a version created by a job's run
is found again by its run id, so a retried task or a resumed job never registers twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from manymodels.errors import RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient

T = TypeVar("T")

__all__ = ["ModelRecord", "Registration", "Registry", "VersionRef", "CHAMPION", "CHALLENGER"]

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_PREFIX = "manymodels."
KEYS_TAG = "manymodels.entity_keys"
JOB_TAG = "manymodels.job_id"
_ATTEMPTS = 5
_BACKOFF = 0.2
_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED"}


@dataclass(frozen=True)
class VersionRef:
    """One registered model version."""

    name: str
    version: int
    source: str
    run_id: str | None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ModelRecord:
    """One registered model: its aliases and tags."""

    name: str
    aliases: dict[str, int]
    tags: dict[str, str]


@dataclass(frozen=True)
class Registration:
    """A version to create: which model, from which artifact, with which tags."""

    name: str
    keys: Mapping[str, str]
    source: str
    tags: Mapping[str, str]


class Registry:
    """Bulk, idempotent access to the registered models that share a name prefix.

    Args:
        client: an MLflow client.
        prefix: ``tracking.model_prefix``; every name handled starts with ``prefix.``.
    """

    def __init__(self, client: MlflowClient, prefix: str, bulk: bool = True) -> None:
        from manymodels.registry_bulk import bulk_registry_for

        self.client = client
        self.prefix = prefix
        self.bulk = bulk_registry_for(client) if bulk else None

    def models(self) -> dict[str, ModelRecord]:
        """Every registered model under the prefix, with aliases and tags (paged, in bulk)."""
        if self.bulk is not None:
            return {
                name: ModelRecord(name, aliases, tags)
                for name, aliases, tags in self.bulk.read_models(f"{self.prefix}.")
            }
        found: dict[str, ModelRecord] = {}
        token = None
        while True:
            page = self.client.search_registered_models(
                filter_string=f"name LIKE '{self._like()}'", max_results=1000, page_token=token
            )
            for model in page:
                if model.name.startswith(f"{self.prefix}."):
                    aliases = {
                        alias: int(version) for alias, version in (model.aliases or {}).items()
                    }
                    found[model.name] = ModelRecord(model.name, aliases, dict(model.tags or {}))
            token = page.token
            if not token:
                return found

    def versions(
        self,
        run_ids: Iterable[str] | None = None,
        chosen: Collection[tuple[str, int]] | None = None,
    ) -> list[VersionRef]:
        """Model versions under the prefix, optionally only those created by some runs, or only
        the ``chosen`` ``(name, version)`` pairs (read directly from a database registry)."""
        if chosen is not None:
            return self._chosen_versions(chosen)
        if self.bulk is not None:
            return [
                VersionRef(name, number, source, run_id, tags)
                for name, number, source, run_id, tags in self.bulk.read_versions(
                    f"{self.prefix}.", list(run_ids or []))
            ]  # fmt: skip
        filters = [f"name LIKE '{self._like()}'"]
        run_ids = list(run_ids or [])
        if run_ids:
            filters = [f"run_id IN ({', '.join(repr(run) for run in run_ids)})"]
        result: list[VersionRef] = []
        token = None
        while True:
            page = self.client.search_model_versions(
                filter_string=" AND ".join(filters), max_results=50_000, page_token=token
            )
            result.extend(
                VersionRef(v.name, int(v.version), v.source or "", v.run_id, dict(v.tags or {}))
                for v in page
                if v.name.startswith(f"{self.prefix}.")
            )
            token = page.token
            if not token:
                return result

    def _chosen_versions(self, chosen: Collection[tuple[str, int]]) -> list[VersionRef]:
        if not chosen:
            return []
        if self.bulk is not None:
            return [
                VersionRef(name, number, source, run_id, tags)
                for name, number, source, run_id, tags in self.bulk.read_chosen_versions(
                    list(chosen))
            ]  # fmt: skip
        wanted = set(chosen)
        return [ref for ref in self.versions() if (ref.name, ref.version) in wanted]

    def register(
        self, registration: Registration, run_id: str, known: Mapping[str, ModelRecord]
    ) -> VersionRef:
        """Create a new version, and the registered model first when it is new.

        ``champion`` goes to version 1, or to the new version when the model has no champion.
        The caller guarantees it registers each (run, entity) once; see :meth:`versions`.
        """
        from mlflow.exceptions import MlflowException

        record = known.get(registration.name)
        if record is None:
            model_tags = {**registration.keys, KEYS_TAG: json.dumps(dict(registration.keys))}
            try:
                _retry(
                    lambda: self.client.create_registered_model(registration.name, tags=model_tags)
                )
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        number = self._create_version(registration, run_id)
        has_champion = record is not None and CHAMPION in record.aliases
        if number == 1 or (record is not None and not has_champion):
            self.set_alias(registration.name, CHAMPION, number)
        return VersionRef(registration.name, number, registration.source, run_id, registration.tags)

    def register_many(
        self, registrations: list[Registration], run_id: str, known: Mapping[str, ModelRecord]
    ) -> dict[str, VersionRef | Exception]:
        """Register a batch: in one transaction when the registry is a database, else one
        model at a time (in parallel against a server). A refused entry maps to its error.

        Returns:
            ``{name: VersionRef or the exception that refused it}``.
        """
        if not registrations:
            return {}
        if self.bulk is not None:
            return self._register_bulk(registrations, run_id)
        workers = 8 if self.client.tracking_uri.startswith(("http://", "https://")) else 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(
                pool.map(lambda r: self._register_or_error(r, run_id, known), registrations)
            )
        return {
            registration.name: outcome
            for registration, outcome in zip(registrations, outcomes, strict=True)
        }

    def set_aliases(self, moves: list[tuple[str, str, int]]) -> None:
        """Point aliases at versions, ``(name, alias, version)`` each, in bulk when possible."""
        if self.bulk is not None:
            self.bulk.set_aliases(moves)
            return
        for name, alias, version in moves:
            self.set_alias(name, alias, version)

    def _register_bulk(
        self, registrations: list[Registration], run_id: str
    ) -> dict[str, VersionRef | Exception]:
        from manymodels.registry_bulk import NewVersion

        entries = [
            NewVersion(
                name=r.name,
                source=r.source,
                model_tags={**r.keys, KEYS_TAG: json.dumps(dict(r.keys))},
                version_tags={**r.keys, **r.tags},
            )  # fmt: skip
            for r in registrations
        ]
        assert self.bulk is not None
        created = self.bulk.register(entries, run_id)
        return {
            r.name: VersionRef(r.name, created[r.name][0], r.source, run_id, r.tags)
            for r in registrations
        }

    def _register_or_error(
        self, registration: Registration, run_id: str, known: Mapping[str, ModelRecord]
    ) -> VersionRef | Exception:
        try:
            return self.register(registration, run_id, known)
        except Exception as exc:  # reported per entity by the caller
            return exc

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` of model ``name`` at ``version`` (retried while the store is busy)."""
        _retry(lambda: self.client.set_registered_model_alias(name, alias, str(version)))

    def _create_version(self, registration: Registration, run_id: str) -> int:
        """Create the version; after a transient error, first look whether it was created."""
        for attempt in range(_ATTEMPTS):
            try:
                version = self.client.create_model_version(
                    registration.name, source=registration.source, run_id=run_id,
                    tags={**registration.keys, **registration.tags},
                )  # fmt: skip
                return int(version.version)
            except Exception as exc:
                if not _transient(exc) or attempt == _ATTEMPTS - 1:
                    raise
                # The write may have landed before the error (a lost response): never twice.
                existing = self._version_of_run(registration.name, run_id)
                if existing is not None:
                    return existing
                time.sleep(_BACKOFF * 2**attempt)
        raise AssertionError("unreachable")

    def _version_of_run(self, name: str, run_id: str) -> int | None:
        found = self.client.search_model_versions(
            f"name = '{_quote(name)}' and run_id = '{run_id}'"
        )
        return min((int(v.version) for v in found), default=None)

    def resolve(
        self, alias: str | None = None, version: int | None = None
    ) -> dict[str, VersionRef]:
        """Each model's version by alias or number: the models, then just those versions.

        Raises:
            RegistryError: no model under the prefix has that alias or version.
        """
        if (alias is None) == (version is None):
            raise RegistryError("give exactly one of an alias or a version to forecast with")
        models = self.models().values()
        pairs = (
            [(model.name, model.aliases[alias]) for model in models if alias in model.aliases]
            if alias is not None
            else [(model.name, int(version or 0)) for model in models]
        )
        chosen = {ref.name: ref for ref in self.versions(chosen=pairs)}
        if not chosen:
            what = f"alias '{alias}'" if alias is not None else f"version {version}"
            raise RegistryError(
                f"no registered model named '{self.prefix}.*' has {what}. Hint: run "
                "'manymodels train' first, or check tracking.model_prefix and tracking.uri."
            )
        return chosen

    def _like(self) -> str:
        # LIKE treats _ and % as wildcards; names are re-checked with startswith afterwards.
        return f"{self.prefix}.%"


def _transient(exc: BaseException) -> bool:
    """A busy SQLite file, an unreachable or overloaded server: worth another try."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    code = getattr(exc, "error_code", None)
    text = str(exc).lower()
    return code in _TRANSIENT_CODES or "database is locked" in text or "timed out" in text


def _retry(action: Callable[[], T]) -> T:
    for attempt in range(_ATTEMPTS):
        try:
            return action()
        except Exception as exc:
            if not _transient(exc) or attempt == _ATTEMPTS - 1:
                raise
            time.sleep(_BACKOFF * 2**attempt)
    raise AssertionError("unreachable")


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
