"""The jobs users run: train, retrain and forecast."""

from manymodels.jobs.forecast import forecast
from manymodels.jobs.results import ForecastResult, TrainResult
from manymodels.jobs.train import retrain, train

__all__ = ["ForecastResult", "TrainResult", "forecast", "retrain", "train"]
