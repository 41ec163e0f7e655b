"""The registry through MLflow's client API: one call per registry object.

Works against every registry MLflow supports (a tracking server, a database, Databricks) and
sends registry webhooks; costs about 10 ms per registered version. Writes are retried while
the store is busy, and a version whose creation may have landed before an error is looked up
by its run id before it is created again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from manymodels.tracking.aliases import CHAMPION, takes_champion
from manymodels.tracking.registry_types import ModelRecord, Registration, VersionRef
from manymodels.tracking.retries import retry

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["ClientRegistry"]

T = TypeVar("T")

_ATTEMPTS = 5
_BACKOFF = 0.2
_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED"}
_SERVER_THREADS = 8  # registrations in flight against a server (a database takes one writer)


class ClientRegistry:
    """Registry reads and writes through an :class:`~mlflow.MlflowClient`.

    Args:
        client: an MLflow client.
    """

    def __init__(self, client: MlflowClient) -> None:
        self.client = client

    def read_models(self, prefix: str) -> dict[str, ModelRecord]:
        """Every registered model whose name starts with ``prefix``, paged."""
        found: dict[str, ModelRecord] = {}
        token = None
        while True:
            page = self.client.search_registered_models(
                filter_string=f"name LIKE '{_like(prefix)}'", max_results=1000, page_token=token
            )
            for model in page:
                if model.name.startswith(prefix):
                    aliases = {alias: int(v) for alias, v in (model.aliases or {}).items()}
                    found[model.name] = ModelRecord(model.name, aliases, dict(model.tags or {}))
            token = page.token
            if not token:
                return found

    def read_versions(self, prefix: str, run_ids: Iterable[str] = ()) -> list[VersionRef]:
        """Versions of the models under ``prefix``; only those of ``run_ids`` when given."""
        run_ids = list(run_ids)
        query = f"name LIKE '{_like(prefix)}'"
        if run_ids:
            query = f"run_id IN ({', '.join(repr(run) for run in run_ids)})"
        result: list[VersionRef] = []
        token = None
        while True:
            page = self.client.search_model_versions(
                filter_string=query, max_results=50_000, page_token=token
            )
            result.extend(
                VersionRef(v.name, int(v.version), v.source or "", v.run_id, dict(v.tags or {}))
                for v in page
                if v.name.startswith(prefix)
            )
            token = page.token
            if not token:
                return result

    def read_chosen(self, prefix: str, pairs: Collection[tuple[str, int]]) -> list[VersionRef]:
        """The versions named by ``(name, version)`` pairs."""
        wanted = set(pairs)
        return [ref for ref in self.read_versions(prefix) if (ref.name, ref.version) in wanted]

    def register(
        self, registration: Registration, run_id: str, known: Mapping[str, ModelRecord]
    ) -> VersionRef:
        """Create a new version, and the registered model first when it is new.

        The caller guarantees it registers each (run, entity) once.
        """
        from mlflow.exceptions import MlflowException

        record = known.get(registration.name)
        if record is None:
            tags = registration.model_tags()
            try:
                _retry(lambda: self.client.create_registered_model(registration.name, tags=tags))
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        number = self._create_version(registration, run_id)
        had_champion = record is not None and CHAMPION in record.aliases
        if takes_champion(number, record is not None, had_champion):
            self.set_alias(registration.name, CHAMPION, number)
        return VersionRef(registration.name, number, registration.source, run_id, registration.tags)

    def register_many(
        self, registrations: list[Registration], run_id: str, known: Mapping[str, ModelRecord]
    ) -> dict[str, VersionRef | Exception]:
        """Register one model at a time (in parallel against a server); a refused entry maps
        to its error."""
        remote = self.client.tracking_uri.startswith(("http://", "https://"))
        with ThreadPoolExecutor(max_workers=_SERVER_THREADS if remote else 1) as pool:
            outcomes = list(
                pool.map(lambda r: self._register_or_error(r, run_id, known), registrations)
            )
        return {
            registration.name: outcome
            for registration, outcome in zip(registrations, outcomes, strict=True)
        }

    def set_aliases(self, moves: Iterable[tuple[str, str, int]]) -> None:
        """Point aliases at versions, ``(name, alias, version)`` each."""
        for name, alias, version in moves:
            self.set_alias(name, alias, version)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` of model ``name`` at ``version`` (retried while the store is busy)."""
        _retry(lambda: self.client.set_registered_model_alias(name, alias, str(version)))

    def delete_version(self, name: str, version: int) -> None:
        """Delete one version (a duplicate that a retried request created)."""
        _retry(lambda: self.client.delete_model_version(name, str(version)))

    def set_version_tags(self, updates: Iterable[tuple[str, int, Mapping[str, str]]]) -> None:
        """Set tags on existing versions, ``(name, version, tags)`` each (retried while busy)."""
        for name, version, tags in updates:
            for key, value in tags.items():
                self._set_version_tag(name, version, key, value)

    def _set_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        _retry(lambda: self.client.set_model_version_tag(name, str(version), key, value))

    def _register_or_error(
        self, registration: Registration, run_id: str, known: Mapping[str, ModelRecord]
    ) -> VersionRef | Exception:
        try:
            return self.register(registration, run_id, known)
        except Exception as exc:  # reported per entity by the caller
            return exc

    def _create_version(self, registration: Registration, run_id: str) -> int:
        """Create the version; after a transient error, first look whether it was created."""
        for attempt in range(_ATTEMPTS):
            try:
                version = self.client.create_model_version(
                    registration.name, source=registration.source, run_id=run_id,
                    tags=registration.version_tags(),
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


def _transient(exc: BaseException) -> bool:
    """A busy SQLite file, an unreachable or overloaded server: worth another try."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    code = getattr(exc, "error_code", None)
    text = str(exc).lower()
    return code in _TRANSIENT_CODES or "database is locked" in text or "timed out" in text


def _retry(action: Callable[[], T]) -> T:
    return retry(action, _transient, _ATTEMPTS, _BACKOFF)


def _like(prefix: str) -> str:
    # LIKE treats _ and % as wildcards; names are re-checked with startswith afterwards.
    return f"{prefix}%"


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
