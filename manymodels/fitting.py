"""Fitting one entity: backtest the candidates, choose one, refit it, learn its intervals.

:func:`fit_entity` regularises one entity's rows, backtests every candidate template on the
same rolling-origin windows (seasonal naive always beside them, as the baseline), chooses the
candidate with the best mean backtest metric and refits it on all the data (see
:mod:`manymodels.refitting`), and learns conformal intervals from its backtest errors. A job
that weighs candidates by a prior runs the backtests first (:func:`backtest_entity`) and the
rest later, on the same backtests.
An entity too short for every candidate gets the fallback template (naive by default), tagged
as such. Pure: no Dask, no MLflow; it raises for a bad entity and the caller records it.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from manymodels.backtesting import (
    Backtest,
    Candidate,
    Windows,
    backtest_table,
    mean_metrics,
    plan_windows,
    run_backtest,
    score_windows,
    window_errors,
)
from manymodels.calibration import forward_ratios
from manymodels.entity_model import EntityModel
from manymodels.errors import EntityError
from manymodels.floors import NonNegative
from manymodels.intervals import Calibration, coverage, fit_scores
from manymodels.priors import Prior, relative_scores
from manymodels.refitting import Refit, choose_and_refit, with_params
from manymodels.selection import choose, selection_metric
from manymodels.templates import Template, TrainContext, load_template
from manymodels.timeseries import Series, regularize, season_length_for

__all__ = [
    "Backtested", "Candidate", "EntityFit", "FitSpec", "backtest_entity", "fit_entity", "score_model",
]  # fmt: skip

BASELINE = "seasonal_naive"
# The fewest periods before a backtest window: one to forecast from, one more for a scale.
_MIN_BEFORE_WINDOW = 2


@dataclass(frozen=True)
class FitSpec:
    """Everything :func:`fit_entity` needs besides the data, built once per job.

    ``candidates`` holds one entry for a single template, several for automatic selection;
    ``holdout`` is the length of each backtest window and ``step`` the periods between two
    cutoffs (``holdout`` when None). ``fallback`` names the template an entity too short for
    every candidate gets (None: such an entity fails). ``prior`` weighs the candidates by what
    the whole job's backtests say of them (see :mod:`manymodels.priors`), and ``calibration``
    widens the intervals by what its most recent backtest window says of them (see
    :mod:`manymodels.calibration`).
    """

    candidates: tuple[Candidate, ...]
    time_col: str
    target_col: str
    exog_cols: tuple[str, ...]
    freq: str | None
    fill_missing: str
    horizon: int
    holdout: int
    refit: bool
    season_length: int | None
    windows: int = 1
    step: int | None = None
    metric: str = "mase"
    intermittent_metric: str | None = None
    levels: tuple[float, ...] = ()
    fallback: str | None = "naive"
    keep_predictions: bool = True
    combine: int = 1
    non_negative: NonNegative = False
    prior: Prior | None = None
    calibration: Calibration = ()

    @classmethod
    def for_template(cls, template: Template, params: Mapping[str, Any], **fields: Any) -> FitSpec:
        """The spec of one template alone (its name is the candidate's)."""
        return cls(candidates=(Candidate(template.name, template, params),), **fields)


@dataclass
class EntityFit:
    """The outcome of fitting one entity.

    Attributes:
        model: the chosen candidate, refit on all the data (unless ``evaluation.refit`` is off).
        metrics: the chosen candidate's mean backtest metrics.
        winner: the chosen candidate's name.
        scores: every backtested candidate's mean metrics, by candidate name.
        baseline: seasonal naive's mean metrics on the same windows.
        windows: how many backtest windows the series afforded.
        fallback: whether the entity was too short for every candidate and got the fallback.
        coverage: each interval level's empirical coverage over the backtest windows.
        backtest: the out-of-sample predictions of every candidate (and the baseline) in every
            window: cutoff, time, actual (``nan`` where it was filled in), prediction,
            candidate, window.
        errors: candidates that raised, with their error message.
        warnings: library warnings raised while fitting (silenced, counted).
        selected_by: the metric that chose the winner (``intermittent_metric`` for an
            intermittent series).
    """

    model: EntityModel
    metrics: dict[str, float]
    observations: int
    filled: int
    holdout_start: pd.Timestamp | None
    trained_until: pd.Timestamp
    winner: str = ""
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    windows: int = 0
    fallback: bool = False
    coverage: dict[float, float] = field(default_factory=dict)
    backtest: pd.DataFrame | None = None
    errors: dict[str, str] = field(default_factory=dict)
    warnings: int = 0
    selected_by: str = "mase"


@dataclass
class Backtested:
    """An entity's backtests before one candidate is chosen: what :func:`backtest_entity`
    hands to :func:`fit_entity` when a job chooses with a prior (see :mod:`manymodels.priors`).

    Attributes:
        results: every candidate's backtest that did not raise, by name.
        errors: the candidates that raised, with their error message.
        selected_by: the metric that decides for this entity.
        warnings: library warnings raised while backtesting (silenced, counted).
    """

    series: Series
    context: TrainContext
    windows: Windows
    candidates: list[Candidate]
    fallback: bool
    results: dict[str, Backtest]
    errors: dict[str, str]
    baseline: Backtest | None
    selected_by: str
    warnings: int = 0

    def relative_scores(self) -> dict[str, float]:
        """Each candidate's deciding metric relative to the entity's best (see
        :func:`~manymodels.priors.relative_scores`)."""
        return relative_scores({name: result.metrics.get(self.selected_by, math.nan)
                                for name, result in self.results.items()})  # fmt: skip

    def forward_ratios(self) -> np.ndarray | None:
        """The entity's part in its panel's interval calibration (see
        :func:`~manymodels.calibration.forward_ratios`): the candidate that its backtest
        windows but the last would choose, checked on the last one."""
        if len(self.windows) < 2:
            return None
        earlier = {name: replace(result, metrics=mean_metrics(result.per_window[:-1]))
                   for name, result in self.results.items()}  # fmt: skip
        chosen = self.results[choose(earlier, self.selected_by).candidate]
        values = self.series.history[self.context.target_col].to_numpy(dtype=float)
        return forward_ratios(window_errors(chosen, values, self.series.observed, self.windows))


def backtest_entity(frame: pd.DataFrame, keys: Mapping[str, str], spec: FitSpec) -> Backtested:
    """Backtest every candidate that suits the entity, without choosing one.

    Raises:
        EntityError, Exception: as :func:`fit_entity`.
    """
    with _quiet() as caught:
        backtested = _backtest(frame, keys, spec)
    backtested.warnings = len(caught)
    return backtested


def fit_entity(
    frame: pd.DataFrame, keys: Mapping[str, str], spec: FitSpec,
    backtested: Backtested | None = None,
) -> EntityFit:  # fmt: skip
    """Backtest the candidates, choose one, refit it, and learn its intervals.

    Args:
        frame: the entity's raw rows (any order, possibly with gaps and trailing future rows).
        keys: the entity's key values.
        spec: the job's fitting specification.
        backtested: the entity's backtests, already run on ``frame`` (see
            :func:`backtest_entity`); run here when None.

    Raises:
        EntityError: the data cannot be modelled, or a template broke its contract.
        Exception: whatever the template raised (with one candidate; with several, only when
            every candidate failed).
    """
    with _quiet() as caught:
        done = backtested if backtested is not None else _backtest(frame, keys, spec)
        fit = _choose(done, spec)
    fit.warnings = len(caught) + (backtested.warnings if backtested is not None else 0)
    return fit


@contextlib.contextmanager
def _quiet() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        # Library chatter (statsmodels' divide-by-zero, scikit-learn's LinAlgWarning) is
        # counted per entity instead of flooding the terminal.
        warnings.simplefilter("always")
        with np.errstate(all="ignore"):
            yield caught


def _backtest(frame: pd.DataFrame, keys: Mapping[str, str], spec: FitSpec) -> Backtested:
    series = regularize(
        frame, spec.time_col, spec.target_col, list(spec.exog_cols), spec.freq, spec.fill_missing
    )
    history = series.history
    context = _context(keys, spec, series.freq)
    suited = _suited(spec.candidates, history, context)
    windows, candidates, fallback = _windows_and_candidates(len(history), suited, spec, context)
    results, errors = _backtest_all(candidates, series, context, windows, spec)
    baseline = results.get(BASELINE) or _baseline(series, context, windows, spec)
    values = history[spec.target_col].to_numpy(dtype=float)
    selected_by = selection_metric(values[series.observed], spec.metric, spec.intermittent_metric)
    return Backtested(series, context, windows, candidates, fallback, results, errors, baseline,
                      selected_by)  # fmt: skip


def _choose(backtested: Backtested, spec: FitSpec) -> EntityFit:
    # Copies: a task that Dask runs again gets the same backtests, untouched by the first run.
    results, errors = dict(backtested.results), dict(backtested.errors)
    series, windows = backtested.series, backtested.windows
    history = series.history
    values = history[spec.target_col].to_numpy(dtype=float)
    winner, model = choose_and_refit(
        backtested.candidates, results, errors,
        Refit(history, values, series.observed, backtested.context, windows, spec,
               backtested.selected_by),
    )  # fmt: skip
    errors_matrix = window_errors(winner, values, series.observed, windows)
    model.intervals = fit_scores(errors_matrix, spec.calibration) if len(windows) else None
    baseline = backtested.baseline
    return EntityFit(
        model=model,
        metrics=winner.metrics,
        observations=len(history),
        filled=series.filled,
        holdout_start=_first_window_start(history, windows, spec.time_col),
        trained_until=model.trained_until,
        winner=winner.candidate,
        scores={name: result.metrics for name, result in results.items()},
        baseline=baseline.metrics if baseline is not None else {},
        windows=len(windows),
        fallback=backtested.fallback,
        coverage=coverage(errors_matrix, spec.levels, spec.calibration) if len(windows) else {},
        backtest=_table(results, baseline, series, windows, spec) if spec.keep_predictions else None,
        errors=errors,
        selected_by=backtested.selected_by,
    )


def _suited(
    candidates: tuple[Candidate, ...], history: pd.DataFrame, context: TrainContext
) -> tuple[Candidate, ...]:
    """The candidates whose templates suit the series (all of them for a single template)."""
    if len(candidates) == 1:
        return candidates
    suited = tuple(c for c in candidates if c.template.suits(history, with_params(context, c)))
    return suited or candidates


def _windows_and_candidates(
    length: int, candidates: tuple[Candidate, ...], spec: FitSpec, context: TrainContext
) -> tuple[Windows, list[Candidate], bool]:
    """The windows every usable candidate can be backtested on, the most windows first; the
    fallback candidate (on every window the series affords) when none is usable."""
    step = spec.step or spec.holdout
    widest = plan_windows(length, spec.holdout, spec.windows, step, _MIN_BEFORE_WINDOW)
    needs = {c.name: c.template.min_history(with_params(context, c)) for c in candidates}
    for drop in range(len(widest)):
        windows = Windows(widest.cutoffs[drop:], widest.length)
        usable = [c for c in candidates if needs[c.name] <= windows.cutoffs[0]]
        if usable:
            return windows, usable, False
    if len(widest) == 0 and length >= max(needs.values()) and len(candidates) == 1:
        # Too short for a backtest window, long enough for the template: fit without scores.
        return widest, list(candidates), False
    if spec.fallback is None:
        needed = min(needs.values())
        raise EntityError(
            f"series too short: {length} observed periods, needs at least "
            f"{spec.holdout + needed} ({spec.holdout} holdout + {needed} for template "
            f"'{spec.candidates[0].name}'); lower evaluation.holdout or the template's lags, "
            "set model.fallback, or leave this entity out"
        )
    return widest, [_fallback_candidate(spec.fallback)], True


def _backtest_all(
    candidates: list[Candidate], series: Series, context: TrainContext, windows: Windows,
    spec: FitSpec,
) -> tuple[dict[str, Backtest], dict[str, str]]:  # fmt: skip
    """Every candidate's backtest; a candidate that raises drops out (alone, when there are
    others) and its error is kept."""
    results: dict[str, Backtest] = {}
    errors: dict[str, str] = {}
    first_error: BaseException | None = None
    columns = [spec.time_col, *spec.exog_cols]
    for candidate in candidates:
        try:
            results[candidate.name] = run_backtest(
                candidate, series.history, series.observed, with_params(context, candidate),
                windows, columns, spec.non_negative,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - one candidate's failure is recorded
            if len(candidates) == 1:
                raise
            errors[candidate.name] = f"{type(exc).__name__}: {exc}"
            first_error = first_error or exc
    if not results:
        assert first_error is not None
        raise EntityError(f"every candidate failed; the first: {errors[candidates[0].name]}")
    return results, errors


def _baseline(
    series: Series, context: TrainContext, windows: Windows, spec: FitSpec
) -> Backtest | None:
    if not len(windows):
        return None
    candidate = Candidate(BASELINE, load_template(BASELINE), {"season_length": None})
    try:
        return run_backtest(candidate, series.history, series.observed,
                            with_params(context, candidate), windows, [spec.time_col],
                            spec.non_negative)  # fmt: skip
    except Exception:  # noqa: BLE001 - the baseline is a reference, never a reason to fail
        return None


def _table(
    results: dict[str, Backtest], baseline: Backtest | None, series: Series, windows: Windows,
    spec: FitSpec,
) -> pd.DataFrame | None:  # fmt: skip
    backtests = dict(results)
    if baseline is not None:
        backtests.setdefault(BASELINE, baseline)
    return backtest_table(backtests, series.history, series.observed, windows, spec.time_col,
                          spec.target_col)  # fmt: skip


def _first_window_start(
    history: pd.DataFrame, windows: Windows, time_col: str
) -> pd.Timestamp | None:
    return pd.Timestamp(history[time_col].iloc[windows.cutoffs[0]]) if len(windows) else None


def _fallback_candidate(name: str) -> Candidate:
    template = load_template(name)
    return Candidate(f"{name}", template, template.validate_params({}))


def _context(keys: Mapping[str, str], spec: FitSpec, freq: str) -> TrainContext:
    return TrainContext(
        keys=dict(keys),
        params=spec.candidates[0].params,
        time_col=spec.time_col,
        target_col=spec.target_col,
        exog_cols=spec.exog_cols,
        freq=freq,
        horizon=spec.horizon,
        season_length=spec.season_length or season_length_for(freq),
    )


def score_model(
    model: EntityModel, frame: pd.DataFrame, spec: FitSpec
) -> tuple[dict[str, float], pd.Timestamp]:
    """Score an already fitted model on the backtest windows of ``frame`` that a challenger is
    scored on, observed values only. Used to compare a champion with a challenger (retrain).

    At each window's cutoff the model's own specification (template, code, parameters and
    what its ``train`` chose) is fitted again on the history before the cutoff, exactly as the
    challenger's candidates are, so that neither is scored on data it was fitted on: a model
    scored on windows inside its own training data looks better than it is, and a better
    challenger would rarely win. Only models saved before refits existed, which cannot be
    fitted again, forecast each window with the parameters they have.

    Returns:
        The mean metrics and the first timestamp of the first window.

    Raises:
        EntityError: the series is too short for one window.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as in fit_entity: library chatter stays quiet
        with np.errstate(all="ignore"):
            return _score_model(model, frame, spec)


def _score_model(
    model: EntityModel, frame: pd.DataFrame, spec: FitSpec
) -> tuple[dict[str, float], pd.Timestamp]:
    series = regularize(
        frame, spec.time_col, spec.target_col, list(spec.exog_cols), spec.freq, spec.fill_missing
    )
    history, observed = series.history, series.observed
    windows = plan_windows(len(history), spec.holdout, spec.windows, spec.step or spec.holdout,
                           _MIN_BEFORE_WINDOW)  # fmt: skip
    if not len(windows):
        raise EntityError(f"only {len(history)} observed periods; cannot hold out {spec.holdout}")
    rows = []
    for cutoff in windows.cutoffs:
        before = history.iloc[:cutoff]
        test_part = history.iloc[cutoff : cutoff + windows.length]
        future = pd.DataFrame({col: test_part[col].to_numpy()
                               for col in [spec.time_col, *spec.exog_cols]})  # fmt: skip
        fitted = model.refit(before) if model.can_refit else model
        forecast = fitted.forecast(history=before, future=future, levels=[])
        rows.append(forecast["prediction"].to_numpy())
    values = history[spec.target_col].to_numpy(dtype=float)
    per_window = score_windows(np.vstack(rows), values, observed, windows,
                               model.context.season_length)  # fmt: skip
    start = pd.Timestamp(history[spec.time_col].iloc[windows.cutoffs[0]])
    return mean_metrics(per_window), start
