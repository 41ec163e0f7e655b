"""manymodels: train, track and serve one forecasting model per entity, thousands at a time.

Example:
    >>> import manymodels
    >>> config = manymodels.load_config("configs/demo.yaml")  # doctest: +SKIP
    >>> trained = manymodels.train(config)                     # doctest: +SKIP
    >>> result = manymodels.forecast(config)                   # doctest: +SKIP
"""

import importlib
from typing import TYPE_CHECKING, Any

from manymodels.config import Config, config_from_dict, load_config
from manymodels.errors import (
    ConfigError,
    DataError,
    JobError,
    ManyModelsError,
    RegistryError,
    ResumeError,
    TemplateError,
)
from manymodels.templates import TrainContext

if TYPE_CHECKING:
    from manymodels.exploration.api import ManyModels
    from manymodels.exploration.html_report import write_report
    from manymodels.exploration.jobdata import list_jobs, load_job
    from manymodels.jobs import ForecastResult, TrainResult, forecast, retrain, train
    from manymodels.lifecycle import (
        list_models,
        promote_models,
        prune_models,
        rollback_models,
        show_model,
        stale_models,
    )

# The jobs pull in Dask and MLflow; they are imported on first use, so that loading a saved
# model (which imports this package) stays light.
_JOBS = {
    "ForecastResult": "manymodels.jobs.results",
    "TrainResult": "manymodels.jobs.results",
    "forecast": "manymodels.jobs.forecasting",
    "retrain": "manymodels.jobs.training",
    "train": "manymodels.jobs.training",
    "write_report": "manymodels.exploration.html_report",
    "load_job": "manymodels.exploration.jobdata",
    "list_jobs": "manymodels.exploration.jobdata",
    "ManyModels": "manymodels.exploration.api",
    "list_models": "manymodels.lifecycle",
    "show_model": "manymodels.lifecycle",
    "promote_models": "manymodels.lifecycle",
    "rollback_models": "manymodels.lifecycle",
    "prune_models": "manymodels.lifecycle",
    "stale_models": "manymodels.lifecycle",
}


def __getattr__(name: str) -> Any:
    if name in _JOBS:
        return getattr(importlib.import_module(_JOBS[name]), name)
    raise AttributeError(f"module 'manymodels' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "ForecastResult",
    "JobError",
    "ManyModels",
    "ManyModelsError",
    "RegistryError",
    "ResumeError",
    "TemplateError",
    "TrainContext",
    "TrainResult",
    "config_from_dict",
    "forecast",
    "list_jobs",
    "list_models",
    "load_config",
    "load_job",
    "promote_models",
    "prune_models",
    "retrain",
    "rollback_models",
    "show_model",
    "stale_models",
    "train",
    "write_report",
]
