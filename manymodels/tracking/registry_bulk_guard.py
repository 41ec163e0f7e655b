"""Whether the bulk registry path can write this registry, decided before its first write.

The bulk path writes rows into MLflow's own registry tables through MLflow's SQL store. It is
used only when the store is MLflow's ``SqlAlchemyStore``, has the internals the bulk path calls,
and each table's definition (MLflow's own SQLAlchemy mapping) has every column the bulk path
writes and nothing it would leave unset that the database requires. Otherwise the registry is
written through the client API, and the reason is announced once per process in the log (and,
by the job, as a tag on its run), never silently.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from manymodels.tracking.registry_bulk import WRITTEN_COLUMNS, BulkRegistry

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["open_bulk_registry", "unwritable_columns"]

_logger = logging.getLogger("manymodels")
_STORE_INTERNALS = ("ManagedSessionMaker", "_get_workspace_clauses", "_with_workspace_field")
# Columns the store fills itself where the table has them.
_SET_BY_STORE = {"workspace"}
_announced: set[str] = set()


def open_bulk_registry(client: MlflowClient) -> tuple[BulkRegistry | None, str | None]:
    """The bulk backend for the client's registry, or why the client API is used instead.

    Returns:
        ``(backend, None)`` when the bulk path can write the registry; ``(None, None)`` when the
        registry is not a database (a tracking server: the client API is the only way);
        ``(None, reason)`` when it is a database the bulk path cannot write safely.
    """
    try:
        from mlflow.store.model_registry.dbmodels import models as tables
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

        store = client._get_registry_client().store
    except Exception as exc:  # an MLflow without these modules: the client API still works
        return None, _announce(f"MLflow's SQL registry store is not importable ({exc!r})")
    if not isinstance(store, SqlAlchemyStore):
        return None, None
    problem = _missing_internals(store) or unwritable_columns(tables)
    if problem is not None:
        return None, _announce(problem)
    return BulkRegistry(store), None


def unwritable_columns(tables: Any) -> str | None:
    """What keeps the bulk path from writing MLflow's registry tables, or None.

    Args:
        tables: MLflow's registry table mappings (``mlflow.store.model_registry.dbmodels.models``).
    """
    for mapped, written in WRITTEN_COLUMNS.items():
        table = getattr(getattr(tables, mapped, None), "__table__", None)
        if table is None:
            return f"MLflow has no table mapping {mapped}"
        columns = {column.name: column for column in table.columns}
        unknown = sorted(set(written) - set(columns))
        if unknown:
            return f"{table.name} has no columns {unknown}"
        unset = sorted(
            name
            for name, column in columns.items()
            if name not in written and name not in _SET_BY_STORE and _required(column)
        )
        if unset:
            return f"{table.name} requires columns {unset} that the bulk path does not write"
    return None


def _required(column: Any) -> bool:
    # A value the database needs and neither it nor SQLAlchemy fills in.
    return not column.nullable and column.default is None and column.server_default is None


def _missing_internals(store: Any) -> str | None:
    missing = [name for name in _STORE_INTERNALS if not hasattr(store, name)]
    return f"MLflow's registry store lacks {missing}" if missing else None


def _announce(problem: str) -> str:
    reason = f"bulk registry off: {problem}; registering through the MLflow client API"
    if reason not in _announced:
        _announced.add(reason)
        _logger.warning(
            "tracking.bulk_registry: %s (one call per model: slower, same registry contents). "
            "Hint: check that this MLflow version is in manymodels' supported range.",
            reason,
        )
    return reason
