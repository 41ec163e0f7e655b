"""The jobs users run: train, retrain and forecast."""

from manymodels.jobs.forecasting import forecast
from manymodels.jobs.results import ForecastResult, TrainResult
from manymodels.jobs.training import retrain, train

__all__ = ["ForecastResult", "TrainResult", "forecast", "retrain", "train"]
