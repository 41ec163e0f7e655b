"""The job ledger: an append-only record of finished partitions, written as the job goes.

One JSON line per finished batch, flushed to disk before the next batch is handled, so a job
killed at any moment can be resumed: finished partitions are skipped and their results reused.
The registry stays the authority on which models exist; the ledger only saves repeating work.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["Ledger"]


class Ledger:
    """The ledger file of one job under ``work_dir/jobs/``."""

    def __init__(self, work_dir: str, job_id: str) -> None:
        self.path = Path(work_dir) / "jobs" / f"{job_id}.jsonl"

    def append(
        self, partitions: Iterable[tuple[tuple[str, str], ...]], rows: list[dict[str, Any]]
    ) -> None:
        """Record finished partitions and their entities' result rows, durably."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            {"partitions": [list(map(list, keys)) for keys in partitions], "rows": rows},
            default=str,
        )
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def read(self) -> tuple[set[tuple[tuple[str, str], ...]], list[dict[str, Any]]]:
        """The finished partitions and result rows recorded so far (a torn last line is ignored)."""
        done: set[tuple[tuple[str, str], ...]] = set()
        rows: list[dict[str, Any]] = []
        if not self.path.exists():
            return done, rows
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the driver died while writing this line
                done.update(tuple(tuple(pair) for pair in keys) for keys in entry["partitions"])
                rows.extend(entry["rows"])
        return done, rows
