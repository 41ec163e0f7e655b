"""The forecasting task: forecast every entity of a batch with its registered model."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from manymodels import data as data_io
from manymodels.artifacts.loader import ModelLoader
from manymodels.config import Config
from manymodels.data import Partition
from manymodels.entity_model import PREDICTION_COL, EntityModel
from manymodels.errors import FutureValuesError
from manymodels.guard import failure_from
from manymodels.intervals import level_label
from manymodels.keys import KeyType, key_values
from manymodels.naming import model_name
from manymodels.outcomes import EntityResult, failed
from manymodels.outputs import write_while_open
from manymodels.tasks.entities import iter_entities
from manymodels.tasks.future import FutureRows
from manymodels.timeseries import future_frame, regularize

__all__ = ["ForecastTask", "ModelRef", "forecast_batch"]

# (registered model name, version, model location) of one entity's model.
ModelRef = tuple[str, int, str]


@dataclass(frozen=True)
class ForecastTask:
    """Everything a forecasting task needs besides its partitions and model versions."""

    config: Config
    staging: str
    horizon: int
    key_types: Mapping[str, KeyType] = field(default_factory=dict)
    tracking_uri: str | None = None
    future_partitions: Mapping[tuple[tuple[str, str], ...], Partition] | None = None


def forecast_batch(
    items: list[tuple[Partition, dict[str, ModelRef]]], task: ForecastTask, batch_id: str
) -> list[EntityResult]:
    """Forecast every entity of some partitions and write the rows under ``task.staging``.

    Args:
        items: partitions, each with ``{entity model name: ModelRef}`` for its entities.
        task: the forecast settings and the staging folder to write into.
        batch_id: names this batch's output files, so a repeated task replaces them.
    """
    config = task.config
    loader = ModelLoader(task.tracking_uri)
    results: list[EntityResult] = []
    rows = _Rows()
    refs = {name: ref for _, models in items for name, ref in models.items()}
    future = FutureRows(task.future_partitions, config) if task.future_partitions is not None \
        else None
    for keys, frame, failure in iter_entities([partition for partition, _ in items], config):
        name = model_name(config.tracking.model_prefix, keys)
        ref = refs.get(name)
        if failure is not None:
            results.append(failed(keys, name, failure))
        elif ref is None:
            results.append(EntityResult(keys, name, "no_model"))
        else:
            started = time.perf_counter()
            try:
                if future is not None:
                    frame = future.attach(keys, frame)
                predictions, carried = _forecast_entity(
                    loader.load(ref[2]), frame, config, task.horizon
                )
            except BaseException as exc:  # noqa: BLE001 - one entity's failure is recorded
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                results.append(failed(keys, name, failure_from("forecast", exc)))
                continue
            rows.add(keys, predictions, ref)
            results.append(
                EntityResult(
                    keys, name, "ok", time.perf_counter() - started, forecast_rows=len(predictions),
                    carried_forward=carried,
                )
            )
    if rows.count:
        output = rows.frame(config, task.key_types)
        write_while_open(task.staging, functools.partial(
            data_io.write_partitioned, output, task.staging, config.output_partitions,
            f"part-{batch_id}", task.key_types))  # fmt: skip
    return results


def interval_names(levels: list[float]) -> list[str]:
    """The output's interval columns, ``lo-80``, ``hi-80``, ... in level order."""
    return [f"{side}-{level_label(level)}" for level in sorted(levels) for side in ("lo", "hi")]


def _forecast_entity(
    model: EntityModel, frame: pd.DataFrame, config: Config, horizon: int
) -> tuple[pd.DataFrame, bool]:
    """The entity's forecast, and whether exogenous values were carried forward into it."""
    data = config.data
    series = regularize(frame, data.time_col, data.target_col, list(data.exog_cols),
                        model.context.freq, data.fill_missing)  # fmt: skip
    arguments = (series.history, series.future, data.time_col, list(data.exog_cols),
                 series.freq, horizon)  # fmt: skip
    carried = False
    try:
        future = future_frame(*arguments, carry_forward=False)
    except FutureValuesError:
        if data.future_exog != "carry_forward":
            raise
        future, carried = future_frame(*arguments, carry_forward=True), True
    forecast = model.forecast(history=series.history, future=future, levels=config.forecast.levels)
    return forecast, carried


class _Rows:
    """A batch's forecasts, gathered as column arrays: one DataFrame at the end is far cheaper
    than a small labelled DataFrame per entity."""

    def __init__(self) -> None:
        self.keys: list[dict[str, str]] = []
        self.lengths: list[int] = []
        self.times: list[Any] = []
        self.values: list[Any] = []
        self.bounds: list[dict[str, Any]] = []
        self.refs: list[ModelRef] = []

    @property
    def count(self) -> int:
        return len(self.keys)

    def add(self, keys: dict[str, str], predictions: pd.DataFrame, ref: ModelRef) -> None:
        self.keys.append(keys)
        self.lengths.append(len(predictions))
        self.times.append(predictions.iloc[:, 0])
        self.values.append(predictions[PREDICTION_COL].to_numpy())
        self.bounds.append({col: predictions[col].to_numpy() for col in predictions.columns[2:]})
        self.refs.append(ref)

    def frame(self, config: Config, key_types: Mapping[str, KeyType]) -> pd.DataFrame:
        repeat = np.asarray(self.lengths)
        columns: dict[str, Any] = {}
        for column in config.data.entity_cols:
            kind = key_types.get(column, KeyType())
            values = key_values([keys[column] for keys in self.keys], kind)
            # Inside the files, nullable types: a null key must not turn integers into floats.
            # A folder's values are never null, and plain types leave no pandas type behind
            # for a column the files do not hold.
            if kind.in_files:
                dtype = "Int64" if kind.integer else "string"
            else:
                dtype = "int64" if kind.integer else "object"
            columns[column] = np.repeat(pd.array(values, dtype=dtype), repeat)
        # Concatenated as Series, so that time zones survive.
        columns[config.data.time_col] = pd.concat(self.times, ignore_index=True).array
        columns[PREDICTION_COL] = np.concatenate(self.values)
        for column in interval_names(config.forecast.levels):
            # A model saved before intervals existed has none: its rows get nulls.
            columns[column] = np.concatenate([
                bounds.get(column, np.full(length, np.nan))
                for bounds, length in zip(self.bounds, self.lengths, strict=True)
            ])  # fmt: skip
        columns["model_name"] = np.repeat([ref[0] for ref in self.refs], repeat)
        columns["model_version"] = np.repeat([ref[1] for ref in self.refs], repeat)
        return pd.DataFrame(columns)
