"""The MLflow signature of saved models: the pyfunc input and output, declared.

The input of an entity model is the frame of periods to forecast: the time column and the
exogenous columns, optionally preceded by rows of newer history that also carry the target
(see :mod:`~manymodels.artifacts.entity_folder`). Every column is optional, since an empty
frame forecasts the next ``horizon`` periods from the stored history. A job bundle's input
also names each entity by its key columns, which are required. The output has the time
column, ``prediction`` and the interval columns of the job's ``forecast.levels``; the
``horizon`` parameter sets how many periods an input without time values asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from manymodels.intervals import level_label

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

    from manymodels.config import Config

__all__ = ["forecast_signature", "job_signature"]


def job_signature(config: Config, bundle: bool = False) -> ModelSignature:
    """The signature of the models a job saves: entity models, or its bundle's."""
    data = config.data
    keys = data.entity_cols if bundle else ()
    return forecast_signature(data.time_col, data.target_col, data.exog_cols,
                              config.forecast.levels, config.horizon, keys)  # fmt: skip


def forecast_signature(
    time_col: str, target_col: str, exog_cols: Sequence[str], levels: Sequence[float],
    horizon: int, key_cols: Sequence[str] = (),
) -> ModelSignature:  # fmt: skip
    """The signature of a job's models.

    Args:
        time_col: the timestamp column.
        target_col: the target column (only in rows of newer history).
        exog_cols: the exogenous columns.
        levels: the interval levels its forecasts carry, in percent.
        horizon: the default of the ``horizon`` parameter.
        key_cols: the entity key columns, for a job bundle's input and output.

    Example:
        >>> signature = forecast_signature("week", "sales", ["price"], [80], 4)
        >>> signature.outputs.input_names()
        ['week', 'prediction', 'lo-80', 'hi-80']
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    keys = [ColSpec("string", col) for col in key_cols]
    inputs: list[ColSpec | TensorSpec] = [
        *keys,
        ColSpec("datetime", time_col, required=False),
        *(ColSpec("double", col, required=False) for col in exog_cols),
        ColSpec("double", target_col, required=False),
    ]
    bounds = [f"{side}-{level_label(level)}" for level in sorted(levels) for side in ("lo", "hi")]
    outputs: list[ColSpec | TensorSpec] = [*keys, ColSpec("datetime", time_col), ColSpec("double", "prediction"),
               *(ColSpec("double", name) for name in bounds)]  # fmt: skip
    params = ParamSchema([ParamSpec("horizon", "long", int(horizon))])
    return ModelSignature(Schema(inputs), Schema(outputs), params)
