"""The job's backtest table on disk: parts written whole or not at all."""

from __future__ import annotations

import pandas as pd

from manymodels.jobs.backtests import BacktestLog
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

    (part,) = log.parts()
    assert part.name.startswith("part-") and part.stat().st_size > 0
    table = log.read()
    assert table["store"].tolist() == ["1", "1", "2", "2"]
    assert list(log.folder.glob(".writing-*")) == [log.folder / ".writing-part-0123456789ab.parquet"]
