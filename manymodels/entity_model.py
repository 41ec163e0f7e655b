"""One entity's fitted model, as it is saved and served.

An :class:`EntityModel` bundles what a forecast needs: the template's ``predict`` function, the
fitted model it returned, the context it was trained with and the history it ended on, and what
fitting its specification again needs (the template's ``train`` and ``update``), so that a
champion can be backtested as fairly as a challenger. It is what the MLflow pyfunc wrapper
unpickles; it imports neither Dask nor MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from manymodels.errors import EntityError
from manymodels.floors import NonNegative, floor_for, floored
from manymodels.intervals import ConformalScores, interval_columns
from manymodels.templates import TrainContext
from manymodels.timeseries import future_frame

__all__ = ["EntityModel", "checked_predictions", "PREDICTION_COL"]

PREDICTION_COL = "prediction"


@dataclass
class EntityModel:
    """A fitted per-entity model that forecasts from its own history or a newer one.

    Attributes:
        template: name of the template that trained it.
        predict_fn: the template's ``predict`` function.
        model: what the template's ``train`` returned.
        context: the :class:`~manymodels.templates.TrainContext` it was trained with.
        history: the rows it was fitted on (time, target, exogenous columns).
        intervals: conformal scores learnt from its backtest errors (none for models saved
            before intervals existed, or without a backtest).
        levels: the interval levels (percent) its forecasts carry by default.
        train_fn: the template's ``train`` (none for models saved before refits existed).
        update_fn: the template's ``update``, which fits the same specification again (none
            where the template chooses no specification: ``train`` is then the refit).
        non_negative: ``data.non_negative`` as of training: whether forecasts and interval
            bounds are floored at zero (see :mod:`manymodels.floors`; never for models saved
            before it existed).
    """

    template: str
    predict_fn: Callable[..., Any]
    model: Any
    context: TrainContext
    history: pd.DataFrame
    intervals: ConformalScores | None = None
    levels: tuple[float, ...] = ()
    train_fn: Callable[..., Any] | None = None
    update_fn: Callable[..., Any] | None = None
    non_negative: NonNegative = False

    @property
    def can_refit(self) -> bool:
        """Whether :meth:`refit` can fit this model's specification again."""
        return self.update_fn is not None or self.train_fn is not None

    def refit(self, history: pd.DataFrame) -> EntityModel:
        """This model's specification (template, code, parameters, and what ``train`` chose:
        ETS components, ARIMA orders, lags) fitted again on ``history``.

        Raises:
            EntityError: the model was saved before refits existed.
        """
        history = history.reset_index(drop=True)
        if self.update_fn is not None:
            fitted = self.update_fn(self.model, history, self.context)
        elif self.train_fn is not None:
            fitted = self.train_fn(history, self.context)
        else:
            raise EntityError("this model was saved without its template's train function")
        return replace(self, model=fitted, history=history, intervals=None)

    @property
    def trained_until(self) -> pd.Timestamp:
        """The last timestamp the model has seen."""
        return pd.Timestamp(self.history[self.context.time_col].iloc[-1])

    def forecast(
        self,
        history: pd.DataFrame | None = None,
        future: pd.DataFrame | None = None,
        horizon: int | None = None,
        levels: Sequence[float] | None = None,
    ) -> pd.DataFrame:
        """Forecast the periods after ``history`` (the training history by default).

        Args:
            history: newer observed rows to forecast from, same columns as the training data.
            future: the rows to forecast (time column plus exogenous columns); by default the
                next ``horizon`` periods, with exogenous values carried forward.
            horizon: periods to forecast when ``future`` is not given; the trained horizon
                by default.
            levels: interval levels in percent, e.g. ``[80, 95]``; those set at training
                (``forecast.levels``) by default, ``[]`` for none.

        Returns:
            A frame with the time column and ``prediction``, and ``lo-80``/``hi-80``-style
            interval columns where the model has intervals.

        Raises:
            EntityError: the template returned the wrong number of values or non-finite ones.
        """
        ctx = self.context
        history = self.history if history is None else history
        if future is None:
            empty = history.iloc[:0]
            future = future_frame(
                history, empty, ctx.time_col, list(ctx.exog_cols), ctx.freq, horizon or ctx.horizon
            )
        values = checked_predictions(self.predict_fn(self.model, history, future, ctx), len(future))
        floor = floor_for(history, ctx.target_col, self.non_negative)
        values = floored(values, floor)
        columns = {ctx.time_col: future[ctx.time_col].to_numpy(), PREDICTION_COL: values}
        levels = self.levels if levels is None else levels
        if self.intervals is not None and levels:
            bounds = interval_columns(values, self.intervals, levels)
            columns.update({name: floored(bound, floor) for name, bound in bounds.items()})
        return pd.DataFrame(columns)


def checked_predictions(values: Any, expected: int) -> np.ndarray:
    """Validate what a template's ``predict`` returned.

    Raises:
        EntityError: ``None``, the wrong length, non-numeric or non-finite values.
    """
    if values is None:
        raise EntityError("predict() returned None; it must return one number per future row")
    try:
        array = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise EntityError(
            f"predict() returned {type(values).__name__} that is not a sequence of numbers"
        ) from None
    if len(array) != expected:
        raise EntityError(
            f"predict() returned {len(array)} values for {expected} future rows; return one per row"
        )
    if not np.isfinite(array).all():
        raise EntityError(
            f"predict() returned {int((~np.isfinite(array)).sum())} NaN or infinite values"
        )
    return array
