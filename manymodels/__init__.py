"""manymodels: train, track and serve one forecasting model per entity, thousands at a time.

Example:
    >>> import manymodels
    >>> config = manymodels.load_config("configs/demo.yaml")  # doctest: +SKIP
    >>> trained = manymodels.train(config)                     # doctest: +SKIP
    >>> result = manymodels.forecast(config)                   # doctest: +SKIP
"""

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
from manymodels.jobs import ForecastResult, TrainResult, forecast, retrain, train
from manymodels.templates import TrainContext

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "ForecastResult",
    "JobError",
    "ManyModelsError",
    "RegistryError",
    "ResumeError",
    "TemplateError",
    "TrainContext",
    "TrainResult",
    "config_from_dict",
    "forecast",
    "load_config",
    "retrain",
    "train",
]
