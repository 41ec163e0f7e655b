"""``manymodels validate``: every problem of a config in one run, and where a job would write.

A job stops at its first problem, before it writes anything. Validation instead runs each check
on its own (the config's keys, the template and its parameters, the dataset's layout and
columns, the work folder, the forecast output) and gathers every problem it finds, so that one
run of ``validate`` shows everything to fix. It writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from manymodels import config as config_module
from manymodels.candidates import plan_models
from manymodels.config import Config, load_config
from manymodels.data import Partition, discover_partitions
from manymodels.errors import ConfigError, ManyModelsError
from manymodels.outputs import check_output

__all__ = ["Validation", "validate_config"]

T = TypeVar("T")


@dataclass
class Validation:
    """What ``validate`` found.

    Attributes:
        label: the config file as the user named it.
        problems: one sentence per problem found, each naming the key at fault and the fix.
        config: the validated config, or None when its keys are invalid.
        partitions: the dataset's partitions, when they could be listed.
        template: the template's name, when it loads.
    """

    label: str
    problems: list[str] = field(default_factory=list)
    config: Config | None = None
    partitions: list[Partition] = field(default_factory=list)
    template: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def locations(self) -> list[tuple[str, str]]:
        """Where a job of this config reads and writes, for the user to check."""
        config = self.config
        if config is None:
            return []
        work = os.path.abspath(config.work_dir)
        store = config.tracking.uri or f"sqlite:///{os.path.join(work, 'mlflow.db')}"
        places = [("data", config.data.path), ("MLflow store", store)]
        if not config.tracking.uri:
            places.append(("model artifacts", os.path.join(work, "mlartifacts")))
        places += [
            ("job ledgers", os.path.join(work, "jobs")),
            ("forecasts", config.forecast.output),
            ("registered models", f"{config.tracking.model_prefix}.<key>=<value>..."),
        ]
        return places


def validate_config(path: str, overrides: list[str] | None = None) -> Validation:
    """Run every check of a config file and gather the problems.

    Args:
        path: the YAML file.
        overrides: ``key=value`` overrides, as ``--set`` gives them.
    """
    found = Validation(label=str(path))
    try:
        found.config = load_config(path, overrides)
    except ConfigError as exc:
        found.problems.extend(_config_problems(path, overrides, exc))
        return found
    config = found.config
    found.template = _check(found, lambda: _template(config))
    found.partitions = _check(found, lambda: _partitions(config)) or []
    if found.partitions:
        _check(found, lambda: _columns(config, found.partitions))
    _check(found, lambda: _writable(config))
    _check(found, lambda: check_output(config.forecast.output, "forecast.output",
                                       {"data.path": config.data.path}))  # fmt: skip
    found.problems = [_labelled(problem, found.label) for problem in found.problems]
    return found


def _check(found: Validation, check: Callable[[], T]) -> T | None:
    try:
        return check()
    except ManyModelsError as exc:
        found.problems.append(str(exc))
        return None


def _labelled(problem: str, label: str) -> str:
    return problem if problem.startswith(label) else f"{label}: {problem}"


def _config_problems(path: str, overrides: list[str] | None, first: ConfigError) -> list[str]:
    """Every invalid key of the file, where loading it reports only the first."""
    try:
        raw = config_module._read_yaml(Path(path), str(path))
        for override in overrides or []:
            config_module._apply_override(raw, override, str(path))
        resolved = config_module._resolve_paths(raw, Path(path).resolve().parent)
        Config.model_validate({**resolved, "source": str(path)})
    except ValidationError as exc:
        errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
        return [config_module._describe_one(dict(error), str(path)) for error in errors]
    except (ConfigError, OSError):
        pass
    return [str(first)]


def _template(config: Config) -> str:
    plan = plan_models(config.model)
    if plan.name == "auto":
        return f"auto among {', '.join(candidate.name for candidate in plan.candidates)}"
    # A template file is named by its stem, as results and tags name it.
    return f"template {Path(plan.name).stem if plan.name.endswith('.py') else plan.name}"


def _partitions(config: Config) -> list[Partition]:
    data = config.data
    return discover_partitions(data.path, data.partition_by, data.storage_options)


def _columns(config: Config, partitions: list[Partition]) -> None:
    from manymodels.inputs import _check_columns

    data = config.data
    required = {col: "data.id_cols" for col in data.entity_cols}
    required.update({col: "data.exog_cols" for col in data.exog_cols})
    required.update({data.time_col: "data.time_col", data.target_col: "data.target_col"})
    _check_columns(partitions, required, [data.target_col, *data.exog_cols], config)


def _writable(config: Config) -> None:
    from manymodels.inputs import _check_writable

    _check_writable(config.work_dir)
