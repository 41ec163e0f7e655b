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
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["BulkRegistry", "bulk_registry_for"]

_CHUNK = 400  # names per IN (...) clause, well inside every database's parameter limit
_STORE_INTERNALS = ("ManagedSessionMaker", "_get_workspace_clauses", "_with_workspace_field")
_TABLES = ("SqlRegisteredModel", "SqlModelVersion", "SqlModelVersionTag",
           "SqlRegisteredModelTag", "SqlRegisteredModelAlias")  # fmt: skip
_ATTEMPTS = 5


@dataclass(frozen=True)
class NewVersion:
    """One version to create (see :meth:`BulkRegistry.register`)."""

    name: str
    source: str
    model_tags: Mapping[str, str]
    version_tags: Mapping[str, str]


class BulkRegistry:
    """Creates registered models, versions, tags and aliases in bulk, idempotently per run."""

    def __init__(self, store: Any) -> None:
        from mlflow.store.model_registry.dbmodels import models as tables

        self.store = store
        self.tables = tables

    def register(self, versions: Sequence[NewVersion], run_id: str) -> dict[str, tuple[int, bool]]:
        """Create one version per entry (and the registered model when new).

        A version that this run already created is found and returned, never created twice.
        Version 1, or the first version of a model without a champion, gets ``champion``.

        Returns:
            ``{name: (version, champion_set)}`` for every entry.
        """
        result: dict[str, tuple[int, bool]] = {}
        for start in range(0, len(versions), _CHUNK):
            chunk = versions[start : start + _CHUNK]
            result.update(self._retrying(lambda chunk=chunk: self._register_chunk(chunk, run_id)))
        return result

    def set_aliases(self, moves: Iterable[tuple[str, str, int]]) -> None:
        """Point aliases at versions: ``(name, alias, version)`` each, in one transaction."""
        moves = list(moves)
        for start in range(0, len(moves), _CHUNK):
            chunk = moves[start : start + _CHUNK]
            self._retrying(lambda chunk=chunk: self._move_chunk(chunk))

    def read_models(self, prefix: str) -> list[tuple[str, dict[str, int], dict[str, str]]]:
        """``(name, aliases, tags)`` of every registered model whose name starts with ``prefix``."""
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
        by_name: dict[str, tuple[str, dict[str, int], dict[str, str]]] = {
            name: (name, {}, {}) for name in names if name.startswith(prefix)
        }
        for name, alias, version in aliases:
            if name in by_name:
                by_name[name][1][alias] = int(version)
        for name, key, value in tags:
            if name in by_name:
                by_name[name][2][key] = value
        return list(by_name.values())

    def read_versions(
        self, prefix: str, run_ids: Sequence[str] = ()
    ) -> list[tuple[str, int, str, str | None, dict[str, str]]]:
        """``(name, version, source, run_id, tags)`` of live versions under ``prefix``,
        optionally only those created by ``run_ids``."""
        from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL

        t = self.tables
        version, tag = t.SqlModelVersion, t.SqlModelVersionTag
        with self.store.ManagedSessionMaker() as session:
            query = self._like(session.query(version.name, version.version, version.source,
                                             version.run_id), version, prefix).filter(
                version.current_stage != STAGE_DELETED_INTERNAL)  # fmt: skip
            if run_ids:
                query = query.filter(version.run_id.in_(list(run_ids)))
            rows = query.all()
            tags = self._like(session.query(tag.name, tag.version, tag.key, tag.value), tag,
                              prefix).all()  # fmt: skip
        found: dict[tuple[str, int], tuple[str, int, str, str | None, dict[str, str]]] = {
            (name, int(number)): (name, int(number), source, run_id, {})
            for name, number, source, run_id in rows if name.startswith(prefix)}  # fmt: skip
        for name, number, key, value in tags:
            entry = found.get((name, int(number)))
            if entry is not None:
                entry[4][key] = value
        return list(found.values())

    def read_chosen_versions(
        self, pairs: Sequence[tuple[str, int]]
    ) -> list[tuple[str, int, str, str | None, dict[str, str]]]:
        """As :meth:`read_versions`, for given ``(name, version)`` pairs only: a forecast or a
        retrain reads the versions it uses, not the whole history of every model."""
        from mlflow.entities.model_registry.model_version_stages import STAGE_DELETED_INTERNAL

        t = self.tables
        version, tag = t.SqlModelVersion, t.SqlModelVersionTag
        found: dict[tuple[str, int], tuple[str, int, str, str | None, dict[str, str]]] = {}
        with self.store.ManagedSessionMaker() as session:
            for start in range(0, len(pairs), _CHUNK):
                chunk = [(name, int(number)) for name, number in pairs[start : start + _CHUNK]]
                columns = (version.name, version.version, version.source, version.run_id)
                rows = self._of_pairs(session.query(*columns), version, chunk).filter(
                    version.current_stage != STAGE_DELETED_INTERNAL
                )
                wanted = set(chunk)
                for name, number, source, run_id in rows.all():
                    if (name, int(number)) in wanted:
                        found[(name, int(number))] = (name, int(number), source, run_id, {})
                tags = self._of_pairs(
                    session.query(tag.name, tag.version, tag.key, tag.value), tag, chunk
                )
                for name, number, key, value in tags.all():
                    entry = found.get((name, int(number)))
                    if entry is not None:
                        entry[4][key] = value
        return list(found.values())

    def _of_pairs(self, query: Any, table: Any, pairs: list[tuple[str, int]]) -> Any:
        # Names IN and versions IN rather than a row-value IN, which SQL Server lacks; the
        # caller keeps only the exact pairs (a chunk rarely holds more than a few versions).
        return query.filter(
            table.name.in_(sorted({name for name, _ in pairs})),
            table.version.in_(sorted({number for _, number in pairs})),
            *self.store._get_workspace_clauses(table),
        )

    def _like(self, query: Any, table: Any, prefix: str) -> Any:
        # LIKE's wildcards in the prefix only widen the match; callers re-check startswith.
        return query.filter(
            table.name.like(f"{prefix}%"), *self.store._get_workspace_clauses(table)
        )

    def _register_chunk(
        self, chunk: Sequence[NewVersion], run_id: str
    ) -> dict[str, tuple[int, bool]]:
        from sqlalchemy import func

        t = self.tables
        names = [entry.name for entry in chunk]
        now = int(time.time() * 1000)
        with self.store.ManagedSessionMaker(read_only=False) as session:
            ours = dict(self._rows(session, t.SqlModelVersion, (t.SqlModelVersion.name, t.SqlModelVersion.version), names,
                                   t.SqlModelVersion.run_id == run_id))  # fmt: skip
            models = {name for (name,) in self._rows(session, t.SqlRegisteredModel,
                                                      (t.SqlRegisteredModel.name,), names)}  # fmt: skip
            latest = dict(self._rows(session, t.SqlModelVersion, (t.SqlModelVersion.name,
                                     func.max(t.SqlModelVersion.version)), names, group=True))  # fmt: skip
            champions = {name for (name,) in self._rows(
                session, t.SqlRegisteredModelAlias, (t.SqlRegisteredModelAlias.name,), names,
                t.SqlRegisteredModelAlias.alias == "champion")}  # fmt: skip
            created: dict[str, tuple[int, bool]] = {}
            rows: dict[Any, list[dict[str, Any]]] = {table: [] for table in self._order()}
            for entry in chunk:
                if entry.name in ours:
                    created[entry.name] = (int(ours[entry.name]), False)
                    continue
                version = int(latest.get(entry.name) or 0) + 1
                champion = version == 1 or (entry.name in models and entry.name not in champions)
                self._new_rows(
                    rows, entry, version, run_id, now, entry.name not in models, champion
                )
                created[entry.name] = (version, champion)
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
        self, rows: dict[Any, list[dict[str, Any]]], entry: NewVersion, version: int, run_id: str,
        now: int, new_model: bool, champion: bool,
    ) -> None:  # fmt: skip
        t = self.tables
        name = entry.name
        if new_model:
            rows[t.SqlRegisteredModel].append(
                {"name": name, "creation_time": now, "last_updated_time": now, "description": None}
            )
            rows[t.SqlRegisteredModelTag].extend(
                {"name": name, "key": k, "value": v} for k, v in entry.model_tags.items()
            )
        rows[t.SqlModelVersion].append({
            "name": name, "version": version, "creation_time": now, "last_updated_time": now,
            "description": None, "user_id": None, "current_stage": "None", "source": entry.source,
            "storage_location": entry.source, "run_id": run_id, "run_link": None,
            "status": "READY", "status_message": None,
        })  # fmt: skip
        rows[t.SqlModelVersionTag].extend(
            {"name": name, "version": version, "key": k, "value": v}
            for k, v in entry.version_tags.items())  # fmt: skip
        if champion:
            rows[t.SqlRegisteredModelAlias].append(
                {"name": name, "alias": "champion", "version": version}
            )

    def _move_chunk(self, chunk: Sequence[tuple[str, str, int]]) -> None:
        t = self.tables
        with self.store.ManagedSessionMaker(read_only=False) as session:
            for alias in {alias for _, alias, _ in chunk}:
                names = [name for name, each, _ in chunk if each == alias]
                self._filter(session.query(t.SqlRegisteredModelAlias), t.SqlRegisteredModelAlias,
                             names, t.SqlRegisteredModelAlias.alias == alias).delete(
                    synchronize_session=False)  # fmt: skip
            self._insert(session, {t.SqlRegisteredModelAlias: [
                {"name": name, "alias": alias, "version": version} for name, alias, version in chunk
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

    def _retrying(self, action: Any) -> Any:
        from sqlalchemy.exc import IntegrityError, OperationalError

        for attempt in range(_ATTEMPTS):
            try:
                return action()
            except (IntegrityError, OperationalError):
                # Another job took the same version numbers, or the database was busy: the
                # transaction rolled back whole, so recomputing it is safe.
                if attempt == _ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")


def bulk_registry_for(client: MlflowClient) -> BulkRegistry | None:
    """A bulk writer when the client's registry is MLflow's SQL store, else None."""
    try:
        from mlflow.store.model_registry.dbmodels import models as tables
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

        store = client._get_registry_client().store
        if not isinstance(store, SqlAlchemyStore):
            return None
        # Internals this module relies on; an MLflow release without one of them gets the
        # client API instead of failing in the middle of a job.
        if not all(hasattr(store, name) for name in _STORE_INTERNALS) or not all(
            hasattr(tables, name) for name in _TABLES
        ):
            return None
        return BulkRegistry(store)
    except Exception:  # an MLflow version without these modules: use the client API
        return None
