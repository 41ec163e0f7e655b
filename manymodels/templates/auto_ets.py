"""Built-in template ``auto_ets``: exponential smoothing (ETS) with its form chosen per entity.

Error, trend (none, additive, damped) and season (none, additive, multiplicative) are chosen by
the corrected Akaike information criterion among the forms the series supports, with
statsforecast's ``AutoETS``. Once chosen, the form is kept: :func:`update` fits the same form
again on more data, so the backtest of a form and the registered model agree. The one exception:
a multiplicative form chosen on positive values cannot take a zero that arrives later, so it is
fitted additively from then on (the backtest windows after the zero are scored that way too).

Parameters (``model.params``):
    model: an ETS form code, ``ZZZ`` (choose everything) by default; e.g. ``AAN`` for Holt's
        linear trend, ``ZZN`` to rule out a season.
    damped: force (true) or forbid (false) a damped trend; chosen when null (default).
    season_length: periods per season; derived from the data's frequency when null.

Seasonal forms need two full seasons of history; statsforecast does not fit seasons longer than
24 periods (weekly data with yearly seasons is fitted without a season). Exogenous columns are
ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from manymodels.templates import TrainContext
from manymodels.templates._stats import (
    StatsModel,
    fit_stats,
    forecast_stats,
    target_values,
    usable_season,
)  # fmt: skip


class PARAMS(BaseModel):
    """Parameters of the ``auto_ets`` template."""

    model_config = ConfigDict(extra="forbid")

    model: str = "ZZZ"
    damped: bool | None = None
    season_length: int | None = Field(default=None, ge=1)

    @field_validator("model")
    @classmethod
    def _form(cls, value: str) -> str:
        value = value.upper()
        if len(value) != 3 or value[0] not in "ZAM" or value[1] not in "ZNA" or value[2] not in "ZNAM":
            raise ValueError(
                "an ETS form is three letters: error Z/A/M, trend Z/N/A, season Z/N/A/M, e.g. ZZZ"
            )
        return value


def min_history(context: TrainContext) -> int:
    """A few points to estimate a level and a trend."""
    return 5


def train(history: pd.DataFrame, context: TrainContext) -> StatsModel:
    """Choose the ETS form by AICc and fit it."""
    params = context.params
    season = _season(context, len(history))
    form = params["model"] if season > 1 else params["model"][:2] + "N"
    return _fit(history, context, {"model": form, "damped": params["damped"],
                                   "season_length": season})  # fmt: skip


def update(model: StatsModel, history: pd.DataFrame, context: TrainContext) -> StatsModel:
    """Fit the chosen form again on ``history``: the parameters change, the form does not,
    except that a multiplicative error or season, which cannot be fitted to a zero or negative
    value, becomes additive where ``history`` has one (``MAM`` becomes ``AAA``)."""
    spec = model.spec
    if "M" in spec["model"] and (target_values(history, context) <= 0).any():
        spec = {**spec, "model": spec["model"].replace("M", "A")}
    return _fit(history, context, spec)


def predict(
    model: StatsModel, history: pd.DataFrame, future: pd.DataFrame, context: TrainContext
) -> np.ndarray:
    """Forecast ``future`` after ``history``."""
    return forecast_stats(model, history, future, context)


def _season(context: TrainContext, length: int) -> int:
    season = usable_season(context, length)
    return season if season <= 24 else 1


def _fit(history: pd.DataFrame, context: TrainContext, spec: dict[str, Any]) -> StatsModel:
    from statsforecast.models import AutoETS

    fitted = fit_stats(lambda: AutoETS(**spec), history, context, spec)
    components = str(fitted.model.model_["components"])
    # The chosen form, frozen for update(): "AAND" is error A, trend A, no season, damped.
    fitted.spec = {"model": components[:3], "damped": components[3:4] == "D",
                   "season_length": spec["season_length"]}  # fmt: skip
    return fitted


