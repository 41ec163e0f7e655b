"""Grouping partitions into Dask tasks.

Each task should do a few seconds of work, and there should be several tasks per worker so that
a slow one does not leave the others idle at the end. Partitions are balanced by size, biggest
first (longest-processing-time first), and the heaviest batches are submitted first.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from manymodels.data import Partition

__all__ = ["batch_count", "plan_batches", "TASKS_PER_WORKER", "MAX_PARTITIONS_PER_TASK"]

TASKS_PER_WORKER = 16
MAX_PARTITIONS_PER_TASK = 250


def batch_count(count: int, workers: int, batch_size: int | None = None) -> int:
    """How many batches ``count`` partitions make: ``batch_size`` each when given, else several
    per worker and at most ``MAX_PARTITIONS_PER_TASK`` each (at least one, at most ``count``)."""
    if batch_size:
        wanted = math.ceil(count / batch_size)
    else:
        wanted = max(workers * TASKS_PER_WORKER, math.ceil(count / MAX_PARTITIONS_PER_TASK))
    return max(1, min(count, wanted))


def plan_batches(
    partitions: Sequence[Partition], workers: int, batch_size: int | None = None
) -> list[list[Partition]]:
    """Split partitions into balanced batches, heaviest batch first.

    Args:
        partitions: what to process.
        workers: threads available in the cluster.
        batch_size: partitions per batch; chosen from ``workers`` and the count when None.
    """
    if not partitions:
        return []
    n_batches = batch_count(len(partitions), workers, batch_size)
    capacity = batch_size or MAX_PARTITIONS_PER_TASK
    heap = [(0, index) for index in range(n_batches)]
    batches: list[list[Partition]] = [[] for _ in range(n_batches)]
    loads = [0] * n_batches
    for partition in sorted(partitions, key=lambda p: p.nbytes, reverse=True):
        load, index = heapq.heappop(heap)
        batches[index].append(partition)
        loads[index] = load + max(partition.nbytes, 1)
        # A full batch leaves the heap, so no batch holds more than `capacity` partitions.
        if len(batches[index]) < capacity:
            heapq.heappush(heap, (loads[index], index))
    order = sorted(range(n_batches), key=lambda index: loads[index], reverse=True)
    return [batches[index] for index in order]
