"""Which templates compete for each entity: the model plan of a job.

``model.template: auto`` (the default) backtests every candidate of ``model.candidates`` on the
same windows and keeps the best per entity; a template name or file runs that template alone.
The plan is validated on the driver (every template found, every parameter checked) and shipped
to workers as template sources, which load them there.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from manymodels.backtesting import Candidate
from manymodels.config import CandidateConfig, ModelConfig
from manymodels.errors import TemplateError
from manymodels.templates import TemplateSource, load_template, resolve_template

__all__ = ["AUTO", "DEFAULT_CANDIDATES", "ModelPlan", "load_candidates", "plan_models"]

AUTO = "auto"

# Strong and fast on the development panels (see benchmarks/quality.py): the two naive
# baselines, automatic ETS, Theta and ARIMA, Croston (SBA) for intermittent demand, and a ridge
# regression on lags of log1p(target) where the target is never negative, differenced where a
# KPSS test finds a trend, with the exogenous columns (the only candidate besides ARIMA that uses
# covariates). Its lags are one full season where the series has ten rows per lag, else 1-3 and
# the seasonal lag. Measured alone on the final windows: on orange juice, raw values with light
# regularisation scored a MASE of 3.4, the log scale with 52 lags 0.57, this one 0.48; the
# differencing took it from 2.5 to 0.9 on us_employment and from 3.9 to 2.4 on prison.
DEFAULT_CANDIDATES: tuple[dict[str, Any], ...] = (
    {"template": "naive"},
    {"template": "seasonal_naive"},
    {"template": "auto_ets"},
    {"template": "theta"},
    {"template": "auto_arima"},
    {"template": "croston"},
    {"name": "lags", "template": "sklearn_lags",
     "params": {"estimator": "ridge", "estimator_params": {"alpha": 10.0}, "lags": "auto",
                "fourier_terms": 0, "transform": "auto"}},
)  # fmt: skip


@dataclass(frozen=True)
class CandidateSource:
    """A candidate as shipped to workers: its name, template source and checked parameters."""

    name: str
    source: TemplateSource
    params: Mapping[str, Any]


@dataclass(frozen=True)
class ModelPlan:
    """The templates a job fits: one, or the candidates of automatic selection.

    Attributes:
        name: ``auto``, or the single template's name.
        candidates: what competes (one entry for a single template).
        fallback: the template of entities too short for every candidate (None: they fail).
    """

    name: str
    candidates: tuple[CandidateSource, ...]
    fallback: str | None = None

    @property
    def digest(self) -> str:
        """A short hash that changes whenever a candidate's code or parameters change."""
        if len(self.candidates) == 1 and self.name != AUTO:
            return self.candidates[0].source.digest
        payload = json.dumps(
            [[c.name, c.source.digest, c.params] for c in self.candidates] + [self.fallback],
            sort_keys=True, default=str,
        )  # fmt: skip
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]

    @property
    def params(self) -> dict[str, Any]:
        """The single template's parameters, or every candidate's by name."""
        if len(self.candidates) == 1 and self.name != AUTO:
            return dict(self.candidates[0].params)
        return {c.name: dict(c.params) for c in self.candidates}

    @property
    def builtin_modules(self) -> list[str]:
        """The modules of the built-in templates the plan uses (for workers to preload)."""
        return [c.source.module for c in self.candidates if c.source.module]


def plan_models(model: ModelConfig) -> ModelPlan:
    """Resolve and check the templates that ``model`` names, before anything runs.

    Raises:
        TemplateError: a template is not found or does not load, or its parameters are
            invalid; the message names the candidate.
    """
    fallback = _checked_fallback(model.fallback)
    if model.template != AUTO:
        if model.candidates:
            raise TemplateError(
                "model.candidates: candidates compete only with model.template: auto; remove "
                f"them or set template to auto (it is {model.template!r})."
            )
        single = _candidate(CandidateConfig(template=model.template).label, model.template,
                            model.params)  # fmt: skip
        return ModelPlan(single.name, (single,), fallback)
    if model.params:
        raise TemplateError(
            "model.params: with model.template: auto, parameters belong to each candidate "
            "(model.candidates[].params)."
        )
    entries = model.candidates or [CandidateConfig(**entry) for entry in DEFAULT_CANDIDATES]
    candidates = tuple(
        _candidate(entry.label, entry.template, entry.params, f"model.candidates[{index}]")
        for index, entry in enumerate(entries)
    )
    return ModelPlan(AUTO, candidates, fallback)


def load_candidates(plan: ModelPlan) -> tuple[Candidate, ...]:
    """The plan's candidates with their templates loaded (on a worker)."""
    return tuple(
        Candidate(entry.name, load_template(entry.source), entry.params)
        for entry in plan.candidates
    )


def _candidate(
    name: str, spec: str, params: Mapping[str, Any], where: str = "model.template"
) -> CandidateSource:
    try:
        source = resolve_template(spec)
        checked = load_template(source).validate_params(params)
    except TemplateError as exc:
        message = str(exc)
        if where != "model.template":
            message = f"{where} ({name}): {message}"
        raise TemplateError(message) from None
    return CandidateSource(name, source, checked)


def _checked_fallback(name: str | None) -> str | None:
    if name is None:
        return None
    source = resolve_template(name)
    if source.module is None:
        raise TemplateError(
            f"model.fallback: {name!r} must be a built-in template such as naive or "
            "seasonal_naive."
        )
    return name
