"""The registry as the model commands see it: every entity's model, its versions and aliases.

One read of the registry (models, then every version with its creation time) gives a
:class:`Catalog`; the commands decide and validate everything on it before they change
anything, so a bad request leaves the registry as it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from manymodels import lineage
from manymodels.artifacts.bundle import bundle_name
from manymodels.errors import RegistryError
from manymodels.lifecycle.renames import legacy_renames
from manymodels.naming import model_name
from manymodels.tracking.aliases import CHAMPION
from manymodels.tracking.registry_edits import dated_versions

if TYPE_CHECKING:
    from manymodels.config import Config
    from manymodels.tracking.store import Tracking

__all__ = ["Catalog", "Entity", "Version", "open_catalog", "parse_keys"]


@dataclass(frozen=True)
class Version:
    """One registered version of an entity's model.

    Attributes:
        number: the version number.
        job_id: the job that registered it (``manymodels.job_id``).
        created: when it was registered (UTC).
        tags: its tags: keys, lineage and backtest metrics.
        run_id: the job's MLflow run.
    """

    number: int
    job_id: str
    created: datetime
    tags: Mapping[str, str]
    run_id: str | None


@dataclass
class Entity:
    """One entity's registered model: its keys, aliases and versions (oldest first)."""

    name: str
    keys: dict[str, str]
    aliases: dict[str, int]
    versions: list[Version] = field(default_factory=list)

    def version(self, number: int) -> Version | None:
        """The version with that number, or None."""
        return next((v for v in self.versions if v.number == number), None)

    def require(self, number: int) -> Version:
        """The version with that number.

        Raises:
            RegistryError: the model has no such version.
        """
        found = self.version(number)
        if found is None:
            have = ", ".join(str(v.number) for v in self.versions) or "none"
            raise RegistryError(f"{self.name} has no version {number} (its versions: {have}).")
        return found

    @property
    def champion(self) -> Version | None:
        """The version the ``champion`` alias points at, or None."""
        number = self.aliases.get(CHAMPION)
        return self.version(number) if number is not None else None

    def aliases_of(self, number: int) -> list[str]:
        """The aliases that point at a version."""
        return sorted(alias for alias, target in self.aliases.items() if target == number)

    def label(self) -> str:
        """The entity as a user types it: ``store=12 brand=tropicana``."""
        return " ".join(f"{key}={value}" for key, value in self.keys.items())


@dataclass
class Catalog:
    """Every entity model under the config's prefix (a job bundle is not an entity model)."""

    session: Tracking
    prefix: str
    entity_cols: list[str]
    entities: dict[str, Entity]  # by readable name

    def find(self, keys: Mapping[str, str]) -> Entity:
        """The entity with these key values.

        Raises:
            RegistryError: no model is registered for them.
        """
        name = model_name(self.prefix, keys)
        entity = self.entities.get(name)
        if entity is None:
            shown = " ".join(f"{key}={value}" for key, value in keys.items())
            raise RegistryError(
                f"no registered model for the entity {shown} (looked for '{name}'). Hint: "
                "'manymodels models list -c CONFIG' lists the entities."
            )
        return entity

    def versions_of_job(self, job_id: str) -> list[tuple[Entity, Version]]:
        """Every version that a job registered, with its entity."""
        return [(entity, version) for entity in self.entities.values()
                for version in entity.versions if version.job_id == job_id]  # fmt: skip


def open_catalog(config: Config) -> Catalog:
    """Read the config's registry into a :class:`Catalog`, changing nothing.

    A model still named the older way is found under its readable name and keeps its
    registered name (``Entity.name``) for every write; the next job renames it.
    """
    from manymodels.tracking.store import open_tracking

    session = open_tracking(config)
    registry = session.registry
    prefix = config.tracking.model_prefix
    models = registry.models()
    readable = dict(legacy_renames(models, prefix))
    entities = {
        readable.get(name, name): Entity(
            name, _keys_of(record.tags, config.data.entity_cols), dict(record.aliases)
        )
        for name, record in models.items()
        if name != bundle_name(prefix)
    }
    by_registered_name = {entity.name: entity for entity in entities.values()}
    for dated in dated_versions(registry):
        entity = by_registered_name.get(dated.ref.name)
        if entity is not None:
            tags = dict(dated.ref.tags)
            entity.versions.append(Version(dated.ref.version, tags.get(lineage.JOB_ID, ""),
                                           dated.created, tags, dated.ref.run_id))  # fmt: skip
    for entity in entities.values():
        entity.versions.sort(key=lambda version: version.number)
    return Catalog(session, prefix, list(config.data.entity_cols), entities)


def parse_keys(items: Iterable[str], entity_cols: list[str]) -> dict[str, str]:
    """``["store=12", "brand=tropicana"]`` as keys in the configured order.

    Raises:
        RegistryError: an item is not ``KEY=VALUE``, names no key column, or a column is missing.
    """
    keys: dict[str, str] = {}
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or column not in entity_cols:
            raise RegistryError(
                f"'{item}' names no entity key. Hint: give every key column as KEY=VALUE, "
                f"e.g. {' '.join(f'{col}=...' for col in entity_cols)}."
            )
        keys[column] = value
    missing = [col for col in entity_cols if col not in keys]
    if missing:
        raise RegistryError(
            f"the entity's key {', '.join(missing)} is missing. Hint: give every key column as "
            f"KEY=VALUE, e.g. {' '.join(f'{col}=...' for col in entity_cols)}."
        )
    return {col: keys[col] for col in entity_cols}


def _keys_of(tags: Mapping[str, str], entity_cols: list[str]) -> dict[str, str]:
    try:
        keys = json.loads(tags.get(lineage.ENTITY_KEYS, "") or "{}")
    except ValueError:
        keys = {}
    return {col: str(keys.get(col, tags.get(col, ""))) for col in entity_cols}
