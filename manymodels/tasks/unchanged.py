"""Recognising unchanged partitions from the dataset's listing, without reading a row.

Every version a job registers carries its partition's *source fingerprint*: a hash of the
partition's file listing (names inside the partition, sizes, ETags or modification times; see
:class:`~manymodels.data.Partition`), the template's code digest and the params digest, plus
how many entities the partition held. A retrain computes the same hash from its own listing
and skips, on the driver, every partition whose entities' champions all carry it.

Where the listing cannot decide (no fingerprint on the champion, or a listing that changed
while the rows may not have), the partition is read and the content hash decides, as before.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from manymodels import lineage
from manymodels.data import Partition
from manymodels.outcomes import Champion, EntityResult

__all__ = ["PartitionKeys", "source_fingerprint", "stamp_sources", "unchanged_partitions"]

PartitionKeys = tuple[tuple[str, str], ...]


def source_fingerprint(signature: str, template_digest: str, params_digest: str) -> str:
    """The source fingerprint of a partition for a job's template and params.

    Returns:
        A short hex digest, or ``""`` when the listing gave no signature (it cannot decide).
    """
    if not signature:
        return ""
    text = f"{signature}|{template_digest}|{params_digest}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def unchanged_partitions(
    partitions: Sequence[Partition],
    champions: Mapping[str, Champion],
    template_digest: str,
    params_digest: str,
) -> dict[PartitionKeys, list[str]]:
    """The partitions a retrain can skip, each with the names of its entities' champions.

    A partition is unchanged when its source fingerprint is non-empty, and the champions that
    carry it are as many as the entities the partition held when they were trained: an entity
    without a champion (it failed, or it is new) sends the whole partition to a worker.
    """
    by_source: dict[str, list[str]] = defaultdict(list)
    for name, champion in champions.items():
        source = champion.tags.get(lineage.SOURCE_FINGERPRINT)
        if source:
            by_source[source].append(name)
    unchanged: dict[PartitionKeys, list[str]] = {}
    for partition in partitions:
        source = source_fingerprint(partition.signature, template_digest, params_digest)
        names = by_source.get(source) if source else None
        if names and all(
            champions[name].tags.get(lineage.PARTITION_ENTITIES) == str(len(names))
            for name in names
        ):
            unchanged[partition.keys] = sorted(names)
    return unchanged


def stamp_sources(
    results: Sequence[EntityResult],
    partitions: Sequence[Partition],
    partition_by: Sequence[str],
    template_digest: str,
    params_digest: str,
) -> None:
    """Give each result its partition's source fingerprint and entity count.

    Entities are counted from the results, so a count can only be short (an entity this job
    registered earlier is not in them): that costs one more read, never a wrong skip.
    """
    sources = {
        partition.keys: source_fingerprint(partition.signature, template_digest, params_digest)
        for partition in partitions
    }
    owner = [tuple((col, result.keys.get(col, "")) for col in partition_by) for result in results]
    counts = Counter(owner)
    for result, keys in zip(results, owner, strict=True):
        result.source_fingerprint = sources.get(keys) or None
        result.partition_entities = counts[keys]
