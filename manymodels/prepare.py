"""``manymodels prepare``: a flat CSV or Parquet file into the hive layout that jobs read."""

from __future__ import annotations

import os
from collections.abc import Sequence

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds

from manymodels.data import discover_partitions, write_partitioned
from manymodels.errors import DataError
from manymodels.outputs import check_output, remove_dir, replace_dir, staging_path

__all__ = ["prepare"]


def prepare(input_path: str, partition_by: Sequence[str], output: str) -> int:
    """Partition a flat CSV or Parquet file into the hive layout that jobs read.

    An input under 1 GiB is partitioned in memory; a bigger one streams through pyarrow, so it
    need not fit in memory. The output appears complete or not at all.

    Args:
        input_path: a ``.csv`` or ``.parquet`` file (or a folder of them).
        partition_by: the columns to partition by, outermost first.
        output: the folder to create. An earlier output of manymodels there is replaced;
            anything else there, or an output that overlaps the input, is refused.

    Returns:
        The number of partitions written.

    Raises:
        DataError: the input is missing, unreadable or has no rows, or lacks a partition column.
        ConfigError: ``output`` overlaps the input, or holds something manymodels did not write;
            checked before anything is written.
    """
    if not os.path.exists(input_path) and "://" not in input_path:
        raise DataError(f"{input_path}: input file not found. Hint: give a CSV or Parquet file.")
    check_output(output, "--output", {"the input": input_path})
    source = _open_source(input_path, partition_by)
    staging = staging_path(output)
    try:
        _partition_into(source, partition_by, staging, input_path)
        replace_dir(staging, output)
    except BaseException:
        remove_dir(staging)
        raise
    return len(discover_partitions(output, partition_by))


def _open_source(input_path: str, partition_by: Sequence[str]) -> ds.FileSystemDataset:
    fmt = "csv" if input_path.lower().endswith((".csv", ".csv.gz")) else "parquet"
    try:
        source = ds.dataset(input_path, format=fmt)
        names = source.schema.names
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{input_path}: cannot read it as {fmt} ({exc}).") from None
    missing = [col for col in partition_by if col not in names]
    if missing:
        raise DataError(
            f"--partition-by: column '{missing[0]}' is not in {input_path}. Hint: available "
            f"columns are {', '.join(names)}."
        )
    return source


def _partition_into(
    source: ds.FileSystemDataset, partition_by: Sequence[str], staging: str, input_path: str
) -> None:
    try:
        if _fits_in_memory(source):
            write_partitioned(source.to_table(), staging, partition_by, "part")
        else:
            partitioning = ds.partitioning(
                pa.schema([source.schema.field(col) for col in partition_by]), flavor="hive"
            )
            ds.write_dataset(
                source, staging, format="parquet", partitioning=partitioning,
                basename_template="part-{i}.parquet", max_partitions=1_000_000,
                max_open_files=512,
            )  # fmt: skip
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{input_path}: could not partition it ({exc}).") from None
    fs, local = fsspec.core.url_to_fs(staging)
    if not fs.exists(local) or not fs.find(local):
        raise DataError(
            f"{input_path}: has no rows, so there is nothing to partition. Hint: check that it "
            "is the file you meant."
        )


_IN_MEMORY_BYTES = 1 << 30


def _fits_in_memory(source: ds.FileSystemDataset) -> bool:
    """Small inputs are partitioned in memory (fast); big or remote ones are streamed."""
    try:
        return sum(os.path.getsize(name) for name in source.files) < _IN_MEMORY_BYTES
    except OSError:
        return False
