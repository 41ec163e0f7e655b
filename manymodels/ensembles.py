"""The mean of several fitted candidates, as one model (``model.combine``).

A combination of a few good forecasts is often better than the best of them; whether it is,
for one entity, the backtest says: the combination's backtest predictions are the mean of its
members' on the same windows, scored like any candidate's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from manymodels.floors import NonNegative, floor_for, floored
from manymodels.templates import TrainContext

__all__ = ["Ensemble", "Member", "predict", "update"]


@dataclass
class Member:
    """One fitted candidate of a combination."""

    name: str
    predict_fn: Callable[..., Any]
    model: Any
    context: TrainContext
    train_fn: Callable[..., Any] | None = None
    update_fn: Callable[..., Any] | None = None


@dataclass
class Ensemble:
    """Fitted candidates whose forecasts are averaged, each floored first as ``non_negative``
    says (as their backtests were: see :mod:`manymodels.floors`)."""

    members: list[Member]
    non_negative: NonNegative = False

    @property
    def names(self) -> list[str]:
        return [member.name for member in self.members]


def predict(
    model: Ensemble, history: pd.DataFrame, future: pd.DataFrame, context: TrainContext
) -> np.ndarray:
    """The mean of the members' forecasts of ``future``."""
    floor = floor_for(history, context.target_col, model.non_negative)
    forecasts = [
        floored(np.asarray(member.predict_fn(member.model, history, future, member.context),
                           dtype=float), floor)
        for member in model.members
    ]  # fmt: skip
    return np.mean(forecasts, axis=0)


def update(model: Ensemble, history: pd.DataFrame, context: TrainContext) -> Ensemble:
    """Every member fitted again on ``history`` with its own specification.

    Raises:
        ValueError: a member was saved without its template's train function.
    """
    members = []
    for member in model.members:
        if member.update_fn is not None:
            fitted = member.update_fn(member.model, history, member.context)
        elif member.train_fn is not None:
            fitted = member.train_fn(history, member.context)
        else:
            raise ValueError(f"member {member.name!r} was saved without its train function")
        members.append(replace(member, model=fitted))
    return Ensemble(members, model.non_negative)
