"""Hive-partitioned Parquet: discovering partitions, reading one, writing many.

The driver only lists files (:func:`discover_partitions`) and reads one footer
(:func:`check_columns`); workers read their own partitions (:func:`read_partition`). Outputs
are written to a temporary folder and swapped into place by renames (:func:`replace_dir`), so a
reader never sees half of them; a folder is replaced only when manymodels wrote it
(:func:`check_output`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from manymodels.errors import ConfigError, DataError, UnreadableFileError

__all__ = [
    "OUTPUT_MARKER",
    "Partition",
    "check_columns",
    "check_output",
    "discover_partitions",
    "fingerprint",
    "key_types",
    "prepare",
    "read_partition",
    "replace_dir",
    "write_partitioned",
]

_IGNORED_PREFIXES = (".", "_")


@dataclass(frozen=True)
class Partition:
    """One hive partition: its key values and the files that hold its rows.

    Attributes:
        keys: ``(column, value)`` pairs in ``partition_by`` order; values are decoded strings.
        files: paths of its Parquet files (as the filesystem names them).
        nbytes: total size of the files, used to balance batches.
    """

    keys: tuple[tuple[str, str], ...]
    files: tuple[str, ...] = field(compare=False)
    nbytes: int = field(default=0, compare=False)

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
    listing = fs.find(root, detail=True, withdirs=False)
    local = "file" in _protocols(fs)
    grouped: dict[tuple[tuple[str, str], ...], list[tuple[str, int]]] = {}
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
        grouped.setdefault(keys, []).append((full_name, int(info.get("size") or 0)))
    if not grouped:
        raise DataError(
            f"data.path: no Parquet files under {path}. Hint: the dataset is empty; write "
            "partitions such as store=1/part-0.parquet, or run 'manymodels prepare'."
        )
    return [
        Partition(keys, tuple(name for name, _ in files), sum(size for _, size in files))
        for keys, files in grouped.items()
    ]


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
    key_names = {key for key, _ in partition.keys}
    wanted = [c for c in columns if c not in key_names] if columns is not None else None
    tables = [_read_table(name, wanted, storage_options) for name in partition.files]
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
    frame = table.to_pandas(use_threads=False)
    if with_keys:
        for key, value in partition.keys:
            frame[key] = value
    return frame


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
    frame: pd.DataFrame | pa.Table, path: str, partition_by: Sequence[str], basename: str
) -> int:
    """Write rows under ``path`` as hive partitions, one file ``basename-0.parquet`` in each.

    With no ``partition_by`` the file goes straight into ``path``. Writing the same
    ``basename`` again replaces the same files, so a repeated task is harmless.

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
    # One file per partition, written directly: pyarrow's dataset writer slows down more than
    # linearly with the number of partitions (100,000 took over ten minutes).
    groups = table.select(list(partition_by)).to_pandas().groupby(
        list(partition_by), sort=False, dropna=False).indices  # fmt: skip
    payload = table.drop_columns(list(partition_by))

    def write(item: tuple[Any, Any]) -> None:
        values, rows = item
        values = values if isinstance(values, tuple) else (values,)
        folder = "/".join(
            f"{_segment(k)}={_segment(v)}" for k, v in zip(partition_by, values, strict=True)
        )
        _write_file(payload.take(pa.array(rows)), posixpath.join(path, folder, name))

    with ThreadPoolExecutor(max_workers=4) as pool:
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


OUTPUT_MARKER = ".manymodels-output"
"""The file that marks a folder as an output of manymodels, which it may replace."""

_MARKER_TEXT = (
    "manymodels wrote this folder and replaces it as a whole when it writes here again.\n"
    "Delete this file to keep manymodels from replacing the folder.\n"
)


def check_output(path: str, what: str, inputs: Mapping[str, str] | None = None) -> None:
    """Fail unless an output of manymodels may be written to ``path``, replacing what is there.

    It may when ``path`` is absent, an empty folder, or a folder that manymodels wrote (it holds
    the :data:`OUTPUT_MARKER` file), and when it neither is, holds nor lies inside an input.
    Call it before a job does anything, so that a wrong path writes and deletes nothing.

    Args:
        path: the output folder (a local path or an fsspec URL).
        what: how errors name it, e.g. ``forecast.output``.
        inputs: what the job reads, by the name errors give it, e.g. ``{"data.path": path}``.

    Raises:
        ConfigError: ``path`` overlaps an input, or holds something that manymodels did not write.
    """
    for name, source in (inputs or {}).items():
        relation = _overlap(path, source)
        if relation:
            raise ConfigError(
                f"{what}: {path} {relation} {name} {source}; replacing it would delete or corrupt "
                f"that input. Hint: choose another output folder, apart from {source}."
            )
    _check_replaceable(path, what)


def replace_dir(staging: str, final: str) -> None:
    """Publish the folder ``staging`` as ``final``, replacing an earlier output of manymodels.

    ``staging`` gets the :data:`OUTPUT_MARKER` file, then two renames swap it in (on object
    stores, copies): ``final`` is missing only between them. When the second fails, the earlier
    ``final`` is put back and the error propagates; ``staging`` is left to the caller.

    Raises:
        DataError: ``staging`` is not a folder (nothing to publish); ``final`` is left as it was.
        ConfigError: ``final`` holds something that manymodels did not write (see
            :func:`check_output`); nothing is moved.
    """
    fs, final_path = fsspec.core.url_to_fs(final)
    _, staged = fsspec.core.url_to_fs(staging)
    if not fs.isdir(staged):
        raise DataError(
            f"{staging}: the folder to publish as {final} does not exist; {final} was left as it was."
        )
    _check_replaceable(final, "output")
    fs.pipe_file(posixpath.join(staged, OUTPUT_MARKER), _MARKER_TEXT.encode())
    retired = _retire(fs, final_path)
    try:
        fs.mv(staged, final_path, recursive=True)
    except BaseException as exc:
        _restore(fs, retired, final_path, exc)
        raise
    if retired is not None:
        _discard(fs, retired)


def _check_replaceable(path: str, what: str) -> None:
    fs, local = fsspec.core.url_to_fs(path)
    if not fs.exists(local):
        return
    if not fs.isdir(local):
        raise ConfigError(
            f"{what}: {path} is a file, and writing the output folder there would delete it. "
            "Hint: remove it yourself, or choose another folder."
        )
    if fs.ls(local) and not fs.exists(posixpath.join(local, OUTPUT_MARKER)):
        raise ConfigError(
            f"{what}: {path} is a folder that manymodels did not write (it has no "
            f"{OUTPUT_MARKER} file), and replacing it would delete what it holds. Hint: remove "
            "it yourself, or choose another folder."
        )


def _overlap(path: str, other: str) -> str | None:
    """How ``path`` overlaps ``other``, in words, or None when they are apart."""
    (protocol, mine), (other_protocol, theirs) = _location(path), _location(other)
    if protocol != other_protocol:
        return None
    if mine == theirs:
        return "is"
    if theirs in mine.parents:
        return "is inside"
    if mine in theirs.parents:
        return "contains"
    return None


def _location(path: str) -> tuple[str, PurePath]:
    # Parsed, not opened: opening a remote filesystem may need a driver or credentials that a
    # mere comparison should not. Local paths are resolved, so that a symlink cannot hide one.
    protocol, sep, rest = path.partition("://")
    if not sep or protocol == "file":
        return "file", Path(os.path.realpath(rest if sep else path))
    return protocol, PurePosixPath(posixpath.normpath("/" + rest))


def _retire(fs: Any, final_path: str) -> str | None:
    """Move the earlier output aside, to a sibling name; None when there was none."""
    if not fs.exists(final_path):
        return None
    retired = f"{final_path.rstrip('/')}.old-{uuid.uuid4().hex[:8]}"
    fs.mv(final_path, retired, recursive=True)
    return retired


def _restore(fs: Any, retired: str | None, final_path: str, exc: BaseException) -> None:
    """Undo a failed swap: whatever is at ``final_path`` now is a partial copy of the new output
    (a move across filesystems copies, then deletes), so it goes, and the earlier output returns."""
    try:
        if fs.exists(final_path):
            fs.rm(final_path, recursive=True)
        if retired is not None:
            fs.mv(retired, final_path, recursive=True)
    except OSError as failed:
        raise DataError(
            f"{final_path}: publishing the new output failed ({exc}), and so did putting the "
            f"previous one back ({failed}); the previous output is at {retired}."
        ) from exc


def _discard(fs: Any, retired: str) -> None:
    # The new output is in place: failing now would report a published output as a failure,
    # and a leftover copy of the old one loses nothing.
    with contextlib.suppress(OSError):
        fs.rm(retired, recursive=True)


def key_types(values: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """``int`` for key columns whose every value is an integer, else ``str``.

    Key values travel as strings (they come from folder names); outputs give integer keys back
    their type, as pyarrow's hive discovery would, so that they join with the source data.
    """
    return {
        column: "int" if all(_is_int(value) for value in column_values) else "str"
        for column, column_values in values.items()
    }


def _is_int(value: str) -> bool:
    text = value[1:] if value.startswith("-") else value
    return text.isdigit() and len(text) < 19


def staging_path(final: str) -> str:
    """A fresh sibling of ``final`` to write into before :func:`replace_dir`."""
    parent, name = posixpath.split(final.rstrip("/"))
    return posixpath.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:8]}")


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
        _remove_dir(staging)
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


def _remove_dir(path: str) -> None:
    fs, local = fsspec.core.url_to_fs(path)
    if fs.exists(local):
        fs.rm(local, recursive=True)


_IN_MEMORY_BYTES = 1 << 30


def _fits_in_memory(source: ds.FileSystemDataset) -> bool:
    """Small inputs are partitioned in memory (fast); big or remote ones are streamed."""
    try:
        return sum(os.path.getsize(name) for name in source.files) < _IN_MEMORY_BYTES
    except OSError:
        return False


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
