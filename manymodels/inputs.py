"""A job's inputs, checked before anything is written: template, parameters, dataset.

Validation (template, parameters, dataset layout and columns) happens before the tracking store
is touched, so bad input leaves nothing behind in the registry or the outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from manymodels.candidates import ModelPlan, plan_models
from manymodels.config import Config
from manymodels.data import Partition, check_columns, discover_partitions
from manymodels.errors import ManyModelsError, UnreadableFileError
from manymodels.frequency_check import check_frequency
from manymodels.secrets import remember_config

__all__ = ["Inputs", "validate_inputs"]

# Partitions whose footers validation tries before it gives up on the dataset.
_SCHEMA_PROBES = 5


@dataclass(frozen=True)
class Inputs:
    """A job's validated inputs (a forecast needs no template: ``plan`` is None)."""

    config: Config
    plan: ModelPlan | None
    params: dict[str, Any]
    partitions: list[Partition]

    @property
    def trained_plan(self) -> ModelPlan:
        """The model plan of a training job (validated with ``needs_template=True``)."""
        if self.plan is None:
            raise TypeError("these inputs were validated without a template")
        return self.plan


def validate_inputs(config: Config, needs_template: bool = True) -> Inputs:
    """Check the template and its parameters (when ``needs_template``) and the dataset's
    layout and columns, before anything is written.

    Raises:
        ManyModelsError: with the config file's name in front of the message.
    """
    remember_config(config)
    plan, params = None, {}
    try:
        if needs_template:
            plan = plan_models(config.model)
            params = plan.params
        data = config.data
        partitions = discover_partitions(data.path, data.partition_by, data.storage_options)
        required = {col: "data.id_cols" for col in data.entity_cols}
        required.update({col: "data.exog_cols" for col in data.exog_cols})
        required.update({data.time_col: "data.time_col", data.target_col: "data.target_col"})
        _check_columns(partitions, required, [data.target_col, *data.exog_cols], config)
        check_frequency(partitions, config)
        if needs_template or not config.tracking.uri:  # the ledger, or the embedded store
            _check_writable(config.work_dir)
    except ManyModelsError as exc:
        raise type(exc)(f"{config.label()}: {exc}") from None
    return Inputs(config, plan, params, partitions)


def _check_columns(
    partitions: list[Partition], required: dict[str, str], numeric: list[str], config: Config
) -> None:
    """Check the columns on the first partition whose footer reads: a corrupt file fails its
    own partition at train time, whichever partition it is."""
    first_error: UnreadableFileError | None = None
    for partition in partitions[:_SCHEMA_PROBES]:
        try:
            check_columns(partition, required, numeric, config.data.storage_options)
            return
        except UnreadableFileError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def _check_writable(work_dir: str) -> None:
    existing = os.path.abspath(work_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise ManyModelsError(
            f"work_dir: {os.path.abspath(work_dir)} is not writable ({existing} is not a "
            "writable folder). Hint: set work_dir to a folder you can write to."
        )
