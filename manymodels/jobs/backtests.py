"""The job's backtest table: every candidate's out-of-sample predictions in every window.

Each batch's predictions are written to a Parquet part under the job's folder in ``work_dir``
as the batch arrives (so a resumed job keeps the parts of its earlier session, and the driver
never holds the whole table), and streamed into one ``backtest.parquet`` in the job's MLflow run
at the end, beside ``entity_results``. :class:`BacktestFiles` reads either back, whole for a
notebook or a few entities' rows for a report: with every candidate of 100,000 entities, the
whole table is gigabytes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from manymodels.outcomes import EntityResult

if TYPE_CHECKING:
    from manymodels.tracking.runs import JobRun

__all__ = ["BacktestFiles", "BacktestLog"]

ARTIFACT = "backtest.parquet"


@dataclass(frozen=True)
class BacktestFiles:
    """A backtest table in local Parquet files (a job's parts, or its run's artifact).

    Attributes:
        paths: the files, each holding whole row groups of the table.
        entity_cols: the key columns that name an entity's rows.
    """

    paths: tuple[Path, ...]
    entity_cols: tuple[str, ...] = ()

    @classmethod
    def in_folder(cls, folder: Path, entity_cols: Sequence[str] = ()) -> BacktestFiles:
        """The parts a job wrote to ``folder`` (none when it does not exist)."""
        parts = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
        return cls(tuple(parts), tuple(entity_cols))

    def read(self) -> pd.DataFrame:
        """The whole table (empty without files)."""
        if not self.paths:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(path) for path in self.paths], ignore_index=True)

    def of(self, entities: Sequence[Mapping[str, str]]) -> pd.DataFrame:
        """The rows of ``entities`` only (key values compared as text), in one pass that holds
        one row group at a time and reads the other columns only where a key matched."""
        wanted = {tuple(str(entity[col]) for col in self.entity_cols) for entity in entities}
        found = []
        for path in self.paths:
            parquet = pq.ParquetFile(path)
            keys = [col for col in self.entity_cols if col in parquet.schema_arrow.names]
            if len(keys) < len(self.entity_cols):
                continue
            for group in range(parquet.num_row_groups):
                frame = parquet.read_row_group(group, columns=keys).to_pandas()
                rows = pd.MultiIndex.from_frame(frame.astype(str)).isin(wanted)
                if rows.any():
                    found.append(parquet.read_row_group(group).to_pandas()[rows])
        return pd.concat(found, ignore_index=True) if found else pd.DataFrame()


class BacktestLog:
    """Collects a job's backtest predictions, batch by batch, in ``work_dir``."""

    def __init__(self, work_dir: str, job_id: str, entity_cols: list[str]) -> None:
        self.folder = Path(work_dir) / "jobs" / job_id / "backtest"
        self.entity_cols = entity_cols

    def add(self, results: list[EntityResult]) -> None:
        """Write the batch's predictions as one part, and drop them from the results."""
        frames = []
        for result in results:
            frame, result.backtest = result.backtest, None
            if frame is not None and len(frame):
                keys = pd.DataFrame({col: [result.keys.get(col)] * len(frame)
                                     for col in self.entity_cols})  # fmt: skip
                frames.append(pd.concat([keys, frame.reset_index(drop=True)], axis=1))
        if frames:
            self.folder.mkdir(parents=True, exist_ok=True)
            table = pd.concat(frames, ignore_index=True)
            name = f"part-{uuid.uuid4().hex[:12]}.parquet"
            # Written aside and renamed in: a driver killed mid-write leaves no half part for the
            # resumed session to trip over (an empty one once failed a resumed job's end).
            staging = self.folder / f".writing-{name}"
            table.to_parquet(staging, index=False)
            os.replace(staging, self.folder / name)

    def files(self) -> BacktestFiles:
        """The parts written so far, to read back (the job itself never reads them whole)."""
        return BacktestFiles.in_folder(self.folder, self.entity_cols)

    def log(self, job: JobRun) -> None:
        """Stream the parts into one Parquet file in the run; nothing when there are none."""
        parts = self.files().paths
        if not parts:
            return
        merged = self.folder.parent / ARTIFACT
        writer: pq.ParquetWriter | None = None
        try:
            for part in parts:
                table = pq.read_table(part)
                if writer is None:
                    writer = pq.ParquetWriter(merged, table.schema)
                writer.write_table(table.cast(writer.schema) if table.schema != writer.schema
                                   else table)  # fmt: skip
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # Parts whose columns differ in type (a key read as text in one batch and numbers
            # in another): fall back to a pandas concatenation.
            if writer is not None:
                writer.close()
                writer = None
            self.files().read().to_parquet(merged, index=False)
        finally:
            if writer is not None:
                writer.close()
        job.log_file(str(merged))
