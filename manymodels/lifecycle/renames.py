"""Bringing a registry written by the older, escaped naming up to the readable names.

Before the readable names, ``_`` was the escape character and was itself escaped
(``sales.user_5Fid=u043``). A registered model whose name is the legacy name of its own entity
keys (the ``manymodels.entity_keys`` tag) is renamed to the readable name once; its versions,
aliases and tags go with it. Jobs do this as they first read the registry, so a registry
written by an earlier release keeps working without a command.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from manymodels import lineage
from manymodels.naming import legacy_model_name, model_name
from manymodels.tracking.registry import ModelRecord, Registry
from manymodels.tracking.registry_edits import rename_model

__all__ = ["legacy_renames", "rename_legacy_models"]


def legacy_renames(models: Mapping[str, ModelRecord], prefix: str) -> list[tuple[str, str]]:
    """The ``(legacy name, readable name)`` of every model still named the older way.

    A model whose readable name is already taken (both exist) is left alone: merging two
    models' versions is a decision for a person.
    """
    renames = []
    for name, record in models.items():
        keys = _entity_keys(record)
        if not keys:
            continue
        readable = model_name(prefix, keys)
        if name != readable and readable not in models and name == legacy_model_name(prefix, keys):
            renames.append((name, readable))
    return renames


def rename_legacy_models(registry: Registry) -> dict[str, ModelRecord]:
    """Rename the models still named the older way; return every model under the prefix,
    by its (new) name."""
    models = registry.models()
    renames = legacy_renames(models, registry.prefix)
    for old, new in renames:
        rename_model(registry, old, new)
        record = models.pop(old)
        models[new] = ModelRecord(new, record.aliases, record.tags)
    return models


def _entity_keys(record: ModelRecord) -> dict[str, str]:
    try:
        keys = json.loads(record.tags.get(lineage.ENTITY_KEYS, "") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in keys.items()} if isinstance(keys, dict) else {}
