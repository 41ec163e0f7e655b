"""Hive-partitioned Parquet: discovering partitions, reading one, writing many.

The driver only lists files (:func:`discover_partitions`) and reads one footer
(:func:`check_columns`); workers read their own partitions (:func:`read_partitions`). How a
whole output folder is published is :mod:`manymodels.outputs`; partitioning a flat file is
:mod:`manymodels.prepare`.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from manymodels.errors import DataError, UnreadableFileError
from manymodels.keys import KeyType, folder_name, key_types

__all__ = [
    "Partition",
    "check_columns",
    "discover_partitions",
    "fingerprint",
    "integer_columns",
    "key_types",
    "read_partition",
    "read_partitions",
    "write_partitioned",
]

_IGNORED_PREFIXES = (".", "_")
# Partitions read and converted together, by their files' size on disk (see read_partitions).
_GROUP_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Partition:
    """One hive partition: its key values and the files that hold its rows.

    Attributes:
        keys: ``(column, value)`` pairs in ``partition_by`` order; values are decoded strings.
        files: paths of its Parquet files (as the filesystem names them).
        nbytes: total size of the files, used to balance batches.
        signature: a digest of the keys and the files' names (relative to the partition),
            sizes and versions (ETag, else modification time), from the listing alone; empty
            when the filesystem gives no version, so that it cannot vouch for the content.
    """

    keys: tuple[tuple[str, str], ...]
    files: tuple[str, ...] = field(compare=False)
    nbytes: int = field(default=0, compare=False)
    signature: str = field(default="", compare=False)

    @property
    def key_dict(self) -> dict[str, str]:
        return dict(self.keys)


def discover_partitions(
    path: str, partition_by: Sequence[str], storage_options: Mapping[str, Any] | None = None
) -> list[Partition]:
    """List the partitions under ``path`` from its directory structure alone.

    Raises:
        DataError: the path does not exist, holds no Parquet files, or a directory's
            ``key=value`` levels do not match ``partition_by``.
    """
    fs, root = fsspec.core.url_to_fs(path, **dict(storage_options or {}))
    if not fs.exists(root):
        raise DataError(
            f"data.path: {path} does not exist. Hint: point data.path at a partitioned Parquet "
            "folder, or create one with 'manymodels prepare'."
        )
    # One listing of the whole dataset: its details are also each partition's signature.
    listing = fs.find(root, detail=True, withdirs=False)
    local = "file" in _protocols(fs)
    grouped: dict[tuple[tuple[str, str], ...], list[tuple[str, int, str | None]]] = {}
    root_prefix = root.rstrip("/") + "/"
    for name, info in sorted(listing.items()):
        relative = name[len(root_prefix) :] if name.startswith(root_prefix) else name
        *dirs, base = relative.split("/")
        if base.startswith(_IGNORED_PREFIXES) or any(d.startswith(_IGNORED_PREFIXES) for d in dirs):
            continue
        if not (base.endswith(".parquet") or base.endswith(".parq") or "." not in base):
            continue
        keys = _parse_hive_dirs(dirs, partition_by, relative, path)
        full_name = name if local else fs.unstrip_protocol(name)
        within = "/".join([*dirs[len(keys) :], base])
        grouped.setdefault(keys, []).append(
            (full_name, int(info.get("size") or 0), _file_stamp(within, info))
        )
    if not grouped:
        raise DataError(
            f"data.path: no Parquet files under {path}. Hint: the dataset is empty; write "
            "partitions such as store=1/part-0.parquet, or run 'manymodels prepare'."
        )
    return [
        Partition(
            keys,
            tuple(name for name, _, _ in files),
            sum(size for _, size, _ in files),
            _signature(keys, [stamp for _, _, stamp in files]),
        )
        for keys, files in grouped.items()
    ]


# Listing fields that change whenever a file's content does, most trustworthy first: an
# object store's ETag (a content hash or a version id), else the modification time.
_VERSION_FIELDS = ("ETag", "etag", "e_tag", "md5Hash", "mtime", "LastModified",
                   "last_modified", "updated", "created")  # fmt: skip


def _file_stamp(within: str, info: Mapping[str, Any]) -> str | None:
    """One file's name inside its partition, size and version; None without a version."""
    for name in _VERSION_FIELDS:
        if info.get(name) not in (None, ""):
            return f"{within}|{info.get('size')}|{name}={info[name]}"
    return None


def _signature(keys: tuple[tuple[str, str], ...], stamps: list[str | None]) -> str:
    known = [stamp for stamp in stamps if stamp is not None]
    if len(known) < len(stamps):
        return ""
    text = repr((keys, sorted(known)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def check_columns(
    partition: Partition,
    required: Mapping[str, str],
    numeric: Sequence[str],
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Check one partition's Parquet schema for the configured columns (reads a footer only).

    Args:
        partition: the partition whose first file is read.
        required: column name to the config key that names it, e.g. ``{"week": "data.time_col"}``.
        numeric: columns that must be numeric (named in errors by their key in ``required``).

    Raises:
        DataError: a column is missing, or is not numeric where it must be.
    """
    schema = _read_schema(partition.files[0], storage_options)
    present = set(schema.names) | {key for key, _ in partition.keys}
    for column, key in required.items():
        if column not in present:
            available = ", ".join(sorted(present))
            raise DataError(
                f"{key}: column '{column}' is not in the data (first file: "
                f"{partition.files[0]}). Hint: available columns are {available}."
            )
    for column in numeric:
        if column in schema.names:
            kind = schema.field(column).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                    or pa.types.is_boolean(kind) or pa.types.is_decimal(kind)
                    or pa.types.is_null(kind)):  # fmt: skip
                raise DataError(
                    f"{required.get(column, 'data')}: column '{column}' has type {kind}, not a "
                    "number. Hint: convert it to a numeric type, or choose another column."
                )


def integer_columns(
    partition: Partition, columns: Sequence[str], storage_options: Mapping[str, Any] | None = None
) -> dict[str, bool]:
    """Whether each of ``columns`` that the files hold is an integer column (reads a footer)."""
    schema = _read_schema(partition.files[0], storage_options)
    return {
        column: pa.types.is_integer(schema.field(column).type)
        for column in columns
        if column in schema.names
    }


def read_partition(
    partition: Partition,
    columns: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    with_keys: bool = True,
) -> pd.DataFrame:
    """Read one partition's rows; with ``with_keys``, its key columns are added as strings.

    Raises:
        OSError, pyarrow.ArrowException: a file is unreadable or corrupt (the caller records it).
    """
    table = _partition_table(partition, columns, storage_options)
    return _with_keys(table.to_pandas(use_threads=False), partition, with_keys)


def read_partitions(
    partitions: Sequence[Partition],
    columns: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    with_keys: bool = True,
) -> Iterator[tuple[Partition, pd.DataFrame | Exception]]:
    """Read partitions in order: each comes with its rows, as :func:`read_partition` gives
    them, or with the exception that reading it raised (one bad partition fails alone).

    Small partitions are converted to pandas together: one conversion of many partitions'
    rows, sliced apart, costs a third of converting each (about 0.5 ms a partition, a twentieth
    of fitting a small model). Only partitions with identical columns and types are combined.
    """
    for group in _read_groups(partitions):
        tables: list[pa.Table | Exception] = []
        for partition in group:
            try:
                tables.append(_partition_table(partition, columns, storage_options))
            except Exception as exc:  # noqa: BLE001 - handed to the caller with its partition
                tables.append(exc)
        for run in _same_schema_runs(group, tables):
            yield from _split_run(run, with_keys)


def _partition_table(
    partition: Partition, columns: Sequence[str] | None, storage_options: Mapping[str, Any] | None
) -> pa.Table:
    key_names = {key for key, _ in partition.keys}
    wanted = [c for c in columns if c not in key_names] if columns is not None else None
    tables = [_read_table(name, wanted, storage_options) for name in partition.files]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")


def _with_keys(frame: pd.DataFrame, partition: Partition, with_keys: bool) -> pd.DataFrame:
    if with_keys:
        for key, value in partition.keys:
            frame[key] = value
    return frame


def _read_groups(partitions: Sequence[Partition]) -> Iterator[Sequence[Partition]]:
    """Consecutive partitions whose files together stay small enough to hold at once."""
    start, size = 0, 0
    for index, partition in enumerate(partitions):
        if index > start and size + partition.nbytes > _GROUP_BYTES:
            yield partitions[start:index]
            start, size = index, 0
        size += partition.nbytes
    if start < len(partitions):
        yield partitions[start:]


def _same_schema_runs(
    partitions: Sequence[Partition], tables: list[pa.Table | Exception]
) -> Iterator[list[tuple[Partition, pa.Table | Exception]]]:
    """Consecutive (partition, table) pairs that can be converted as one table; an exception
    is a run of its own."""
    run: list[tuple[Partition, pa.Table | Exception]] = []
    for partition, table in zip(partitions, tables, strict=True):
        if run and not _same_schema(run[0][1], table):
            yield run
            run = []
        run.append((partition, table))
    if run:
        yield run


def _same_schema(first: pa.Table | Exception, other: pa.Table | Exception) -> bool:
    if isinstance(first, Exception) or isinstance(other, Exception):
        return False
    return first.schema.equals(other.schema, check_metadata=False)


def _split_run(
    run: list[tuple[Partition, pa.Table | Exception]], with_keys: bool
) -> Iterator[tuple[Partition, pd.DataFrame | Exception]]:
    tables = [table for _, table in run if isinstance(table, pa.Table)]
    if len(tables) < 2:  # one partition, or one that could not be read
        yield from _convert_each(run, with_keys)
        return
    try:
        whole = pa.concat_tables(tables).to_pandas(use_threads=False)
    except Exception:  # noqa: BLE001 - converted one by one instead, each failing alone
        yield from _convert_each(run, with_keys)
        return
    start = 0
    for (partition, _), table in zip(run, tables, strict=True):
        frame = whole.iloc[start : start + table.num_rows].reset_index(drop=True)
        yield partition, _with_keys(frame, partition, with_keys)
        start += table.num_rows


def _convert_each(
    run: list[tuple[Partition, pa.Table | Exception]], with_keys: bool
) -> Iterator[tuple[Partition, pd.DataFrame | Exception]]:
    for partition, table in run:
        if isinstance(table, Exception):
            yield partition, table
            continue
        try:
            frame = table.to_pandas(use_threads=False)
        except Exception as exc:  # noqa: BLE001 - handed to the caller with its partition
            yield partition, exc
            continue
        yield partition, _with_keys(frame, partition, with_keys)


def fingerprint(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """A content hash of the given columns: changes whenever a value, a row or a type does.

    Rows are hashed in file order (re-sorting thousands of small frames would cost more than
    it is worth): rewriting the same rows in another order counts as a change.
    """
    digest = hashlib.sha256()
    for column in columns:
        values = frame[column].to_numpy()
        digest.update(f"{column}:{values.dtype}:{len(values)};".encode())
        if values.dtype.kind in "biufcmM":
            digest.update(np.ascontiguousarray(values).tobytes())
        else:
            digest.update(
                pd.util.hash_pandas_object(frame[column], index=False).to_numpy().tobytes()
            )
    return digest.hexdigest()[:16]


def write_partitioned(
    frame: pd.DataFrame | pa.Table,
    path: str,
    partition_by: Sequence[str],
    basename: str,
    key_kinds: Mapping[str, KeyType] | None = None,
) -> int:
    """Write rows under ``path`` as hive partitions, one file ``basename-0.parquet`` in each.

    With no ``partition_by`` the file goes straight into ``path``. Writing the same
    ``basename`` again replaces the same files, so a repeated task is harmless.

    Args:
        key_kinds: how an output holds its key columns (see :mod:`manymodels.keys`): a
            column kept inside the files gets an encoded folder name instead of a hive one.

    Returns:
        The number of files written.
    """
    table = (
        frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    )
    name = f"{basename}-0.parquet"
    if not partition_by:
        _write_file(table, posixpath.join(path, name))
        return 1
    kinds = dict(key_kinds or {})
    # One file per partition, written directly: pyarrow's dataset writer slows down more than
    # linearly with the number of partitions (100,000 took over ten minutes).
    # Integers with nulls stay integers (as floats, 12 would be written 12.0).
    keys = table.select(list(partition_by)).to_pandas(integer_object_nulls=True)
    groups = keys.groupby(list(partition_by), sort=False, dropna=False).indices
    in_folders = [col for col in partition_by if col not in kinds or not kinds[col].in_files]
    payload = table.drop_columns(in_folders)

    def write(item: tuple[Any, Any]) -> None:
        values, rows = item
        values = values if isinstance(values, tuple) else (values,)
        folder = "/".join(
            folder_name(k, v, kinds[k]) if k in kinds else f"{_segment(k)}={_segment(v)}"
            for k, v in zip(partition_by, values, strict=True)
        )
        _write_file(payload.take(pa.array(rows)), posixpath.join(path, folder, name))

    if "://" not in path:
        # Local files: threads would only add contention for the worker's one core.
        for item in groups.items():
            write(item)
        return len(groups)
    with ThreadPoolExecutor(max_workers=4) as pool:  # remote stores: overlap their latency
        list(pool.map(write, groups.items()))
    return len(groups)


def _segment(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "__HIVE_DEFAULT_PARTITION__"
    return urllib.parse.quote(str(value), safe="")


def _write_file(table: pa.Table, path: str) -> None:
    if "://" not in path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(table, path)
        return
    fs, stripped = fsspec.core.url_to_fs(path)
    fs.makedirs(posixpath.dirname(stripped), exist_ok=True)
    with fs.open(stripped, "wb") as handle:
        pq.write_table(table, handle)


def _parse_hive_dirs(
    dirs: list[str], partition_by: Sequence[str], relative: str, root: str
) -> tuple[tuple[str, str], ...]:
    pairs = []
    for directory in dirs:
        key, sep, value = directory.partition("=")
        if not sep:
            break
        pairs.append((urllib.parse.unquote(key), urllib.parse.unquote(value)))
    found = [key for key, _ in pairs]
    if found != list(partition_by):
        raise DataError(
            f"data.partition_by: {root}/{relative} is partitioned by {found or 'nothing'}, but "
            f"the config says {list(partition_by)}. Hint: set data.partition_by to match the "
            "key=value folders, or run 'manymodels prepare' to repartition."
        )
    return tuple(pairs)


def _read_schema(name: str, storage_options: Mapping[str, Any] | None) -> pa.Schema:
    try:
        with fsspec.open(name, "rb", **dict(storage_options or {})) as handle:
            return pq.read_schema(handle)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnreadableFileError(f"{name}: not a readable Parquet file ({exc}).") from None


def _read_table(
    name: str, columns: Sequence[str] | None, storage_options: Mapping[str, Any] | None
) -> pa.Table:
    # ParquetFile reads a single small file several times faster than read_table, whose
    # dataset machinery is built for many files; for a local file, without pre-buffering or
    # threads (built for high-latency stores and big files) it is faster again. Absent columns
    # are left for the caller to report by name.
    if "://" not in name:
        return _read_present(pq.ParquetFile(name, pre_buffer=False), columns)
    with fsspec.open(name, "rb", **dict(storage_options or {})) as handle:
        return _read_present(pq.ParquetFile(handle), columns)


def _read_present(file: pq.ParquetFile, columns: Sequence[str] | None) -> pa.Table:
    if columns is None:
        return file.read(use_threads=False)
    present = set(file.schema_arrow.names)
    wanted = [column for column in columns if column in present]
    return file.read(columns=wanted, use_threads=False)


def _arrow_target(path: str) -> tuple[Any, str]:
    if "://" not in path:
        return None, path
    fs, stripped = fsspec.core.url_to_fs(path)
    return pa.fs.PyFileSystem(pa.fs.FSSpecHandler(fs)), stripped


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
