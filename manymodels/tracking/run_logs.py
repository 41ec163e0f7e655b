"""What a job logs on its MLflow run: parameters, metrics, tables, text and its config."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from manymodels.secrets import scrub

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from manymodels.config import Config

__all__ = ["log_config", "log_json", "log_metrics", "log_params", "log_table", "log_text"]

_PARAM_BATCH = 100  # MLflow's limit of parameters per log_batch call
_PARAM_LENGTH = 6000  # MLflow's limit of a parameter value's length


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log flat parameters in batches (values cut to MLflow's limit)."""
    from mlflow.entities import Param

    items = [Param(key, str(value)[:_PARAM_LENGTH]) for key, value in params.items()]
    for start in range(0, len(items), _PARAM_BATCH):
        client.log_batch(run_id, params=items[start : start + _PARAM_BATCH])


def log_metrics(client: MlflowClient, run_id: str, metrics: Mapping[str, float]) -> None:
    """Log summary metrics in one batch, skipping undefined values."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = [
        Metric(key, float(value), now, 0)
        for key, value in metrics.items()
        if value is not None and math.isfinite(float(value))
    ]
    if items:
        client.log_batch(run_id, metrics=items)


def log_table(client: MlflowClient, run_id: str, frame: pd.DataFrame, name: str) -> None:
    """Store a DataFrame as ``name`` (Parquet, or CSV when the name ends in .csv)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, name)
        if name.endswith(".csv"):
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        client.log_artifact(run_id, path)


def log_text(client: MlflowClient, run_id: str, text: str, name: str) -> None:
    """Store a text artifact."""
    client.log_text(run_id, text, name)


def log_json(client: MlflowClient, run_id: str, data: Any, name: str) -> None:
    """Store a JSON artifact."""
    buffer = io.StringIO()
    json.dump(data, buffer, indent=2, default=str)
    client.log_text(run_id, buffer.getvalue(), name)


def log_config(client: MlflowClient, run_id: str, config: Config, extra: dict[str, Any]) -> None:
    """The config as parameters and as ``config.yaml``, with credentials masked."""
    payload = _redacted(config.model_dump(mode="json", exclude={"source"}))
    log_params(client, run_id, {**_flatten(payload), **extra})
    log_text(client, run_id, yaml.safe_dump(payload, sort_keys=False), "config.yaml")


def _flatten(payload: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("params", "storage_options", "tags"):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, dict | list) else value
    return flat


def _redacted(payload: dict[str, Any]) -> dict[str, Any]:
    tracking_section = dict(payload.get("tracking") or {})
    for key in ("uri", "registry_uri"):
        if tracking_section.get(key):
            tracking_section[key] = scrub(tracking_section[key])
    data = dict(payload.get("data") or {})
    if data.get("storage_options"):
        data["storage_options"] = {key: "***" for key in data["storage_options"]}
    return {**payload, "tracking": tracking_section, "data": data}


def log_file(client: MlflowClient, run_id: str, path: str) -> None:
    """Store a local file as an artifact of the run."""
    client.log_artifact(run_id, path)
