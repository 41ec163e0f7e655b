"""Tests of manymodels.planning: partitions grouped into balanced Dask batches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from manymodels.data import Partition
from manymodels.planning import (
    MAX_PARTITIONS_PER_TASK,
    MIN_TASK_SECONDS,
    SECONDS_PER_WORKER,
    TASKS_PER_WORKER,
    plan_batches,
    workers_for,
)


def partitions(sizes) -> list[Partition]:
    """One partition per size, keyed store=0, store=1, ..."""
    return [
        Partition(keys=(("store", str(i)),), files=(f"store={i}/part-0.parquet",), nbytes=int(size))
        for i, size in enumerate(sizes)
    ]


@pytest.fixture
def skewed() -> list[Partition]:
    """Three big partitions and seven small or empty ones."""
    return partitions([100, 90, 80, 10, 10, 10, 5, 5, 0, 0])


@pytest.fixture
def random_sizes() -> list[Partition]:
    """Two hundred partitions with log-normal sizes, as real panels have."""
    rng = np.random.default_rng(7)
    return partitions(rng.lognormal(10, 1, 200).astype(int))


def loads(batches) -> list[int]:
    return [sum(p.nbytes for p in batch) for batch in batches]


def keys_of(batches) -> list[tuple]:
    return [p.keys for batch in batches for p in batch]


@pytest.mark.parametrize(
    ("workers", "batch_size"), [(1, None), (2, None), (100, None), (1, 1), (1, 3), (3, 4), (1, 100)]
)
def test_every_partition_lands_in_exactly_one_batch(skewed, workers, batch_size):
    batches = plan_batches(skewed, workers, batch_size)
    assert sorted(keys_of(batches)) == sorted(p.keys for p in skewed)
    assert len(keys_of(batches)) == len(skewed)
    assert all(batches)


def test_no_partitions_no_batches():
    assert plan_batches([], workers=4) == []
    assert plan_batches([], workers=4, batch_size=10) == []


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 7, 10, 50])
def test_batch_size_is_honoured(skewed, batch_size):
    batches = plan_batches(skewed, workers=1, batch_size=batch_size)
    assert len(batches) == math.ceil(len(skewed) / batch_size)
    assert max(len(batch) for batch in batches) <= batch_size


def test_batch_size_is_honoured_with_many_small_partitions():
    batches = plan_batches(partitions([10_000] + [1] * 99), workers=1, batch_size=25)
    assert [len(batch) for batch in batches] == [25, 25, 25, 25]


def test_automatic_size_gives_several_tasks_per_worker(random_sizes):
    batches = plan_batches(random_sizes, workers=3)
    assert len(batches) == 3 * TASKS_PER_WORKER


def test_automatic_size_never_has_more_batches_than_partitions(skewed):
    assert len(plan_batches(skewed, workers=8)) == len(skewed)


def test_automatic_size_caps_partitions_per_task():
    many = partitions([1_000_000] + [1] * (20 * MAX_PARTITIONS_PER_TASK))
    batches = plan_batches(many, workers=1)
    assert len(batches) == math.ceil(len(many) / MAX_PARTITIONS_PER_TASK) > TASKS_PER_WORKER
    assert max(len(batch) for batch in batches) <= MAX_PARTITIONS_PER_TASK


def test_batches_are_balanced_by_size(random_sizes, monkeypatch):
    monkeypatch.setattr("manymodels.planning.TASKS_PER_WORKER", 4)
    batches = plan_batches(random_sizes, workers=2)
    sizes = loads(batches)
    biggest = max(p.nbytes for p in random_sizes)
    # Greedy least-loaded assignment keeps every batch within one partition of the others.
    assert max(sizes) - min(sizes) <= biggest
    assert max(sizes) / (sum(sizes) / len(sizes)) < 1.1


def test_big_partitions_get_their_own_batches(skewed, monkeypatch):
    monkeypatch.setattr("manymodels.planning.TASKS_PER_WORKER", 4)
    batches = plan_batches(skewed, workers=1)  # 4 batches
    assert [[p.nbytes for p in batch] for batch in batches] == [
        [100], [90], [80], [10, 10, 10, 5, 5, 0, 0]
    ]  # fmt: skip


def test_equal_partitions_split_evenly():
    batches = plan_batches(partitions([10] * 12), workers=1, batch_size=4)
    assert loads(batches) == [40, 40, 40]


def test_empty_partitions_are_spread_too(monkeypatch):
    monkeypatch.setattr("manymodels.planning.TASKS_PER_WORKER", 4)
    batches = plan_batches(partitions([0] * 8), workers=1)
    assert [len(batch) for batch in batches] == [2, 2, 2, 2]


def test_heaviest_batch_comes_first(random_sizes):
    sizes = loads(plan_batches(random_sizes, workers=4, batch_size=9))
    assert sizes == sorted(sizes, reverse=True)


def test_plan_is_deterministic(random_sizes):
    first = plan_batches(random_sizes, workers=2, batch_size=7)
    second = plan_batches(list(random_sizes), workers=2, batch_size=7)
    assert [keys_of([b]) for b in first] == [keys_of([b]) for b in second]


def test_work_of_unknown_cost_uses_every_worker_and_small_work_fewer():
    assert workers_for(None, available=4) == 4
    assert workers_for(0.3, available=4) == 1
    assert workers_for(SECONDS_PER_WORKER * 2.5, available=4) == 3
    assert workers_for(10_000.0, available=4) == 4


def test_known_small_work_is_not_cut_into_tasks_smaller_than_their_overhead(skewed):
    # Ten partitions with 0.4 s of fitting between them: two tasks, not ten.
    small = plan_batches(skewed, workers=1, estimated_seconds=4 * MIN_TASK_SECONDS / 2.5)
    assert len(small) == 2
    assert sorted(keys_of(small)) == sorted(p.keys for p in skewed)
    # Still at least one task per worker, and unknown or large work is split as before.
    assert len(plan_batches(skewed, workers=3, estimated_seconds=0.01)) == 3
    assert len(plan_batches(skewed, workers=1)) == len(skewed)
    assert len(plan_batches(skewed, workers=1, estimated_seconds=1000.0)) == len(skewed)
    # An explicit batch size wins over the estimate.
    assert len(plan_batches(skewed, workers=1, batch_size=1, estimated_seconds=0.01)) == 10
