"""What the registry hands out and takes in: versions, models, and versions to create."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from manymodels import lineage

__all__ = ["ModelRecord", "Registration", "VersionRef"]


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
    """A version to create: which model, from which artifact, with which tags.

    Attributes:
        name: the registered model's name.
        keys: the entity's key values (none for a job bundle).
        source: the artifact URI of the model.
        tags: the version's lineage tags.
    """

    name: str
    keys: Mapping[str, str]
    source: str
    tags: Mapping[str, str]

    def model_tags(self) -> dict[str, str]:
        """The tags of the registered model when this version creates it: its keys."""
        return {**self.keys, lineage.ENTITY_KEYS: json.dumps(dict(self.keys))}

    def version_tags(self) -> dict[str, str]:
        """The tags of the new version: its keys and lineage."""
        return {**self.keys, **self.tags}
