"""DataFrames in and out of jobs.

A long DataFrame (key columns, time, target, covariates) is staged as hive-partitioned Parquet
under ``work_dir/frames/<digest>/``, so that the same engine runs it as it runs a dataset on
disk: workers read their own partitions, and a retrain recognises unchanged data. The same rows
always stage to the same folder, written once; results come back as DataFrames.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Sequence
from typing import Any

import pandas as pd

from manymodels.config import Config
from manymodels.data import write_partitioned
from manymodels.errors import ConfigError, DataError

__all__ = ["read_forecasts", "stage_frame", "with_frame"]

FRAMES_DIR = "frames"


def stage_frame(frame: pd.DataFrame, partition_by: Sequence[str], work_dir: str) -> str:
    """Write ``frame`` as hive-partitioned Parquet under ``work_dir`` and return the folder.

    Args:
        frame: long data: one row per entity and period.
        partition_by: the key columns, one folder level each.
        work_dir: the job's ``work_dir``; the data goes to ``frames/<digest>`` inside it.

    Raises:
        DataError: ``frame`` is not a DataFrame, is empty, or lacks a key column.
    """
    _check_frame(frame, partition_by)
    target = os.path.join(os.path.abspath(work_dir), FRAMES_DIR, _digest(frame))
    if os.path.isdir(target):
        return target  # the same rows were staged before: same files, same fingerprints
    staging = f"{target}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        write_partitioned(frame.reset_index(drop=True), staging, list(partition_by), "part")
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not os.path.isdir(target):  # another process staging the same rows won the race
            raise
    return target


def _check_frame(frame: Any, partition_by: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame of long data, got {type(frame).__name__}.")
    if frame.empty:
        raise DataError("the DataFrame has no rows.")
    missing = [col for col in partition_by if col not in frame.columns]
    if missing:
        raise DataError(
            f"the DataFrame has no column '{missing[0]}' (its columns: "
            f"{', '.join(map(str, frame.columns))}). Hint: name the entity key columns in id_cols."
        )


def _digest(frame: pd.DataFrame) -> str:
    """A content digest of the rows and column names (order included)."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    payload = hashed.tobytes() + "\0".join(map(str, frame.columns)).encode("utf-8")
    payload += "\0".join(map(str, frame.dtypes)).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:16]


def with_frame(config: Any, frame: pd.DataFrame | None) -> Config:
    """The config with ``data.path`` pointing at ``frame`` staged as Parquet (unchanged when
    ``frame`` is None).

    Raises:
        ConfigError: ``config`` is not a Config (a DataFrame passed in its place, say).
    """
    if not isinstance(config, Config):
        what = type(config).__name__
        raise ConfigError(
            f"expected a Config as the first argument, got a {what}. Hint: "
            "manymodels.train(manymodels.load_config('my.yaml'), data=frame), or "
            "manymodels.ManyModels(...).fit(frame) for a DataFrame without a config file."
        )
    if frame is None:
        return config
    path = stage_frame(frame, config.data.partition_by, config.work_dir)
    return config.model_copy(update={"data": config.data.model_copy(update={"path": path})})


def read_forecasts(path: str, key_cols: Sequence[str]) -> pd.DataFrame:
    """A forecast job's output folder as one DataFrame, key columns as strings."""
    frame = pd.read_parquet(path)
    for col in key_cols:
        if col in frame:
            frame[col] = frame[col].astype(str)
    return frame.reset_index(drop=True)
