"""Which model forecasts each entity, and how a forecast's entities are batched around them.

Each function here serves one registration mode (see :mod:`manymodels.jobs.modes`): with
``per_entity``, each entity's registered model; with ``per_job``, the entity's member of the
job bundle, whose shards decide the batches.
"""

from __future__ import annotations

import math
from collections import defaultdict

from manymodels.artifacts.bundle import bundle_name, read_manifest, split_location
from manymodels.config import Config
from manymodels.data import Partition
from manymodels.errors import RegistryError
from manymodels.lifecycle.renames import rename_legacy_models
from manymodels.naming import model_name
from manymodels.planning import batch_count, plan_batches
from manymodels.tasks.forecasting import ModelRef
from manymodels.tracking.registry import Registry

__all__ = [
    "EntityModels",
    "Item",
    "ModelRefs",
    "batches_by_shard",
    "batches_by_size",
    "models_by_entity",
    "models_in_bundle",
]

ModelRefs = dict[str, ModelRef]
# One partition and the models of its entities.
Item = tuple[Partition, ModelRefs]
# Every entity's model name -> (its key values, its model).
EntityModels = dict[str, tuple[dict[str, str], ModelRef]]


def models_by_entity(
    registry: Registry, config: Config, alias: str | None, version: int | None
) -> EntityModels:
    """Each entity's own registered model, by alias or version, looked up in bulk.

    Raises:
        RegistryError: nothing is registered under that alias or version.
    """
    bundle = bundle_name(config.tracking.model_prefix)
    # A registry written by the older naming is renamed first, so entities find their models.
    rename_legacy_models(registry)
    return {
        name: (
            {col: ref.tags.get(col, "") for col in config.data.entity_cols},
            (ref.name, ref.version, ref.source),
        )
        for name, ref in registry.resolve(alias=alias, version=version).items()
        if name != bundle
    }


def models_in_bundle(
    registry: Registry, config: Config, alias: str | None, version: int | None
) -> EntityModels:
    """Each entity's member of the job bundle that has the alias or version.

    Raises:
        RegistryError: the job bundle has no such alias or version.
    """
    bundle = bundle_name(config.tracking.model_prefix)
    ref = registry.resolve(alias=alias, version=version).get(bundle)
    if ref is None:
        what = f"alias '{alias}'" if alias is not None else f"version {version}"
        raise RegistryError(f"the job bundle '{bundle}' has no {what}. Hint: run "
                            "'manymodels train' with tracking.registration: per_job first.")  # fmt: skip
    prefix, entity_cols = config.tracking.model_prefix, config.data.entity_cols
    models = {}
    for row in read_manifest(ref.source).to_dict("records"):
        keys = {col: str(row[col]) for col in entity_cols}
        # By the name computed now: a bundle written by the older naming lists escaped names.
        models[model_name(prefix, keys)] = (keys, (ref.name, ref.version, row["location"]))
    return models


def batches_by_size(items: list[Item], workers: int, config: Config) -> list[list[Item]]:
    """Batches of partitions balanced by size, as a training job plans them."""
    refs_of = {partition.keys: refs for partition, refs in items}
    planned = plan_batches(
        [partition for partition, _ in items], workers, config.compute.batch_size
    )
    return [[(partition, refs_of[partition.keys]) for partition in batch] for batch in planned]


def batches_by_shard(items: list[Item], workers: int, config: Config) -> list[list[Item]]:
    """As many batches as :func:`batches_by_size` would make, each within one bundle shard."""
    batches = batch_count(len(items), workers, config.compute.batch_size)
    return _by_shard(items, math.ceil(len(items) / batches))


def _by_shard(items: list[Item], size: int) -> list[list[Item]]:
    """Batches of at most ``size`` partitions whose models share a bundle shard: each task
    then unpickles one shard, not a piece of every shard (a shard holds the models of one
    training task, which may have had other batch settings or another cluster)."""
    groups: dict[str, list[Item]] = defaultdict(list)
    for partition, refs in items:
        location = next(iter(refs.values()))[2] if refs else ""
        groups[split_location(location)[0]].append((partition, refs))
    batches = [group[start : start + size] for group in groups.values()
               for start in range(0, len(group), size)]  # fmt: skip
    return sorted(batches, key=len, reverse=True)
