"""What runs on a Dask worker: train or forecast one batch of partitions.

A task receives partition keys and file names, never data: it reads its own partitions,
handles each entity inside its own error guard, writes models or forecasts, and returns small
:class:`~manymodels.outcomes.EntityResult` records. Nothing here raises for one bad entity, and
nothing here touches the tracking store or the registry (that is the driver's job).
"""

from manymodels.tasks.forecasting import ForecastTask, forecast_batch
from manymodels.tasks.training import (
    PanelEvidence,
    TrainTask,
    backtest_batch,
    backtest_evidence,
    params_digest,
    train_batch,
)  # fmt: skip

__all__ = [
    "ForecastTask", "PanelEvidence", "TrainTask", "backtest_batch", "backtest_evidence",
    "forecast_batch", "params_digest", "train_batch",
]  # fmt: skip
