"""Grouping partitions into Dask tasks.

Each task should do a few seconds of work, and there should be several tasks per worker so that
a slow one does not leave the others idle at the end. Partitions are balanced by size, biggest
first (longest-processing-time first), and the heaviest batches are submitted first. Where the
last fit times of the entities are known (a retrain), small work is neither spread over more
workers than it pays to start nor cut into tasks smaller than their own overhead.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from manymodels.data import Partition

__all__ = [
    "batch_count",
    "plan_batches",
    "workers_for",
    "MAX_PARTITIONS_PER_TASK",
    "MIN_TASK_SECONDS",
    "SECONDS_PER_WORKER",
    "TASKS_PER_WORKER",
]

TASKS_PER_WORKER = 16
MAX_PARTITIONS_PER_TASK = 250
# A task's fixed cost (scheduling, its registry transaction, its backtest file) is tens of
# milliseconds: work known to be smaller than this is not split further for balance.
MIN_TASK_SECONDS = 0.25
# A worker process spends about a second of CPU starting (Python, Dask, pandas, the template's
# libraries) before its first task: one more pays off only for work of a few seconds to share.
SECONDS_PER_WORKER = 3.0


def workers_for(estimated_seconds: float | None, available: int) -> int:
    """How many of ``available`` workers a job should use for ``estimated_seconds`` of fitting
    (from each entity's last fit): all of them when the cost is unknown, else one per
    ``SECONDS_PER_WORKER`` of work."""
    if estimated_seconds is None:
        return available
    return max(1, min(available, math.ceil(estimated_seconds / SECONDS_PER_WORKER)))


def batch_count(
    count: int, workers: int, batch_size: int | None = None,
    estimated_seconds: float | None = None,
) -> int:  # fmt: skip
    """How many batches ``count`` partitions make: ``batch_size`` each when given, else several
    per worker and at most ``MAX_PARTITIONS_PER_TASK`` each (at least one, at most ``count``);
    with the work's ``estimated_seconds`` known, no more than gives each task
    ``MIN_TASK_SECONDS`` of it (still one per worker)."""
    if batch_size:
        wanted = math.ceil(count / batch_size)
    else:
        wanted = max(workers * TASKS_PER_WORKER, math.ceil(count / MAX_PARTITIONS_PER_TASK))
        if estimated_seconds is not None:
            wanted = min(wanted, max(workers, math.ceil(estimated_seconds / MIN_TASK_SECONDS)))
    return max(1, min(count, wanted))


def plan_batches(
    partitions: Sequence[Partition], workers: int, batch_size: int | None = None,
    estimated_seconds: float | None = None,
) -> list[list[Partition]]:  # fmt: skip
    """Split partitions into balanced batches, heaviest batch first.

    Args:
        partitions: what to process.
        workers: threads available in the cluster.
        batch_size: partitions per batch; chosen from ``workers`` and the count when None.
        estimated_seconds: how long the partitions took to fit last time, all together; None
            when unknown.
    """
    if not partitions:
        return []
    n_batches = batch_count(len(partitions), workers, batch_size, estimated_seconds)
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
