"""Registering many model versions in one database transaction.

MLflow's client API writes one registry object per call, each call its own transaction: about
10 ms per registered entity on SQLite, more than training a small model. When the registry is a
database that MLflow's SQL store manages (SQLite, PostgreSQL, MySQL, SQL Server), this module
writes a whole batch through that store's own session and table mappings instead: the same
rows, the same workspace handling, one transaction.

It is the same data MLflow itself writes, but two things differ from the client API: registry
webhooks are not sent, and MLflow's per-call validation is replaced by manymodels' own (names
are already safe by construction). Set ``tracking.bulk_registry: false`` to use the client API
instead, for example when a webhook must fire for every version.

Whether MLflow's store is one this module can write is decided once per registry, by
:mod:`~manymodels.tracking.registry_bulk_guard`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from manymodels.tracking.aliases import CHAMPION, takes_champion
from manymodels.tracking.registry_types import ModelRecord, Registration, VersionRef
from manymodels.tracking.retries import retry

__all__ = ["WRITTEN_COLUMNS", "BulkRegistry", "is_conflict"]

_CHUNK = 400  # names per IN (...) clause, well inside every database's parameter limit
T = TypeVar("T")
_ATTEMPTS = 5
# The columns each table's new rows set (besides ``workspace``, set where the store has one):
# the guard checks them against MLflow's own table definitions before the first write.
WRITTEN_COLUMNS = {
    "SqlRegisteredModel": ("name", "creation_time", "last_updated_time", "description"),
    "SqlRegisteredModelTag": ("name", "key", "value"),
    "SqlModelVersion": (
        "name", "version", "creation_time", "last_updated_time", "description", "user_id",
        "current_stage", "source", "storage_location", "run_id", "run_link", "status",
        "status_message",
    ),
    "SqlModelVersionTag": ("name", "version", "key", "value"),
    "SqlRegisteredModelAlias": ("name", "alias", "version"),
}  # fmt: skip


class BulkRegistry:
    """Creates registered models, versions, tags and aliases in bulk, idempotently per run."""

    def __init__(self, store: Any) -> None:
        from mlflow.store.model_registry.dbmodels import models as tables

        self.store = store
        self.tables = tables
        self._marks_writes = _takes_read_only(store.ManagedSessionMaker)

    def register_many(
        self, registrations: Sequence[Registration], run_id: str,
        known: Mapping[str, ModelRecord] | None = None,
    ) -> dict[str, VersionRef | Exception]:  # fmt: skip
        """Create one version per entry (and the registered model when new).

        A version that this run already created is found and returned, never created twice.
        Who gets ``champion`` is :func:`~manymodels.tracking.aliases.takes_champion`, decided
        on what the database holds (``known`` is not needed).

        Returns:
            ``{name: VersionRef}`` for every entry.
        """
        created: dict[str, int] = {}
        for chunk in _chunks(registrations):
            created.update(self._retrying(lambda chunk=chunk: self._register_chunk(chunk, run_id)))
        return {
            r.name: VersionRef(r.name, created[r.name], r.source, run_id, r.tags)
            for r in registrations
        }

    def set_aliases(self, moves: Iterable[tuple[str, str, int]]) -> None:
        """Point aliases at versions: ``(name, alias, version)`` each, in one transaction."""
        for chunk in _chunks(list(moves)):
            self._retrying(lambda chunk=chunk: self._move_chunk(chunk))

    def set_version_tags(self, updates: Iterable[tuple[str, int, Mapping[str, str]]]) -> None:
        """Set tags on existing versions, ``(name, version, tags)`` each, in one transaction
        per chunk (a tag already set is replaced)."""
        for chunk in _chunks(list(updates)):
            self._retrying(lambda chunk=chunk: self._tag_chunk(chunk))

    def read_models(self, prefix: str) -> dict[str, ModelRecord]:
        """Every registered model whose name starts with ``prefix``, with aliases and tags."""
        t = self.tables
        with self.store.ManagedSessionMaker() as session:
            names = [name for (name,) in self._like(session.query(t.SqlRegisteredModel.name),
                                                    t.SqlRegisteredModel, prefix)]  # fmt: skip
            aliases = self._like(session.query(t.SqlRegisteredModelAlias.name, t.SqlRegisteredModelAlias.alias,
                                               t.SqlRegisteredModelAlias.version),
                                 t.SqlRegisteredModelAlias, prefix).all()  # fmt: skip
            tags = self._like(session.query(t.SqlRegisteredModelTag.name, t.SqlRegisteredModelTag.key,
                                            t.SqlRegisteredModelTag.value),
                              t.SqlRegisteredModelTag, prefix).all()  # fmt: skip
        by_name = {name: ModelRecord(name, {}, {}) for name in names if name.startswith(prefix)}
        for name, alias, version in aliases:
            if name in by_name:
                by_name[name].aliases[alias] = int(version)
        for name, key, value in tags:
            if name in by_name:
                by_name[name].tags[key] = value
        return by_name

    def read_versions(self, prefix: str, run_ids: Iterable[str] = ()) -> list[VersionRef]:
        """Live versions under ``prefix``, optionally only those created by ``run_ids``."""
        from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL

        t = self.tables
        version, tag = t.SqlModelVersion, t.SqlModelVersionTag
        with self.store.ManagedSessionMaker() as session:
            query = self._like(session.query(version.name, version.version, version.source,
                                             version.run_id), version, prefix).filter(
                version.current_stage != STAGE_DELETED_INTERNAL)  # fmt: skip
            run_ids = list(run_ids)
            if run_ids:
                # Only the runs' own versions' tags, read by (name, version): joining the tag
                # table to the versions costs a second on a registry of a thousand models.
                rows = query.filter(version.run_id.in_(run_ids)).all()
                pairs = [(name, int(number)) for name, number, _, _ in rows
                         if name.startswith(prefix)]  # fmt: skip
                return self.read_chosen(prefix, pairs)
            tags = self._like(session.query(tag.name, tag.version, tag.key, tag.value), tag, prefix)
            rows = query.all()
            tags = tags.all()
        found: dict[tuple[str, int], VersionRef] = {
            (name, int(number)): VersionRef(name, int(number), source, run_id, {})
            for name, number, source, run_id in rows if name.startswith(prefix)}  # fmt: skip
        _add_tags(found, tags)
        return list(found.values())

    def read_chosen(self, prefix: str, pairs: Collection[tuple[str, int]]) -> list[VersionRef]:
        """As :meth:`read_versions`, for given ``(name, version)`` pairs only: a forecast or a
        retrain reads the versions it uses, not the whole history of every model."""
        from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL

        t = self.tables
        version, tag = t.SqlModelVersion, t.SqlModelVersionTag
        found: dict[tuple[str, int], VersionRef] = {}
        with self.store.ManagedSessionMaker() as session:
            for number, names in _names_by_version(pairs):
                columns = (version.name, version.version, version.source, version.run_id)
                rows = self._of_version(session.query(*columns), version, number, names).filter(
                    version.current_stage != STAGE_DELETED_INTERNAL
                )
                for name, _, source, run_id in rows.all():
                    found[(name, number)] = VersionRef(name, number, source, run_id, {})
                tags = self._of_version(
                    session.query(tag.name, tag.version, tag.key, tag.value), tag, number, names
                )
                _add_tags(found, tags.all())
        return list(found.values())

    def _of_version(self, query: Any, table: Any, number: int, names: Sequence[str]) -> Any:
        # One version number per query: names IN (...) with versions IN (...) matched every
        # version of those names, and a retrain's champions, read from a registry that keeps
        # every weekly version, came back with all of their predecessors and their tags.
        return query.filter(
            table.name.in_(names),
            table.version == number,
            *self.store._get_workspace_clauses(table),
        )

    def _like(self, query: Any, table: Any, prefix: str) -> Any:
        # LIKE's wildcards in the prefix only widen the match; callers re-check startswith.
        return query.filter(
            table.name.like(f"{prefix}%"), *self.store._get_workspace_clauses(table)
        )

    def _register_chunk(self, chunk: Sequence[Registration], run_id: str) -> dict[str, int]:
        from sqlalchemy import func

        t = self.tables
        names = [entry.name for entry in chunk]
        now = int(time.time() * 1000)
        with self._write_session() as session:
            ours = dict(self._rows(session, t.SqlModelVersion, (t.SqlModelVersion.name, t.SqlModelVersion.version), names,
                                   t.SqlModelVersion.run_id == run_id))  # fmt: skip
            models = {name for (name,) in self._rows(session, t.SqlRegisteredModel,
                                                      (t.SqlRegisteredModel.name,), names)}  # fmt: skip
            latest = dict(self._rows(session, t.SqlModelVersion, (t.SqlModelVersion.name,
                                     func.max(t.SqlModelVersion.version)), names, group=True))  # fmt: skip
            champions = {name for (name,) in self._rows(
                session, t.SqlRegisteredModelAlias, (t.SqlRegisteredModelAlias.name,), names,
                t.SqlRegisteredModelAlias.alias == CHAMPION)}  # fmt: skip
            created: dict[str, int] = {}
            rows: dict[Any, list[dict[str, Any]]] = {table: [] for table in self._order()}
            for entry in chunk:
                if entry.name in ours:
                    created[entry.name] = int(ours[entry.name])
                    continue
                version = int(latest.get(entry.name) or 0) + 1
                existed = entry.name in models
                champion = takes_champion(version, existed, entry.name in champions)
                self._new_rows(rows, entry, version, run_id, now, not existed, champion)
                created[entry.name] = version
            touched = [name for name in models if name in created]
            if touched:
                self._filter(session.query(t.SqlRegisteredModel), t.SqlRegisteredModel, touched).update(
                    {t.SqlRegisteredModel.last_updated_time: now}, synchronize_session=False)  # fmt: skip
            self._insert(session, rows)
        return created

    def _order(self) -> list[Any]:
        # Parents before children, for databases that check foreign keys at each statement.
        t = self.tables
        return [t.SqlRegisteredModel, t.SqlRegisteredModelTag, t.SqlModelVersion,
                t.SqlModelVersionTag, t.SqlRegisteredModelAlias]  # fmt: skip

    def _insert(self, session: Any, rows: Mapping[Any, list[dict[str, Any]]]) -> None:
        """Executemany inserts into the mapped tables themselves: the ORM's unit of work costs
        ~0.1 ms per object, and even its bulk path more than half of a registration."""
        from sqlalchemy import insert

        workspace = self._workspace()
        for table in self._order():
            values = rows.get(table) or []
            if not values:
                continue
            if workspace is not None and hasattr(table, "workspace"):
                values = [{**value, "workspace": workspace} for value in values]
            session.execute(insert(table.__table__), values)

    def _workspace(self) -> str | None:
        probe = self.store._with_workspace_field(self.tables.SqlRegisteredModel(name="probe"))
        return getattr(probe, "workspace", None)

    def _new_rows(
        self, rows: dict[Any, list[dict[str, Any]]], entry: Registration, version: int, run_id: str,
        now: int, new_model: bool, champion: bool,
    ) -> None:  # fmt: skip
        t = self.tables
        name = entry.name
        if new_model:
            rows[t.SqlRegisteredModel].append(
                {"name": name, "creation_time": now, "last_updated_time": now, "description": None}
            )
            rows[t.SqlRegisteredModelTag].extend(
                {"name": name, "key": k, "value": v} for k, v in entry.model_tags().items()
            )
        rows[t.SqlModelVersion].append({
            "name": name, "version": version, "creation_time": now, "last_updated_time": now,
            "description": None, "user_id": None, "current_stage": "None", "source": entry.source,
            "storage_location": entry.source, "run_id": run_id, "run_link": None,
            "status": "READY", "status_message": None,
        })  # fmt: skip
        rows[t.SqlModelVersionTag].extend(
            {"name": name, "version": version, "key": k, "value": v}
            for k, v in entry.version_tags().items())  # fmt: skip
        if champion:
            rows[t.SqlRegisteredModelAlias].append(
                {"name": name, "alias": CHAMPION, "version": version}
            )

    def _move_chunk(self, chunk: Sequence[tuple[str, str, int]]) -> None:
        t = self.tables
        with self._write_session() as session:
            for alias in {alias for _, alias, _ in chunk}:
                names = [name for name, each, _ in chunk if each == alias]
                self._filter(session.query(t.SqlRegisteredModelAlias), t.SqlRegisteredModelAlias,
                             names, t.SqlRegisteredModelAlias.alias == alias).delete(
                    synchronize_session=False)  # fmt: skip
            self._insert(session, {t.SqlRegisteredModelAlias: [
                {"name": name, "alias": alias, "version": version} for name, alias, version in chunk
            ]})  # fmt: skip

    def _tag_chunk(self, chunk: Sequence[tuple[str, int, Mapping[str, str]]]) -> None:
        tag = self.tables.SqlModelVersionTag
        # One delete per version number and set of keys (usually one for the whole chunk):
        # names IN with versions IN would also match the other versions of these models.
        groups: dict[tuple[int, tuple[str, ...]], list[str]] = {}
        for name, version, tags in chunk:
            groups.setdefault((int(version), tuple(sorted(tags))), []).append(name)
        with self._write_session() as session:
            for (version, keys), names in groups.items():
                self._filter(session.query(tag), tag, names, tag.version == version,
                             tag.key.in_(keys)).delete(synchronize_session=False)  # fmt: skip
            self._insert(session, {tag: [
                {"name": name, "version": int(version), "key": key, "value": value}
                for name, version, tags in chunk for key, value in tags.items()
            ]})  # fmt: skip

    def _rows(self, session: Any, table: Any, columns: tuple[Any, ...], names: list[str],
              *clauses: Any, group: bool = False) -> list[tuple[Any, ...]]:  # fmt: skip
        query = self._filter(session.query(*columns), table, names, *clauses)
        if group:
            query = query.group_by(table.name)
        return [tuple(row) for row in query.all()]

    def _filter(self, query: Any, table: Any, names: list[str], *clauses: Any) -> Any:
        return query.filter(
            table.name.in_(names), *clauses, *self.store._get_workspace_clauses(table)
        )

    def _write_session(self) -> Any:
        """A session for writing: on the primary database where MLflow routes reads to a
        replica (MLflow 3.13 and later mark sessions read-only or not; earlier ones have no
        such flag, and every session writes)."""
        if self._marks_writes:
            return self.store.ManagedSessionMaker(read_only=False)
        return self.store.ManagedSessionMaker()

    def _retrying(self, action: Any) -> Any:
        # Another job took the same version numbers, or the database was busy: the
        # transaction rolled back whole, so recomputing it is safe.
        return retry(action, is_conflict, _ATTEMPTS, backoff=0.1)


def _takes_read_only(session_maker: Any) -> bool:
    try:
        return "read_only" in inspect.signature(session_maker).parameters
    except (TypeError, ValueError):  # no signature to read: assume the older form
        return False


def is_conflict(exc: BaseException) -> bool:
    """Whether an error is a unique-key clash or a busy database, however MLflow wrapped it.

    MLflow's session wrapper re-raises SQLAlchemy's ``IntegrityError`` and
    ``OperationalError`` as ``MlflowException``; the original is its ``__cause__`` (or
    ``__context__``).
    """
    from sqlalchemy.exc import IntegrityError, OperationalError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, IntegrityError | OperationalError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _add_tags(
    found: Mapping[tuple[str, int], VersionRef], tags: Iterable[tuple[str, Any, str, str]]
) -> None:
    for name, number, key, value in tags:
        ref = found.get((name, int(number)))
        # Every VersionRef here was made with a fresh dict of tags, filled in now.
        if ref is not None and isinstance(ref.tags, dict):
            ref.tags[key] = value


def _names_by_version(pairs: Iterable[tuple[str, int]]) -> Iterator[tuple[int, Sequence[str]]]:
    """``(name, version)`` pairs as chunks of names that share a version number."""
    names: dict[int, set[str]] = {}
    for name, number in pairs:
        names.setdefault(int(number), set()).add(name)
    for number in sorted(names):
        for chunk in _chunks(sorted(names[number])):
            yield number, chunk


def _chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in slices of :data:`_CHUNK`, one registry transaction each."""
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
