"""Registry edits that users ask for by hand (``manymodels models``): renaming a model,
deleting a version, removing an alias, and reading versions with their creation times.

Jobs never call these; they go through :class:`~manymodels.tracking.registry.Registry`. The
edits use MLflow's client API (one call per object): they concern one entity, a job's
entities or old versions, a few thousand calls at most, and are retried while the store is
busy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from manymodels.tracking.registry_client import _transient
from manymodels.tracking.registry_types import VersionRef
from manymodels.tracking.retries import retry

if TYPE_CHECKING:
    from manymodels.tracking.registry import Registry

__all__ = ["DatedVersion", "dated_versions", "delete_alias", "delete_version", "rename_model"]

T = TypeVar("T")


@dataclass(frozen=True)
class DatedVersion:
    """A model version and when it was registered (UTC)."""

    ref: VersionRef
    created: datetime


def rename_model(registry: Registry, name: str, new_name: str) -> None:
    """Rename a registered model; its versions, aliases and tags go with it. A model that
    another process renamed first (it is gone, the new name exists) is left as it is."""
    from mlflow.exceptions import MlflowException

    client = registry.client_api.client
    try:
        _retry(lambda: client.rename_registered_model(name, new_name))
    except MlflowException as exc:
        if exc.error_code not in {"RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS"}:
            raise


def delete_version(registry: Registry, name: str, version: int) -> None:
    """Delete one model version (its artifacts stay in the job's run)."""
    client = registry.client_api.client
    _retry(lambda: client.delete_model_version(name, str(version)))


def delete_alias(registry: Registry, name: str, alias: str) -> None:
    """Remove an alias from a model."""
    client = registry.client_api.client
    _retry(lambda: client.delete_registered_model_alias(name, alias))


def dated_versions(registry: Registry) -> list[DatedVersion]:
    """Every version of the models under the registry's prefix, with its creation time (paged,
    one search for all models)."""
    client = registry.client_api.client
    prefix = f"{registry.prefix}."
    found: list[DatedVersion] = []
    token = None
    while True:
        page = client.search_model_versions(
            filter_string=f"name LIKE '{_quote(prefix)}%'", max_results=50_000, page_token=token
        )
        for v in page:
            if v.name.startswith(prefix):
                ref = VersionRef(v.name, int(v.version), v.source or "", v.run_id,
                                 dict(v.tags or {}))  # fmt: skip
                created = datetime.fromtimestamp((v.creation_timestamp or 0) / 1000, UTC)
                found.append(DatedVersion(ref, created))
        token = page.token
        if not token:
            return found


def _retry(action: Callable[[], T]) -> T:
    return retry(action, _transient)


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
