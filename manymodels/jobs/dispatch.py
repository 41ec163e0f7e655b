"""What a retrain sends to the workers, and what it settles on the driver without a read.

Partitions whose listing matches their champions' source fingerprints (see
:mod:`manymodels.tasks.unchanged`) are skipped here, their entities counted as skipped. Only a
job bundle (``per_job``) that gets any new model still needs them: the new bundle must hold
every entity, so their champions are carried into it by the workers, still without reading a
row; a bundle retrain with nothing new registers no bundle at all. The champions' fit times
estimate the work left, which sizes the cluster and its tasks (see :mod:`manymodels.planning`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from manymodels import lineage
from manymodels.artifacts.bundle import split_location
from manymodels.data import Partition
from manymodels.jobs.modes import Registrar
from manymodels.ledger import Ledger
from manymodels.outcomes import Champion, EntityResult
from manymodels.planning import plan_batches
from manymodels.tasks import params_digest
from manymodels.tasks.unchanged import PartitionKeys, unchanged_partitions

__all__ = ["CARRIED_PER_TASK", "Dispatch", "estimated_seconds", "plan_dispatch"]

# Carrying copies files and returns small results: a task takes many old shards' partitions.
CARRIED_PER_TASK = 1000


@dataclass(frozen=True)
class Dispatch:
    """A retrain's split of its partitions.

    Attributes:
        todo: partitions to send to the workers.
        skipped: results of the entities skipped on the driver, one per champion.
        unread: the partitions those entities live in.
        carry: per partition, the champions that workers carry into a job bundle unread.
        estimated_seconds: how long the entities to train took to train last time, all
            together (carried ones aside); None when any of them has no champion that says.
    """

    todo: list[Partition]
    skipped: list[EntityResult] = field(default_factory=list)
    unread: list[PartitionKeys] = field(default_factory=list)
    carry: dict[PartitionKeys, tuple[str, ...]] = field(default_factory=dict)
    estimated_seconds: float | None = None

    def record(self, registrar: Registrar, ledger: Ledger) -> list[dict[str, Any]]:
        """The rows of the skipped entities, written to the ledger as one finished batch."""
        if not self.skipped:
            return []
        rows = registrar.handle(self.skipped)
        ledger.append(self.unread, rows)
        return rows

    @property
    def to_train(self) -> list[Partition]:
        """The partitions whose entities the workers train (the others are carried)."""
        return [partition for partition in self.todo if partition.keys not in self.carry]

    def tasks(
        self, champions: Mapping[str, Champion], workers: int, batch_size: int | None = None
    ) -> list[list[Partition]]:
        """The partitions as Dask tasks, heaviest first: those to train balanced by size (see
        :func:`~manymodels.planning.plan_batches`), then those carried, by whole shards of
        the old bundle, which a task copies without reading the models in them. Carried
        partitions mixed into training tasks made every task load a piece of every old shard.
        """
        by_shard: dict[str, list[Partition]] = defaultdict(list)
        for partition in self.todo:
            names = self.carry.get(partition.keys)
            if names:
                by_shard[split_location(champions[names[0]].location)[0]].append(partition)
        carried: list[list[Partition]] = []
        for group in by_shard.values():
            if carried and len(carried[-1]) + len(group) <= CARRIED_PER_TASK:
                carried[-1].extend(group)
            else:
                carried.append(list(group))
        trained = plan_batches(self.to_train, workers, batch_size, self.estimated_seconds)
        return trained + carried


def plan_dispatch(
    todo: list[Partition], champions: dict[str, Champion], registrar: Registrar, force: bool
) -> Dispatch:
    """Split a job's partitions into those to train and those settled on the driver.

    A training job, a forced retrain or a registry without champions dispatches everything.
    """
    dispatch = _split(todo, champions, registrar, force)
    partition_by = registrar.config.data.partition_by
    estimate = estimated_seconds(dispatch.to_train, champions, partition_by)
    return replace(dispatch, estimated_seconds=estimate)


def estimated_seconds(
    partitions: Sequence[Partition], champions: Mapping[str, Champion], partition_by: list[str]
) -> float | None:
    """The sum of the fit times that the champions of ``partitions`` recorded; None when a
    partition has no champion with one (new, failed, or trained before fit times were kept)."""
    if not partitions or not champions:
        return None
    by_partition: dict[PartitionKeys, float] = defaultdict(float)
    for champion in champions.values():
        seconds = champion.tags.get(lineage.FIT_SECONDS)
        if seconds:
            keys = tuple((col, champion.tags.get(col, "")) for col in partition_by)
            by_partition[keys] += float(seconds)
    if any(partition.keys not in by_partition for partition in partitions):
        return None
    return sum(by_partition[partition.keys] for partition in partitions)


def _split(
    todo: list[Partition], champions: dict[str, Champion], registrar: Registrar, force: bool
) -> Dispatch:
    if registrar.kind != "retrain" or force or not champions:
        return Dispatch(todo)
    digest = params_digest(registrar.inputs.params, registrar.config)
    unchanged = unchanged_partitions(todo, champions, registrar.inputs.trained_plan.digest, digest)
    needed = [partition for partition in todo if partition.keys not in unchanged]
    if not unchanged:
        return Dispatch(todo)
    if needed and registrar.carries_champions:
        return Dispatch(todo, carry={keys: tuple(names) for keys, names in unchanged.items()})
    entity_cols = registrar.config.data.entity_cols
    skipped = [
        _skipped(name, champions[name], entity_cols)
        for names in unchanged.values()
        for name in names
    ]
    return Dispatch(needed, skipped, list(unchanged))


def _skipped(name: str, champion: Champion, entity_cols: list[str]) -> EntityResult:
    keys = {col: champion.tags.get(col, "") for col in entity_cols}
    fingerprint = champion.tags.get(lineage.DATA_FINGERPRINT)
    return EntityResult(keys=keys, name=name, status="skipped", fingerprint=fingerprint,
                        unread=True)  # fmt: skip
