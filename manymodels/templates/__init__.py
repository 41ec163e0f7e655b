"""The training-template contract, and loading built-in or user templates.

A template is a Python module (a built-in one, or a user's ``.py`` file) that defines::

    def train(history: pd.DataFrame, context: TrainContext) -> object:
        '''Fit one entity. ``history`` is time-sorted, on a regular grid, gaps filled,
        with columns ``context.time_col``, ``context.target_col`` and ``context.exog_cols``.
        Return any picklable fitted model.'''

    def predict(model, history: pd.DataFrame, future: pd.DataFrame,
                context: TrainContext) -> Sequence[float]:
        '''Forecast the rows of ``future`` (``time_col`` plus ``exog_cols``), which follow the
        last row of ``history`` directly. Return one number per row of ``future``.'''

and optionally::

    def min_history(context: TrainContext) -> int:   # fewest rows ``train`` can fit
    class PARAMS(pydantic.BaseModel): ...              # validates and defaults ``model.params``
    def update(model, history, context) -> object:    # fit again on other data, keeping the
                                                       # specification that train() chose

``update`` matters for templates that choose a specification (ETS components, ARIMA orders):
the backtest fits ``train`` at the first window's cutoff and ``update`` at the later ones and
on all the data, so that the scores recorded for a model belong to the specification it
registers. Without it, ``train`` runs each time.

Templates know nothing of Dask or MLflow: they are called once per entity inside an error guard,
and whatever they raise becomes that entity's recorded failure.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import inspect
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ValidationError

from manymodels.errors import TemplateError

__all__ = [
    "BUILTIN_TEMPLATES",
    "Template",
    "TemplateSource",
    "TrainContext",
    "load_template",
    "resolve_template",
    "starter_template_text",
]

BUILTIN_TEMPLATES = (
    "sklearn_lags", "ets", "seasonal_naive", "naive", "auto_ets", "auto_arima", "theta",
)  # fmt: skip


@dataclass(frozen=True)
class TrainContext:
    """What a template knows about the entity it trains.

    Attributes:
        keys: the entity's key columns and values, e.g. ``{"store": "12", "brand": "tropicana"}``.
        params: ``model.params`` from the config (validated by the template's ``PARAMS``).
        time_col: name of the timestamp column.
        target_col: name of the column to forecast.
        exog_cols: names of the exogenous columns, known for future periods too.
        freq: the pandas frequency of the series, e.g. ``"W-SUN"``.
        horizon: periods to forecast.
        season_length: periods per season (52 for weekly data).
    """

    keys: Mapping[str, str]
    params: Mapping[str, Any]
    time_col: str
    target_col: str
    exog_cols: tuple[str, ...]
    freq: str
    horizon: int
    season_length: int


@dataclass(frozen=True)
class TemplateSource:
    """A template as shipped to workers: a built-in module name, or a user file's text."""

    name: str
    module: str | None = None
    text: str | None = None
    path: str | None = None

    @property
    def digest(self) -> str:
        """A short hash that changes whenever the template's code changes."""
        payload = self.text if self.text is not None else self.module or ""
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Template:
    """A loaded template: its functions and where it came from."""

    source: TemplateSource
    train: Callable[[pd.DataFrame, TrainContext], Any]
    predict: Callable[..., Any]
    module: types.ModuleType = field(repr=False)
    params_model: type[BaseModel] | None = None
    min_history_fn: Callable[[TrainContext], int] | None = None
    update_fn: Callable[[Any, pd.DataFrame, TrainContext], Any] | None = None

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def is_user_file(self) -> bool:
        return self.source.text is not None

    def min_history(self, context: TrainContext) -> int:
        """Fewest observed rows ``train`` can fit (1 when the template does not say)."""
        return int(self.min_history_fn(context)) if self.min_history_fn else 1

    def refit(self, model: Any, history: pd.DataFrame, context: TrainContext) -> Any:
        """Fit again on ``history`` with the specification ``model`` was given by ``train``
        (the template's ``update``), or train afresh where the template has no ``update``."""
        if self.update_fn is not None:
            return self.update_fn(model, history, context)
        return self.train(history, context)

    def validate_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``model.params`` against the template's ``PARAMS`` model, filling defaults.

        Raises:
            TemplateError: a parameter is unknown or has an invalid value.
        """
        if self.params_model is None:
            return dict(params)
        try:
            return self.params_model.model_validate(dict(params)).model_dump()
        except ValidationError as exc:
            raise TemplateError(_describe_params_error(exc, self)) from None


def resolve_template(spec: str) -> TemplateSource:
    """Find the template that ``model.template`` names, reading a user file's text.

    Raises:
        TemplateError: the name is neither a built-in nor an existing ``.py`` file.
    """
    if spec in BUILTIN_TEMPLATES:
        return TemplateSource(name=spec, module=f"manymodels.templates.{spec}")
    path = Path(spec)
    if path.suffix == ".py" or path.is_file():
        if not path.is_file():
            raise TemplateError(
                f"model.template: template file {spec} not found. Hint: check the path, or write "
                "a starter with 'manymodels new-template FILE'."
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(
                f"model.template: cannot read template file {spec} ({exc}). Hint: a template is "
                "a UTF-8 Python file; write a starter with 'manymodels new-template FILE'."
            ) from None
        return TemplateSource(name=path.stem, text=text, path=str(path))
    close = difflib.get_close_matches(spec, BUILTIN_TEMPLATES, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise TemplateError(
        f"model.template: {spec!r} is not a built-in template or a .py file. Hint: {hint}"
        f"built-ins are {', '.join(BUILTIN_TEMPLATES)}."
    )


def load_template(source: TemplateSource | str) -> Template:
    """Import a template and check that it honours the contract (cached per process).

    Raises:
        TemplateError: the file has a syntax error, fails to import, or lacks ``train``
            or ``predict`` with the documented arguments.
    """
    if isinstance(source, str):
        source = resolve_template(source)
    return _load_cached(source)


def starter_template_text() -> str:
    """The text of the starter template that ``manymodels new-template`` writes."""
    return (Path(__file__).parent / "starter.py").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=16)
def _load_cached(source: TemplateSource) -> Template:
    module = _import_builtin(source) if source.module else _import_user_file(source)
    label = source.path or source.name
    train = _required_function(module, "train", 2, label)
    predict = _required_function(module, "predict", 4, label)
    params_model = getattr(module, "PARAMS", None)
    if params_model is not None and not (
        isinstance(params_model, type) and issubclass(params_model, BaseModel)
    ):
        raise TemplateError(f"{label}: PARAMS must be a pydantic BaseModel subclass.")
    min_history = getattr(module, "min_history", None)
    update = getattr(module, "update", None)
    if update is not None:
        update = _required_function(module, "update", 3, label)
    return Template(source, train, predict, module, params_model, min_history, update)


def _import_builtin(source: TemplateSource) -> types.ModuleType:
    assert source.module is not None
    return importlib.import_module(source.module)


def _import_user_file(source: TemplateSource) -> types.ModuleType:
    assert source.text is not None
    label = source.path or source.name
    module_name = f"manymodels_user_template_{source.name}_{source.digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    try:
        code = compile(source.text, label, "exec")
    except SyntaxError as exc:
        raise TemplateError(
            f"{label}:{exc.lineno}: syntax error in template: {exc.msg}. Hint: fix the file, "
            "then run 'python -m py_compile' on it."
        ) from None
    module = types.ModuleType(module_name)
    module.__file__ = label
    # Registered before running so that pickling can find the module by name; removed on failure.
    sys.modules[module_name] = module
    try:
        exec(code, module.__dict__)
    except Exception as exc:
        del sys.modules[module_name]
        raise TemplateError(
            f"{label}: importing the template raised {type(exc).__name__}: {exc}"
        ) from exc
    _pickle_by_value(module)
    return module


def _pickle_by_value(module: types.ModuleType) -> None:
    # A user's file is not importable where the model is loaded later, so its functions and
    # classes must travel inside the pickled model.
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)


def _required_function(
    module: types.ModuleType, name: str, arity: int, label: str
) -> Callable[..., Any]:
    function = getattr(module, name, None)
    if not callable(function):
        raise TemplateError(
            f"{label}: template has no function '{name}'. Hint: a template defines "
            "train(history, context) and predict(model, history, future, context); "
            "see 'manymodels new-template'."
        )
    try:
        inspect.signature(function).bind(*range(arity))
    except TypeError:
        raise TemplateError(
            f"{label}: '{name}' must accept {arity} positional arguments "
            f"({_ARGUMENTS[arity]})."
        ) from None
    return function


_ARGUMENTS = {2: "history, context", 3: "model, history, context",
              4: "model, history, future, context"}  # fmt: skip


def _describe_params_error(exc: ValidationError, template: Template) -> str:
    error = exc.errors(include_url=False)[0]
    key = ".".join(str(part) for part in error["loc"])
    assert template.params_model is not None
    valid = sorted(template.params_model.model_fields)
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][0]), valid, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return (
            f"model.params.{key}: unknown parameter of template '{template.name}'. Hint: {hint}"
            f"valid parameters: {', '.join(valid)}."
        )
    message = error["msg"].removeprefix("Value error, ")
    return (
        f"model.params.{key}: invalid value {error.get('input')!r} for template "
        f"'{template.name}': {message}."
    )
