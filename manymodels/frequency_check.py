"""Checking ``data.freq`` against a sample of the data before a job starts.

A frequency that does not match the timestamps (``D`` on monthly data) would otherwise be found
entity by entity, after the cluster has started; one partition's first entity is enough to
catch the usual mistake, in one line, before anything is written.
"""

from __future__ import annotations

import pandas as pd

from manymodels import data as data_io
from manymodels.config import Config
from manymodels.data import Partition
from manymodels.errors import ConfigError
from manymodels.timeseries import frequency_problem

__all__ = ["check_frequency"]

# Partitions tried before giving up on finding a readable one (a corrupt one fails alone later).
_PROBES = 3


def check_frequency(partitions: list[Partition], config: Config) -> None:
    """Check the configured frequency on the first readable partition's first entity.

    Raises:
        ConfigError: its timestamps are off the frequency's grid, or the frequency is finer
            than the data.
    """
    data = config.data
    if data.freq is None:
        return
    extra = [col for col in data.entity_cols if col not in data.partition_by]
    for partition in partitions[:_PROBES]:
        try:
            frame = data_io.read_partition(partition, [*extra, data.time_col, data.target_col],
                                           data.storage_options, with_keys=False)  # fmt: skip
            times = pd.to_datetime(_first_entity(frame, extra)[data.time_col])
        except Exception:  # noqa: BLE001 - unreadable data fails its own entity at train time
            continue
        ordered = times.drop_duplicates().sort_values().reset_index(drop=True)
        problem = frequency_problem(ordered, data.time_col, data.freq)
        if problem:
            where = "/".join(f"{col}={value}" for col, value in partition.keys)
            raise ConfigError(f"{problem} (checked on {where})")
        return


def _first_entity(frame: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    if not extra or frame.empty:
        return frame
    first = frame.iloc[0][extra]
    return frame[(frame[extra] == first.to_numpy()).all(axis=1)]
