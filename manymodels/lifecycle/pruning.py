"""Deleting old model versions, never one that an alias points at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from manymodels.config import Config
from manymodels.errors import RegistryError
from manymodels.lifecycle.catalog import Catalog, Entity, open_catalog
from manymodels.tracking.registry_edits import delete_version

__all__ = ["Deletion", "plan_prune", "prune_models"]


@dataclass(frozen=True)
class Deletion:
    """One model version to delete."""

    name: str
    keys: Mapping[str, str]
    version: int

    def describe(self) -> str:
        return f"{self.name}: version {self.version}"


def prune_models(
    config: Config,
    keep: int | None = None,
    keys: Mapping[str, str] | None = None,
    *,
    version: int | None = None,
    dry_run: bool = False,
) -> list[Deletion]:
    """Delete old versions: all but the ``keep`` newest of every entity (or of one entity),
    or one entity's ``version``. A version with an alias (``champion``, ``challenger``, ...) is
    never deleted. The models' artifacts stay in their jobs' runs.

    Args:
        config: the job configuration whose registry to change.
        keep: how many of the newest versions to keep per entity (at least 1).
        keys: only this entity.
        version: with ``keys``, delete this one version instead.
        dry_run: plan and check only; change nothing.

    Raises:
        RegistryError: a bad ``keep``, an unknown entity, a version that does not exist or
            has an alias; nothing changed.
    """
    catalog = open_catalog(config)
    deletions = plan_prune(catalog, keep, keys, version)
    if not dry_run:
        for deletion in deletions:
            delete_version(catalog.session.registry, deletion.name, deletion.version)
    return deletions


def plan_prune(
    catalog: Catalog, keep: int | None, keys: Mapping[str, str] | None, version: int | None
) -> list[Deletion]:
    """The versions a prune deletes, checked against the catalog."""
    if (keep is None) == (version is None):
        raise RegistryError("give --keep N, or one entity's KEY=VALUE pairs and --version N.")
    if version is not None:
        if not keys:
            raise RegistryError("--version goes with one entity's KEY=VALUE pairs.")
        return [_one_version(catalog.find(keys), version)]
    if keep is None or keep < 1:
        raise RegistryError(f"--keep must be at least 1 (the newest version stays). Got {keep}.")
    entities = [catalog.find(keys)] if keys else sorted(catalog.entities.values(),
                                                        key=lambda e: e.name)  # fmt: skip
    return [deletion for entity in entities for deletion in _old_versions(entity, keep)]


def _old_versions(entity: Entity, keep: int) -> list[Deletion]:
    kept = {v.number for v in entity.versions[-keep:]} | set(entity.aliases.values())
    return [Deletion(entity.name, entity.keys, v.number)
            for v in entity.versions if v.number not in kept]  # fmt: skip


def _one_version(entity: Entity, number: int) -> Deletion:
    entity.require(number)
    aliases = entity.aliases_of(number)
    if aliases:
        raise RegistryError(
            f"{entity.name} version {number} has the alias {', '.join(aliases)} and is not "
            "deleted. Hint: move the alias first ('manymodels models promote' or 'rollback')."
        )
    return Deletion(entity.name, entity.keys, number)
