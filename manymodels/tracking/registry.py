"""The MLflow model registry, used in bulk and idempotently: one facade, two backends.

A job registers one version per trained entity. Reads are done in bulk (all models with the
job's prefix at once), and writes are idempotent: a version created by a job's run is found
again by its run id, so a retried task or a resumed job never registers twice.

The backend is :class:`~manymodels.tracking.registry_bulk.BulkRegistry` (one database
transaction per batch) when the registry is a database MLflow's SQL store manages and
``tracking.bulk_registry`` is on, else :class:`~manymodels.tracking.registry_client.ClientRegistry`
(MLflow's client API, one call per object).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from manymodels.errors import RegistryError
from manymodels.tracking.aliases import CHALLENGER, CHAMPION
from manymodels.tracking.registry_client import ClientRegistry
from manymodels.tracking.registry_types import ModelRecord, Registration, VersionRef

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from manymodels.tracking.registry_bulk import BulkRegistry

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "ModelRecord",
    "Registration",
    "Registry",
    "VersionRef",
]


class Registry:
    """Bulk, idempotent access to the registered models that share a name prefix.

    Args:
        client: an MLflow client.
        prefix: ``tracking.model_prefix``; every name handled starts with ``prefix.``.
        bulk: use one database transaction per batch where the registry allows it.

    Attributes:
        bulk: the bulk backend, or None when the client API is used.
        fallback: why the bulk backend was asked for but is not used, else None.
    """

    def __init__(self, client: MlflowClient, prefix: str, bulk: bool = True) -> None:
        from manymodels.tracking.registry_bulk_guard import open_bulk_registry

        self.client_api = ClientRegistry(client)
        self.prefix = prefix
        self.bulk: BulkRegistry | None = None
        self.fallback: str | None = None
        if bulk:
            self.bulk, self.fallback = open_bulk_registry(client)
        self._backend: BulkRegistry | ClientRegistry = self.bulk or self.client_api

    def models(self) -> dict[str, ModelRecord]:
        """Every registered model under the prefix, with aliases and tags (paged, in bulk)."""
        return self._backend.read_models(self._names())

    def versions(
        self,
        run_ids: Iterable[str] | None = None,
        chosen: Collection[tuple[str, int]] | None = None,
    ) -> list[VersionRef]:
        """Model versions under the prefix, optionally only those created by some runs, or only
        the ``chosen`` ``(name, version)`` pairs (read directly from a database registry)."""
        if chosen is not None:
            return self._backend.read_chosen(self._names(), list(chosen)) if chosen else []
        return self._backend.read_versions(self._names(), list(run_ids or []))

    def register(
        self, registration: Registration, run_id: str, known: Mapping[str, ModelRecord]
    ) -> VersionRef:
        """Create one new version, and the registered model first when it is new (through the
        client API: one version needs no bulk path).

        ``champion`` goes to version 1, or to the new version when the model has no champion.
        The caller guarantees it registers each (run, entity) once; see :meth:`versions`.
        """
        return self.client_api.register(registration, run_id, known)

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
        return self._backend.register_many(registrations, run_id, known)

    def settle(self, run_id: str) -> dict[str, int]:
        """Leave a run with exactly one version per model, each with the ``champion`` that
        :func:`~manymodels.tracking.aliases.takes_champion` gives it.

        A version can be in doubt after a fault: MLflow's HTTP client retries a create request
        whose first attempt did reach the server (two versions from one run), and a driver
        killed between creating a version and setting its alias leaves it without one. Found
        by the run's id, a second version of a model is deleted (the first is kept), and a
        model without ``champion`` gets the run's version as its champion: the rule gives it
        that when the model had no champion before the run.

        Returns:
            ``{name: version}``: the run's one version of each model.
        """
        numbers: dict[str, list[int]] = {}
        for ref in self.versions(run_ids=[run_id]):
            numbers.setdefault(ref.name, []).append(ref.version)
        kept = {name: min(found) for name, found in numbers.items()}
        extra = {(name, n) for name, found in numbers.items() for n in found if n != kept[name]}
        for name, number in sorted(extra):
            self.client_api.delete_version(name, number)
        models = self.models() if kept else {}
        moves = []
        for name, version in kept.items():
            champion = models[name].aliases.get(CHAMPION) if name in models else None
            if champion is None or (name, champion) in extra:
                moves.append((name, CHAMPION, version))
        self.set_aliases(moves)
        return kept

    def set_aliases(self, moves: list[tuple[str, str, int]]) -> None:
        """Point aliases at versions, ``(name, alias, version)`` each, in bulk when possible."""
        self._backend.set_aliases(moves)

    def set_version_tags(self, updates: Sequence[tuple[str, int, Mapping[str, str]]]) -> None:
        """Set tags on existing versions, ``(name, version, tags)`` each, in bulk when
        possible: a retrain tags the champions it kept with their data's new listing."""
        if updates:
            self._backend.set_version_tags(updates)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` of model ``name`` at ``version``."""
        self.client_api.set_alias(name, alias, version)

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

    def _names(self) -> str:
        return f"{self.prefix}."
