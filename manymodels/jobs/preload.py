"""What each worker imports while the cluster starts, rather than inside its first task."""

from __future__ import annotations

from manymodels.candidates import plan_models
from manymodels.config import Config
from manymodels.engine import MLFLOW_MODULES
from manymodels.errors import ManyModelsError

__all__ = ["worker_modules"]


def worker_modules(config: Config) -> tuple[str, ...]:
    """The modules each worker imports while the cluster starts, not inside its first task:
    the configured built-in templates' (scikit-learn, statsforecast; a forecast's models were
    most likely trained with them), and MLflow's when the job talks to a tracking server, whose
    artifact store may be remote. With a local artifact store, workers write and read model
    folders and job bundles without MLflow. A user's template travels inside the task."""
    try:
        modules = plan_models(config.model).builtin_modules
    except ManyModelsError:  # reported by validation, with the config's name
        modules = []
    if config.tracking.uri:
        modules.extend(MLFLOW_MODULES)
    return tuple(modules)
