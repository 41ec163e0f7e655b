"""Reading a task's partitions and splitting them into entities."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from manymodels import data as data_io
from manymodels.candidates import ModelPlan, load_candidates
from manymodels.config import Config
from manymodels.data import Partition
from manymodels.errors import DataError, EntityError
from manymodels.fitting import FitSpec
from manymodels.guard import Failure, failure_from
from manymodels.keys import check_keys, key_text

__all__ = ["entity_fingerprint", "fit_spec", "iter_entities"]


def fit_spec(config: Config, plan: ModelPlan) -> FitSpec:
    """The fitting specification of a job, built on the worker from the config and plan."""
    data = config.data
    evaluation = config.evaluation
    return FitSpec(
        candidates=load_candidates(plan),
        time_col=data.time_col,
        target_col=data.target_col,
        exog_cols=tuple(data.exog_cols),
        freq=data.freq,
        fill_missing=data.fill_missing,
        horizon=config.horizon,
        holdout=config.holdout,
        refit=evaluation.refit,
        season_length=evaluation.season_length,
        windows=evaluation.windows,
        step=evaluation.step,
        metric=evaluation.metric,
        intermittent_metric=evaluation.intermittent_metric,
        levels=tuple(config.forecast.levels),
        fallback=plan.fallback,
        keep_predictions=evaluation.keep_predictions,
        combine=config.model.combine,
        non_negative=data.non_negative,
    )


def entity_fingerprint(frame: pd.DataFrame, config: Config) -> str:
    """The content hash of an entity's rows that a version records as its data fingerprint:
    time, target and exogenous columns, as :func:`iter_entities` yields them."""
    data = config.data
    return data_io.fingerprint(frame, [data.time_col, data.target_col, *data.exog_cols])


def iter_entities(
    partitions: list[Partition], config: Config
) -> Iterator[tuple[dict[str, str], pd.DataFrame, Failure | None]]:
    """Yield ``(keys, rows, None)`` per entity, or ``(partition keys, empty, failure)`` for a
    partition that cannot be read; never raises for one bad partition."""
    data = config.data
    extra = [col for col in data.entity_cols if col not in data.partition_by]
    columns = [*extra, data.time_col, data.target_col, *data.exog_cols]
    # Partition keys are known from the folder names; the frames do not need them.
    read = data_io.read_partitions(partitions, columns, data.storage_options, with_keys=False)
    for partition, frame in read:
        try:
            if isinstance(frame, Exception):
                raise frame
            missing = [col for col in columns if col not in frame.columns]
            if missing:
                raise DataError(f"column '{missing[0]}' is missing from this partition's files")
        except Exception as exc:  # a corrupt or odd partition fails alone
            yield partition.key_dict, pd.DataFrame(), failure_from("read", exc)
            continue
        if not extra:
            yield _checked(partition.key_dict, frame)
            continue
        for values, group in frame.groupby(extra, dropna=False, sort=True):
            values = values if isinstance(values, tuple) else (values,)
            keys = {
                **partition.key_dict,
                **{col: key_text(v) for col, v in zip(extra, values, strict=True)},
            }
            yield _checked({col: keys[col] for col in data.entity_cols}, group)


def _checked(
    keys: dict[str, str], frame: pd.DataFrame
) -> tuple[dict[str, str], pd.DataFrame, Failure | None]:
    """An entity, or its failure when the registry could not hold its keys."""
    try:
        check_keys(keys)
    except EntityError as exc:
        return keys, pd.DataFrame(), failure_from("keys", exc)
    return keys, frame, None
