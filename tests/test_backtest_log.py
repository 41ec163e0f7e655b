"""The job's backtest table on disk: parts written whole or not at all."""

from __future__ import annotations

import pandas as pd

from manymodels.jobs.backtests import BacktestFiles, BacktestLog
from manymodels.outcomes import EntityResult


def _result(store: str) -> EntityResult:
    result = EntityResult(keys={"store": store}, name=f"oj.store={store}", status="ok")
    result.backtest = pd.DataFrame({"cutoff": [3, 3], "prediction": [1.0, 2.0],
                                    "candidate": ["naive", "naive"]})  # fmt: skip
    return result


def test_a_part_a_killed_driver_was_writing_is_never_read(tmp_path):
    log = BacktestLog(str(tmp_path), "job-1", ["store"])
    log.add([_result("1"), _result("2")])
    # What a driver killed while writing a part leaves behind: an empty file.
    (log.folder / ".writing-part-0123456789ab.parquet").write_bytes(b"")

    (part,) = log.files().paths
    assert part.name.startswith("part-") and part.stat().st_size > 0
    table = log.files().read()
    assert table["store"].tolist() == ["1", "1", "2", "2"]
    assert list(log.folder.glob(".writing-*")) == [log.folder / ".writing-part-0123456789ab.parquet"]


def test_a_few_entities_rows_are_read_without_the_whole_table(tmp_path):
    log = BacktestLog(str(tmp_path), "job-1", ["store"])
    for batch in (["1", "2"], ["3"], ["4", "5"]):
        log.add([_result(store) for store in batch])
    log.add([])  # a batch without predictions writes no part

    files = log.files()
    assert len(files.paths) == 3
    rows = files.of([{"store": "5"}, {"store": "2"}, {"store": "9"}])
    assert sorted(rows["store"]) == ["2", "2", "5", "5"]
    assert set(rows.columns) == {"store", "cutoff", "prediction", "candidate"}
    assert files.of([{"store": "9"}]).empty


def test_keys_written_as_numbers_match_the_same_keys_as_text(tmp_path):
    merged = tmp_path / "backtest.parquet"
    pd.DataFrame({"store": [7, 7, 8], "brand": ["a", "b", "a"], "prediction": [1.0, 2.0, 3.0]}
                 ).to_parquet(merged, row_group_size=1)  # fmt: skip
    files = BacktestFiles((merged,), ("store", "brand"))

    rows = files.of([{"store": "7", "brand": "b"}, {"store": "8", "brand": "a"}])
    assert rows["prediction"].tolist() == [2.0, 3.0]
