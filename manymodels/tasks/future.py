"""Known future exogenous values from a dataset of their own (``forecast.future_path``).

Planned prices and promotions often live apart from the sales history. The future dataset is
partitioned like the data (same ``partition_by`` folders) and holds the time column and the
exogenous columns; a forecast task reads the partitions of its own entities and puts their rows
after each entity's last observed target, in place of any future rows of the data.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from manymodels import data as data_io
from manymodels.config import Config
from manymodels.data import Partition

__all__ = ["FutureRows"]

PartitionKeys = tuple[tuple[str, str], ...]


class FutureRows:
    """The future rows of a task's entities, read once per partition."""

    def __init__(self, partitions: Mapping[PartitionKeys, Partition], config: Config) -> None:
        self.partitions = partitions
        self.config = config
        self._read: dict[PartitionKeys, pd.DataFrame] = {}

    def attach(self, keys: Mapping[str, str], frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` up to its last observed target, followed by the entity's future rows.

        Raises:
            Exception: the entity's future partition cannot be read.
        """
        data = self.config.data
        rows = self._rows(keys)
        times = pd.to_datetime(frame[data.time_col])
        observed = frame[data.target_col].notna().to_numpy()
        last = times[observed].max() if observed.any() else times.max()
        future = rows[pd.to_datetime(rows[data.time_col]) > last].copy()
        future[data.target_col] = np.nan
        history = frame[(times <= last).to_numpy()]
        return pd.concat([history, future[list(history.columns)]], ignore_index=True)

    def _rows(self, keys: Mapping[str, str]) -> pd.DataFrame:
        data = self.config.data
        partition_keys = tuple((col, keys[col]) for col in data.partition_by)
        if partition_keys not in self._read:
            self._read[partition_keys] = self._load(self.partitions.get(partition_keys))
        rows = self._read[partition_keys]
        for col in data.entity_cols:
            if col not in data.partition_by and col in rows:
                rows = rows[rows[col].astype(str) == keys[col]]
        return rows

    def _load(self, partition: Partition | None) -> pd.DataFrame:
        data = self.config.data
        extra = [col for col in data.entity_cols if col not in data.partition_by]
        columns = [*extra, data.time_col, *data.exog_cols]
        if partition is None:
            return pd.DataFrame(columns=columns)
        ((_, frame),) = data_io.read_partitions([partition], columns, data.storage_options,
                                                with_keys=False)  # fmt: skip
        if isinstance(frame, Exception):
            raise frame
        return frame
