"""The fingerprinting task: the current data fingerprint of every entity of some partitions."""

from __future__ import annotations

from manymodels.config import Config
from manymodels.data import Partition
from manymodels.naming import model_name
from manymodels.tasks.entities import entity_fingerprint, iter_entities

__all__ = ["fingerprint_batch"]


def fingerprint_batch(partitions: list[Partition], config: Config) -> list[tuple[str, str | None]]:
    """``(model name, fingerprint)`` of every entity of the partitions, as a training job would
    record it; None for an entity (or partition) that cannot be read."""
    found: list[tuple[str, str | None]] = []
    for keys, frame, failure in iter_entities(partitions, config):
        name = model_name(config.tracking.model_prefix, keys)
        found.append((name, None if failure is not None else entity_fingerprint(frame, config)))
    return found
