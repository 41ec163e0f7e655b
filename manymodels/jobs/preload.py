"""What each worker imports while the cluster starts, rather than inside its first task."""

from __future__ import annotations

from manymodels.config import Config
from manymodels.engine import MLFLOW_MODULES
from manymodels.templates import BUILTIN_TEMPLATES, resolve_template

__all__ = ["worker_modules"]


def worker_modules(config: Config) -> tuple[str, ...]:
    """The modules each worker imports while the cluster starts, not inside its first task:
    the configured built-in template's (scikit-learn, statsmodels; a forecast's models were most
    likely trained with it), and MLflow's when the job talks to a tracking server, whose
    artifact store may be remote. With a local artifact store, workers write and read model
    folders and job bundles without MLflow. A user's template travels inside the task."""
    spec = config.model.template
    builtin = resolve_template(spec).module if spec in BUILTIN_TEMPLATES else None
    modules = [builtin] if builtin else []
    if config.tracking.uri:
        modules.extend(MLFLOW_MODULES)
    return tuple(modules)
