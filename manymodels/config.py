"""Typed, validated job configuration.

A YAML file is loaded once into frozen pydantic objects. Every problem (unknown key, wrong
type, impossible value, YAML syntax) becomes a :class:`~manymodels.errors.ConfigError` whose
message is one line naming the file, the key, the value seen and the fix.

This module imports nothing else from the package but its errors.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from manymodels.errors import ConfigError

__all__ = [
    "CandidateConfig",
    "ComputeConfig",
    "Config",
    "DataConfig",
    "EvaluationConfig",
    "FailureConfig",
    "ForecastConfig",
    "ModelConfig",
    "RetrainConfig",
    "ServeConfig",
    "TrackingConfig",
    "load_config",
    "config_from_dict",
]


# Beyond it a horizon is a mistake (ten thousand days is 27 years) that grows every worker's
# memory with the rows it builds for each entity.
MAX_HORIZON = 10_000
# A worker process with the task modules imported takes about 300 MiB before any work; Dask
# restarts one that goes past 95% of its limit.
MIN_WORKER_MEMORY = 512 * 2**20
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}  # fmt: skip
# Tags that manymodels writes itself: lineage and resume depend on them.
_OWN_TAG_PREFIXES = ("manymodels.", "mlflow.")

# Dask needs the port; the protocol defaults to tcp.
_SCHEDULER_ADDRESS = re.compile(r"^(?:[a-z]+://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$")
# Dask reads a bare number up to 1 as a share of the machine's memory and any other as bytes.
_MEMORY_LIMIT = re.compile(
    r"^(?:auto|0|0?\.\d+|1(?:\.0*)?|\d+|\d+(?:\.\d+)?\s*(?i:[kmgtp]i?b?|b))$"
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # Pydantic reads true/false as 1/0 for a number; in a config that is always a mistake.
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and field.annotation in _NUMBERS:
            raise ValueError("expected a number, got a boolean")
        return value


_NUMBERS = (int, float, int | None, float | None)


class DataConfig(_Section):
    """Where the data is and what its columns mean."""

    path: str = Field(
        description="root of the hive-partitioned Parquet dataset (path or fsspec URL)"
    )
    partition_by: list[str] = Field(
        min_length=1, description="the hive partition columns, outermost first, e.g. [store, brand]"
    )
    id_cols: list[str] | None = Field(
        default=None,
        description="columns that identify one entity; defaults to partition_by and must include it",
    )
    time_col: str = Field(description="the timestamp column")
    target_col: str = Field(description="the numeric column to forecast")
    exog_cols: list[str] = Field(
        default_factory=list,
        description="numeric columns known in advance (price, promotions, ...)",
    )
    freq: str | None = Field(
        default=None, description="a pandas frequency such as W-SUN, D or MS; inferred when absent"
    )
    fill_missing: Literal["interpolate", "zero", "ffill", "none"] = Field(
        default="interpolate", description="how gaps in the time grid are filled"
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for a remote path (credentials, endpoint)"
    )
    future_exog: Literal["error", "carry_forward"] = Field(
        default="error",
        description="a forecast period without its exogenous values: an error, or the last "
        "observed values carried forward",
    )
    non_negative: Literal["auto", True, False] = Field(
        default="auto",
        description="floor forecasts and interval bounds at zero: auto (for entities whose "
        "observed target is never negative), true (all), false (none)",
    )

    @field_validator("freq")
    @classmethod
    def _known_frequency(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from pandas.tseries.frequencies import to_offset

        try:
            to_offset(value)
        except ValueError:
            raise ValueError("not a pandas frequency; use e.g. D, W-SUN, MS or h") from None
        return value

    @field_validator("id_cols")
    @classmethod
    def _ids_include_partitions(
        cls, value: list[str] | None, info: ValidationInfo
    ) -> list[str] | None:
        # partition_by is declared first, so it is in info.data unless it was invalid itself;
        # checked here rather than on the model so that the error names data.id_cols.
        partition_by = info.data.get("partition_by") or []
        if value is not None:
            missing = [col for col in partition_by if col not in value]
            if missing:
                raise ValueError(f"id_cols must include every partition_by column; add {missing}")
        return value

    @field_validator("time_col", "target_col", "exog_cols")
    @classmethod
    def _not_a_key_column(cls, value: str | list[str], info: ValidationInfo) -> str | list[str]:
        # Key values come from folder names, one per entity: they cannot be a series.
        keys = {*(info.data.get("partition_by") or []), *(info.data.get("id_cols") or [])}
        clash = [col for col in ([value] if isinstance(value, str) else value) if col in keys]
        if clash:
            raise ValueError(
                f"{clash[0]!r} is an entity key column (data.partition_by/id_cols); name a "
                "column inside the Parquet files"
            )
        return value

    @property
    def entity_cols(self) -> list[str]:
        """The columns that identify one entity."""
        return list(self.id_cols or self.partition_by)


class CandidateConfig(_Section):
    """One candidate of automatic selection: a template, its parameters and a name."""

    template: str = Field(description="a built-in template or a path to a .py file")
    params: dict[str, Any] = Field(default_factory=dict, description="passed to the template")
    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="how results name it (letters, digits, _ and -); the template's by default",
    )

    @property
    def label(self) -> str:
        """The candidate's name in results and tags."""
        return self.name or Path(self.template).stem


class ModelConfig(_Section):
    """Which template runs for every entity (or which candidates compete), and its parameters."""

    template: str = Field(
        default="auto",
        description="auto (choose per entity among model.candidates), a built-in template "
        "(naive, seasonal_naive, auto_ets, theta, auto_arima, sklearn_lags, ets) or a .py file",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="passed to the template")
    candidates: list[CandidateConfig] | None = Field(
        default=None,
        min_length=1,
        description="the templates that compete per entity when template is auto; a strong, "
        "fast default set when absent",
    )
    combine: int = Field(
        default=2,
        ge=1,
        le=10,
        description="with auto: also try the mean of the best k candidates per entity, and keep "
        "it where its backtest is better; 1 keeps the single best",
    )
    prior: float = Field(
        default=0.5,
        ge=0,
        le=10,
        description="with auto: how much what the whole job's backtests say of each candidate "
        "weighs in each entity's choice (0: each entity decides alone); needs 20 entities",
    )
    fallback: str | None = Field(
        default="naive",
        description="the built-in template of an entity too short for every candidate; null "
        "makes such an entity fail",
    )

    @field_validator("candidates")
    @classmethod
    def _unique_names(cls, value: list[CandidateConfig] | None) -> list[CandidateConfig] | None:
        labels = [candidate.label for candidate in value or []]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(
                f"candidate name {repeated[0]!r} is used twice; give each candidate a name"
            )
        return value


class EvaluationConfig(_Section):
    """How each entity's model is scored before it is registered."""

    holdout: int | None = Field(
        default=None,
        ge=1,
        description="periods held out at the end for scoring; defaults to horizon",
    )
    windows: int = Field(
        default=3, ge=1, le=100, description="rolling-origin backtest windows per entity"
    )
    step: int | None = Field(
        default=None, ge=1, description="periods between two backtest cutoffs; the holdout by default"
    )
    refit: bool = Field(default=True, description="refit on all data after the backtest")
    calibrate: bool = Field(
        default=True,
        description="with auto: widen every entity's prediction intervals by how far "
        "intervals learnt without the panel's last backtest window fell short on it; needs 20 "
        "entities with two windows or more, and never narrows",
    )
    metric: Literal["mae", "rmse", "smape", "mase", "wape"] = Field(
        default="mase", description="the metric that chooses among candidates and decides promotion"
    )
    intermittent_metric: Literal["mae", "rmse", "smape", "mase", "wape"] | None = Field(
        default="rmse",
        description="the metric that chooses among candidates for intermittent entities (at "
        "least 30% zeros), where MAE-based metrics reward forecasting zero; null: metric",
    )
    keep_predictions: bool = Field(
        default=True,
        description="log every backtest prediction of every candidate as a table in the job run",
    )
    season_length: int | None = Field(
        default=None, ge=1, description="periods per season; derived from freq when absent"
    )


class ComputeConfig(_Section):
    """Where the work runs: an embedded LocalCluster or an existing Dask scheduler."""

    scheduler: str | None = Field(
        default=None, description="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786"
    )
    n_workers: int | None = Field(
        default=None, ge=1, description="LocalCluster worker processes; defaults to the CPU count"
    )
    threads_per_worker: int = Field(default=1, ge=1, description="threads per LocalCluster worker")
    memory_limit: str = Field(
        default="auto",
        description="memory limit per LocalCluster worker: auto, 0 (none), 4GiB, 0.5 (share)",
    )
    batch_size: int | None = Field(
        default=None, ge=1, description="partitions per Dask task; sized automatically when absent"
    )

    @field_validator("scheduler")
    @classmethod
    def _scheduler_address(cls, value: str | None) -> str | None:
        if value is not None and not _SCHEDULER_ADDRESS.match(value):
            raise ValueError(
                "not a Dask scheduler address; use tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786"
            )
        return value

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _memory_size(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not _MEMORY_LIMIT.match(value.strip()):
            raise ValueError(
                "not a memory size; use auto, 0 (no limit), a size such as 4GiB, or a share such as 0.5"
            )
        return value

    @model_validator(mode="after")
    def _enough_memory_per_worker(self) -> ComputeConfig:
        per_worker = None if self.scheduler else _worker_memory(self)
        if per_worker is not None and per_worker < MIN_WORKER_MEMORY:
            raise PydanticCustomError(
                "nested_value_error",
                "{reason}",
                {"key": "memory_limit", "value": self.memory_limit,
                 "reason": f"that leaves each worker {per_worker / 2**20:.0f} MiB, less than the "
                           f"{MIN_WORKER_MEMORY // 2**20} MiB a worker needs to start; use a "
                           "bigger limit, 0 for none, or fewer workers"},
            )  # fmt: skip
        return self


def _worker_memory(compute: ComputeConfig) -> float | None:
    """Bytes of memory each LocalCluster worker may use, as Dask reads ``memory_limit``;
    None for no limit."""
    text = compute.memory_limit.strip().lower().replace(" ", "")
    if text == "0":
        return None
    if text == "auto" or re.fullmatch(r"0?\.\d+|1(\.0*)?", text):
        import psutil

        total = psutil.virtual_memory().total
        if text != "auto":
            return float(text) * total
        # Dask's rule for auto: the machine's share of each worker's threads.
        return total * min(1.0, compute.threads_per_worker / (os.cpu_count() or 1))
    number, unit = re.fullmatch(r"([\d.]+)([a-z]*?)b?", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS.get(unit, 1)


class TrackingConfig(_Section):
    """MLflow tracking and model registry."""

    uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; defaults to a SQLite store under work_dir",
    )
    registry_uri: str | None = Field(default=None, description="defaults to the tracking URI")
    experiment: str = Field(
        default="manymodels", min_length=1, description="MLflow experiment name"
    )
    model_prefix: str = Field(
        default="mm",
        min_length=1,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="prefix of every registered model name (letters, digits, _ . -)",
    )
    registration: Literal["per_entity", "per_job"] = Field(
        default="per_entity",
        description="one registered model per entity, or one model version per job holding all",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="extra tags on every run and model"
    )

    @field_validator("tags")
    @classmethod
    def _not_our_own_tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith(_OWN_TAG_PREFIXES):
                raise ValueError(
                    f"tag '{key}' would overwrite a tag that manymodels or MLflow writes (names "
                    f"starting {' or '.join(_OWN_TAG_PREFIXES)}); choose another name"
                )
        return value

    bulk_registry: bool = Field(
        default=True,
        description="write registry entries in one transaction per batch when the registry is a "
        "database (false: one MLflow client call per model, e.g. for registry webhooks)",
    )


class FailureConfig(_Section):
    """How much failure a job tolerates, and how hard it tries."""

    max_share: float = Field(
        default=0.05, ge=0.0, le=1.0, description="share of entities that may fail before exit 1"
    )
    max_count: int | None = Field(
        default=None, ge=0, description="number of entities that may fail before exit 1"
    )
    entity_timeout: float | None = Field(
        default=None, gt=0, description="seconds one entity may train before it is failed"
    )
    retries: int = Field(default=1, ge=0, description="retries of a transient per-entity failure")
    retry_backoff: float = Field(default=0.5, ge=0, description="seconds before the first retry")


class ForecastConfig(_Section):
    """Where batch forecasts go and which model version makes them."""

    output: str = Field(default="forecasts", description="directory of the forecast Parquet files")
    alias: str = Field(
        default="champion", min_length=1, description="registry alias to forecast with"
    )
    partition_by: list[str] | None = Field(
        default=None,
        description="hive partition columns of the output, taken from the entity columns; "
        "by default all of them (a folder per entity); [] writes one file per task, fewer and "
        "bigger files for very many entities",
    )
    levels: list[float] = Field(
        default_factory=lambda: [80.0, 95.0],
        description="prediction interval levels in percent, e.g. [80, 95]; [] for none",
    )
    future_path: str | None = Field(
        default=None,
        description="a Parquet dataset keyed like the data with the known future values of "
        "data.exog_cols, instead of rows after the last observed target",
    )

    @field_validator("levels")
    @classmethod
    def _levels_in_range(cls, value: list[float]) -> list[float]:
        outside = [level for level in value if not 0 < level < 100]
        if outside:
            raise ValueError(f"interval levels are percentages strictly between 0 and 100; "
                             f"{outside[0]} is not")  # fmt: skip
        return sorted(set(value))


class RetrainConfig(_Section):
    """When a retrained challenger replaces the champion."""

    min_improvement: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="relative improvement of the metric a challenger needs to become champion",
    )


class ServeConfig(_Section):
    """The forecast server of ``manymodels serve``."""

    host: str = Field(default="127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on")
    cache_size: int = Field(
        default=256, ge=1, description="models kept loaded; the least recently used goes first"
    )
    refresh_seconds: float = Field(
        default=10.0,
        gt=0,
        description="how often the alias's versions are read again from the registry, so that "
        "a promotion is served without a restart",
    )


class Config(_Section):
    """A complete job configuration. Build it with :func:`load_config`.

    Relative paths in the file are resolved against the directory holding the file.
    """

    horizon: int = Field(ge=1, le=MAX_HORIZON, description="periods to forecast")
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    failures: FailureConfig = Field(default_factory=FailureConfig)
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    work_dir: str = Field(
        default=".manymodels", description="holds the embedded MLflow store and job ledgers"
    )
    source: str | None = Field(default=None, description="the file this config was read from")

    @field_validator(
        "model", "evaluation", "compute", "tracking", "failures", "forecast", "retrain", "serve",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        # A section whose keys are all commented out (as in configs/own-data.yaml) loads as null.
        return {} if value is None else value

    @field_validator("forecast")
    @classmethod
    def _output_partitions_are_entity_columns(
        cls, value: ForecastConfig, info: ValidationInfo
    ) -> ForecastConfig:
        data = info.data.get("data")
        if data is not None and value.partition_by is not None:
            unknown = [col for col in value.partition_by if col not in data.entity_cols]
            if unknown:
                # Checked here, where data is known; the error still names the nested key.
                raise PydanticCustomError(
                    "nested_value_error",
                    "{reason}",
                    {"key": "partition_by", "value": value.partition_by,
                     "reason": f"only entity columns {data.entity_cols} can partition the "
                               f"output; {unknown[0]!r} is not one"},
                )  # fmt: skip
        return value

    @field_validator("tracking")
    @classmethod
    def _tags_leave_key_columns_alone(
        cls, value: TrackingConfig, info: ValidationInfo
    ) -> TrackingConfig:
        data = info.data.get("data")
        clash = [key for key in value.tags if data is not None and key in data.entity_cols]
        if clash:
            raise PydanticCustomError(
                "nested_value_error",
                "{reason}",
                {"key": "tags", "value": value.tags,
                 "reason": f"tag '{clash[0]}' would overwrite the entity key that every model "
                           "version is tagged with; choose another name"},
            )  # fmt: skip
        return value

    @field_validator("work_dir")
    @classmethod
    def _work_dir_apart_from_data(cls, value: str, info: ValidationInfo) -> str:
        data = info.data.get("data")
        if data is None or "://" in value or "://" in data.path:
            return value
        work, root = Path(os.path.realpath(value)), Path(os.path.realpath(data.path))
        if work == root or root in work.parents:
            raise ValueError(
                f"it lies inside data.path ({data.path}), where its files would be read as "
                "data; choose a folder outside it"
            )
        return value

    @property
    def output_partitions(self) -> list[str]:
        """The hive partition columns of the forecast output (``forecast.partition_by``)."""
        chosen = self.forecast.partition_by
        return list(self.data.entity_cols if chosen is None else chosen)

    @property
    def holdout(self) -> int:
        """Periods held out for scoring (``evaluation.holdout`` or ``horizon``)."""
        return self.evaluation.holdout or self.horizon

    def label(self) -> str:
        """How errors refer to this config: its file name, or 'config'."""
        return self.source or "config"


_PATH_KEYS = (
    ("data", "path"), ("forecast", "output"), ("forecast", "future_path"), ("work_dir",),
    ("model", "template"),
)  # fmt: skip


def load_config(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Config:
    """Load and validate a YAML configuration file.

    Args:
        path: the YAML file.
        overrides: ``key=value`` strings applied before validation, such as
            ``["horizon=12", "compute.n_workers=2"]``; values are parsed as YAML scalars, and
            relative paths in them are resolved against the working directory.

    Returns:
        The validated, frozen configuration, with relative paths made absolute.

    Raises:
        ConfigError: the file is missing or unreadable, is not valid YAML, or fails validation.

    Example:
        >>> config = load_config("configs/demo.yaml", ["horizon=4"])  # doctest: +SKIP
    """
    file = Path(path)
    label = str(path)
    if not file.is_file():
        raise ConfigError(
            f"{label}: config file not found. Hint: pass an existing YAML file with -c, "
            "or run 'manymodels demo' to write an example."
        )
    raw = _read_yaml(file, label)
    for override in overrides or []:
        _apply_override(raw, override, label)
    return config_from_dict(raw, base_dir=file.resolve().parent, label=label)


def config_from_dict(
    raw: dict[str, Any], base_dir: str | os.PathLike[str] | None = None, label: str = "config"
) -> Config:
    """Validate a configuration given as a dictionary (the Python API's entry point).

    Args:
        raw: the same structure as the YAML file.
        base_dir: relative paths are resolved against it; the working directory by default.
        label: how error messages name the source.

    Raises:
        ConfigError: a key is unknown, a value has the wrong type or is out of range.
    """
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{label}: the top level must be a mapping of keys such as horizon and data, "
            f"got {type(raw).__name__}."
        )
    resolved = _resolve_paths(raw, Path(base_dir or os.getcwd()))
    resolved["source"] = None if label == "config" else label
    try:
        return Config.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, label)) from None


def _read_yaml(file: Path, label: str) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read the config file ({exc}).") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"{where}: YAML syntax error: {problem}. Hint: check indentation, colons and quotes "
            "on that line."
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: YAML error: {exc}") from None
    if raw is None:
        raise ConfigError(f"{label}: the config file is empty. Hint: copy configs/demo.yaml.")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{label}: the top level must be a mapping of keys such as horizon and data, "
            f"got {type(raw).__name__}."
        )
    return raw


def _apply_override(raw: dict[str, Any], override: str, label: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"--set {override!r}: expected KEY=VALUE with a dotted key, e.g. --set horizon=12."
        )
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {override!r}: {part!r} in {label} is not a section.")
        node = child
    if tuple(parts) in _PATH_KEYS and isinstance(value, str):
        # Typed on the command line: a relative path means one under the working directory.
        value = os.path.expanduser(value)
        if _is_relative_local(value, tuple(parts)):
            value = str(Path(value).resolve())
    node[parts[-1]] = value


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    resolved = {
        key: (dict(value) if isinstance(value, dict) else value) for key, value in raw.items()
    }
    # These defaults are relative paths too: they belong beside the file, not in whatever folder
    # the job happens to be started from.
    resolved.setdefault("work_dir", Config.model_fields["work_dir"].default)
    if resolved.get("forecast") is None:
        resolved["forecast"] = {}
    if isinstance(resolved["forecast"], dict):
        resolved["forecast"].setdefault("output", ForecastConfig.model_fields["output"].default)
    for keys in _PATH_KEYS:
        node = _section_at(resolved, keys[:-1])
        if node is None:
            continue
        value = node.get(keys[-1])
        if isinstance(value, str) and value.startswith("~"):
            value = node[keys[-1]] = os.path.expanduser(value)
        if isinstance(value, str) and _is_relative_local(value, keys):
            node[keys[-1]] = str((base_dir / value).resolve())
    _resolve_candidate_paths(resolved, base_dir)
    return resolved


def _resolve_candidate_paths(resolved: dict[str, Any], base_dir: Path) -> None:
    model = resolved.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("candidates"), list):
        return
    model = resolved["model"] = dict(model)
    model["candidates"] = [dict(entry) if isinstance(entry, dict) else entry
                           for entry in model["candidates"]]  # fmt: skip
    for entry in model["candidates"]:
        value = entry.get("template") if isinstance(entry, dict) else None
        if isinstance(value, str) and _is_relative_local(os.path.expanduser(value),
                                                         ("model", "template")):  # fmt: skip
            entry["template"] = str((base_dir / os.path.expanduser(value)).resolve())


def _section_at(raw: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any] | None:
    """The nested mapping at ``keys``, or None where a level is missing or not a mapping."""
    node = raw
    for key in keys:
        child = node.get(key)
        if not isinstance(child, dict):
            return None
        node = child
    return node


def _is_relative_local(value: str, keys: tuple[str, ...]) -> bool:
    if "://" in value or os.path.isabs(value):
        return False
    if keys == ("model", "template"):
        # Built-in template names are plain words; only file names are paths.
        return value.endswith(".py") or "/" in value
    return True


def _describe(exc: ValidationError, label: str) -> str:
    # An unknown key is usually a misspelt known one, which then also shows up as missing:
    # naming the unknown key (with its nearest valid spelling) is the more useful message.
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    message = _describe_one(dict(errors[0]), label)
    if len(errors) > 1:
        message += (
            f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} after this one)"
        )
    return message


def _describe_one(error: dict[str, Any], label: str) -> str:
    loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
    kind = error["type"]
    value = error.get("input")
    if kind == "nested_value_error":  # a section's check about one of its keys
        loc.append(error["ctx"]["key"])
        value = error["ctx"]["value"]
    key = ".".join(loc) or "(top level)"
    if kind == "extra_forbidden":
        return f"{label}: unknown key '{key}'. Hint: {_nearest_key_hint(loc)}"
    if kind == "missing":
        described = _field_description(loc)
        return f"{label}: missing required key '{key}'" + (
            f" ({described}). Hint: add it to the file." if described else ". Hint: add it."
        )
    shown = _shorten(value)
    reason = error["msg"]
    if reason.startswith("Value error, "):
        reason = reason[len("Value error, ") :]
    hint = _field_description(loc)
    return f"{label}: key '{key}' has an invalid value {shown}: {_lower_first(reason)}." + (
        f" Hint: '{loc[-1]}' is {hint}." if hint else ""
    )


def _nearest_key_hint(loc: list[str]) -> str:
    model = _model_at(loc[:-1])
    valid = sorted(model.model_fields) if model else []
    valid = [name for name in valid if name != "source"]
    close = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
    where = f"under '{'.'.join(loc[:-1])}'" if len(loc) > 1 else "at the top level"
    if close:
        return f"did you mean '{close[0]}'? Valid keys {where}: {', '.join(valid)}."
    return f"valid keys {where}: {', '.join(valid)}."


def _model_at(path: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Config
    for part in path:
        field = model.model_fields.get(part) if model else None
        annotation = field.annotation if field else None
        model = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return model


def _field_description(loc: list[str]) -> str | None:
    model = _model_at(loc[:-1])
    field = model.model_fields.get(loc[-1]) if model and loc else None
    return field.description if field else None


def _shorten(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
