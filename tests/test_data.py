"""Partition discovery, reading, fingerprints, atomic writes and ``prepare`` on real files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import manymodels.data as data_module
import manymodels.prepare as preparing
from manymodels.data import (
    check_columns,
    discover_partitions,
    fingerprint,
    key_types,
    read_partition,
    read_partitions,
    write_partitioned,
)
from manymodels.errors import DataError
from manymodels.keys import KeyType
from manymodels.outputs import replace_dir, staging_path
from manymodels.prepare import prepare


@pytest.fixture
def frame() -> pd.DataFrame:
    weeks = pd.date_range("2024-01-07", periods=4, freq="W-SUN")
    rows = []
    for store in ("1", "2"):
        for brand in ("tropicana", "a/b & c"):
            for i, week in enumerate(weeks):
                rows.append({"store": store, "brand": brand, "week": week, "sales": float(i)})
    return pd.DataFrame(rows)


def test_written_partitions_are_discovered_with_their_true_keys(tmp_path, frame):
    assert write_partitioned(frame, str(tmp_path / "d"), ["store", "brand"], "part") == 4
    partitions = discover_partitions(str(tmp_path / "d"), ["store", "brand"])
    assert sorted(p.keys for p in partitions) == sorted(
        (("store", s), ("brand", b)) for s in ("1", "2") for b in ("tropicana", "a/b & c")
    )
    assert all(p.nbytes > 0 and len(p.files) == 1 for p in partitions)
    folders = {Path(p.files[0]).parent.name for p in partitions}
    assert "brand=a%2Fb%20%26%20c" in folders, "a '/' in a value must not create a folder"


def test_read_partition_adds_keys_only_when_asked(tmp_path, frame):
    write_partitioned(frame, str(tmp_path / "d"), ["store", "brand"], "part")
    partition = next(
        p
        for p in discover_partitions(str(tmp_path / "d"), ["store", "brand"])
        if p.key_dict["brand"] == "a/b & c"
    )
    with_keys = read_partition(partition, ["week", "sales"])
    assert list(with_keys.columns) == ["week", "sales", "store", "brand"]
    assert set(with_keys["brand"]) == {"a/b & c"}
    assert list(read_partition(partition, ["week", "sales"], with_keys=False).columns) == [
        "week",
        "sales",
    ]


def test_several_files_of_a_partition_are_concatenated(tmp_path, frame):
    write_partitioned(frame.iloc[:8], str(tmp_path / "d"), ["store"], "first")
    write_partitioned(frame.iloc[:8].assign(sales=99.0), str(tmp_path / "d"), ["store"], "second")
    (partition,) = discover_partitions(str(tmp_path / "d"), ["store"])
    assert len(partition.files) == 2
    assert len(read_partition(partition, ["sales"])) == 16


def _odd_partitions(tmp_path: Path, frame: pd.DataFrame) -> list:
    """Six partitions: two alike, one with integer sales, one corrupt, two alike again."""
    root = tmp_path / "d"
    stores = [str(n) for n in range(6)]
    rows = pd.concat([frame.iloc[:4].assign(store=store) for store in stores])
    write_partitioned(rows, str(root), ["store"], "part")
    integers = rows[rows["store"] == "2"].assign(sales=lambda f: f["sales"].astype("int64"))
    write_partitioned(integers, str(root), ["store"], "part")
    (root / "store=3" / "part-0.parquet").write_bytes(b"not parquet")
    partitions = discover_partitions(str(root), ["store"])
    return sorted(partitions, key=lambda p: p.key_dict["store"])


@pytest.mark.parametrize("group_bytes", [1, 1 << 30], ids=["one-per-group", "one-group"])
def test_read_partitions_gives_each_partition_what_read_partition_gives(
    tmp_path, frame, monkeypatch, group_bytes
):
    monkeypatch.setattr(data_module, "_GROUP_BYTES", group_bytes)
    partitions = _odd_partitions(tmp_path, frame)
    read = list(read_partitions(partitions, ["week", "sales"], with_keys=False))
    assert [partition for partition, _ in read] == partitions
    for partition, rows in read:
        if partition.key_dict["store"] == "3":
            assert isinstance(rows, Exception), "the corrupt file fails its own partition"
            continue
        alone = read_partition(partition, ["week", "sales"], with_keys=False)
        pd.testing.assert_frame_equal(rows, alone)
        assert fingerprint(rows, ["week", "sales"]) == fingerprint(alone, ["week", "sales"])
    assert read[2][1]["sales"].dtype == "int64", "a partition keeps its own column types"


def test_read_partitions_adds_keys_when_asked(tmp_path, frame):
    partitions = _odd_partitions(tmp_path, frame)
    for partition, rows in read_partitions(partitions, ["sales"]):
        if not isinstance(rows, Exception):
            assert set(rows["store"]) == {partition.key_dict["store"]}
            assert len(rows) == 4


def test_hidden_and_marker_files_are_ignored(tmp_path, frame):
    write_partitioned(frame, str(tmp_path / "d"), ["store", "brand"], "part")
    (tmp_path / "d" / "_SUCCESS").write_text("")
    (tmp_path / "d" / "store=1" / ".crc").write_text("")
    (tmp_path / "d" / "store=1" / "notes.txt").write_text("not data")
    assert len(discover_partitions(str(tmp_path / "d"), ["store", "brand"])) == 4


def test_missing_layout_level_names_the_folder(tmp_path, frame):
    write_partitioned(frame, str(tmp_path / "d"), ["store"], "part")
    with pytest.raises(
        DataError,
        match=r"data.partition_by: .*store=1/part-0.parquet is partitioned by \['store'\]",
    ):
        discover_partitions(str(tmp_path / "d"), ["store", "brand"])


def test_check_columns_reads_one_footer(tmp_path, frame):
    write_partitioned(frame, str(tmp_path / "d"), ["store", "brand"], "part")
    partition = discover_partitions(str(tmp_path / "d"), ["store", "brand"])[0]
    check_columns(partition, {"week": "data.time_col", "store": "data.id_cols"}, ["sales"])
    with pytest.raises(DataError, match="data.target_col: column 'units' is not in the data"):
        check_columns(partition, {"units": "data.target_col"}, [])


def test_fingerprint_changes_with_values_and_types(frame):
    base = fingerprint(frame, ["week", "sales"])
    assert fingerprint(frame.copy(), ["week", "sales"]) == base
    assert fingerprint(frame.assign(sales=frame["sales"] + 1e-9), ["week", "sales"]) != base
    assert (
        fingerprint(frame.assign(sales=frame["sales"].astype("float32")), ["week", "sales"]) != base
    )
    assert fingerprint(frame.iloc[:-1], ["week", "sales"]) != base


def test_flat_write_puts_one_file_in_the_folder(tmp_path, frame):
    write_partitioned(frame, str(tmp_path / "flat"), [], "part-7")
    assert [p.name for p in (tmp_path / "flat").iterdir()] == ["part-7-0.parquet"]
    assert len(pd.read_parquet(tmp_path / "flat")) == len(frame)


def test_rewriting_the_same_basename_replaces_the_file(tmp_path, frame):
    write_partitioned(frame, str(tmp_path / "d"), ["store"], "part-3")
    write_partitioned(frame, str(tmp_path / "d"), ["store"], "part-3")
    assert len(pd.read_parquet(tmp_path / "d")) == len(frame)


def test_replace_dir_swaps_the_whole_folder(tmp_path, frame):
    final = str(tmp_path / "out")
    staging = staging_path(final)
    write_partitioned(frame, staging, [], "old")
    replace_dir(staging, final)
    staging = staging_path(final)
    write_partitioned(frame.iloc[:2], staging, [], "new")
    replace_dir(staging, final)
    assert sorted(p.name for p in Path(final).iterdir()) == [".manymodels-output", "new-0.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_key_types_restore_integers():
    assert key_types({"store": ["1", "-20"], "brand": ["x"], "code": ["007", "1e3"]}) == {
        "store": KeyType(integer=True),
        "brand": KeyType(),
        "code": KeyType(in_files=True),
    }


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "streamed"])
@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_prepare_round_trips_a_flat_file(tmp_path, frame, monkeypatch, in_memory, suffix):
    if not in_memory:
        monkeypatch.setattr(preparing, "_IN_MEMORY_BYTES", 0)
    flat = tmp_path / f"flat.{suffix}"
    frame.assign(store=frame["store"].astype(int)).to_csv(
        flat, index=False
    ) if suffix == "csv" else (
        pq.write_table(pa.Table.from_pandas(frame.assign(store=frame["store"].astype(int))), flat)
    )
    assert prepare(str(flat), ["store", "brand"], str(tmp_path / "out")) == 4
    back = pd.read_parquet(tmp_path / "out")
    assert len(back) == len(frame)
    assert sorted(back["brand"].astype(str).unique()) == sorted(frame["brand"].unique())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([flat.name, "out"])


def test_prepare_names_a_missing_column(tmp_path, frame):
    flat = tmp_path / "flat.csv"
    frame.to_csv(flat, index=False)
    with pytest.raises(
        DataError,
        match="--partition-by: column 'region' is not in .*available columns are store, brand, week, sales",
    ):
        prepare(str(flat), ["region"], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_prepare_names_a_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nowhere.csv: input file not found"):
        prepare(str(tmp_path / "nowhere.csv"), ["store"], str(tmp_path / "out"))
