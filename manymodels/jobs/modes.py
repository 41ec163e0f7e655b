"""The two registration modes, and everything a job does differently in each, in one table.

``tracking.registration`` is read here and nowhere else in the jobs (the other place that
reads it is :func:`manymodels.artifacts.sinks.open_sink`, where a task picks its model sink).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from manymodels.config import Config
from manymodels.inputs import Inputs
from manymodels.jobs.forecast_models import (
    EntityModels,
    Item,
    batches_by_shard,
    batches_by_size,
    models_by_entity,
    models_in_bundle,
)
from manymodels.jobs.registrars import BundleRegistrar, EntityRegistrar
from manymodels.tracking.registry import Registry
from manymodels.tracking.runs import JobRun
from manymodels.tracking.store import Tracking

__all__ = ["MODES", "RegistrationMode", "Registrar", "mode_of"]

Registrar = EntityRegistrar | BundleRegistrar


@dataclass(frozen=True)
class RegistrationMode:
    """What differs between ``per_entity`` and ``per_job`` registration.

    Attributes:
        registrar: registers a training job's results.
        entity_models: finds each entity's model for a forecast.
        forecast_batches: groups a forecast's partitions into batches.
    """

    registrar: Callable[[Tracking, JobRun, Inputs, str, bool], Registrar]
    entity_models: Callable[[Registry, Config, str | None, int | None], EntityModels]
    forecast_batches: Callable[[list[Item], int, Config], list[list[Item]]]


MODES = {
    "per_entity": RegistrationMode(EntityRegistrar, models_by_entity, batches_by_size),
    "per_job": RegistrationMode(BundleRegistrar, models_in_bundle, batches_by_shard),
}


def mode_of(config: Config) -> RegistrationMode:
    """The registration mode a config asks for."""
    return MODES[config.tracking.registration]
