"""One forecast request answered: the entity's served version, its loaded model, its forecast.

The response is a JSON-ready object::

    {
      "keys": {"store": "1", "brand": "dominicks"},
      "model": {"name": "oj.store=1.brand=dominicks", "version": 3},
      "cached": true,                                   # the model was already loaded
      "forecast": [
        {"week": "2022-05-08T00:00:00", "prediction": 8258.2,
         "lo-80": 7226.9, "hi-80": 9289.5, "lo-95": 6681.8, "hi-95": 9834.7},
        ...
      ]
    }
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pandas.tseries.frequencies import to_offset

from manymodels.config import Config
from manymodels.entity_model import EntityModel
from manymodels.errors import EntityError
from manymodels.serving.cache import ModelCache
from manymodels.serving.catalog import Catalog, ServedModel
from manymodels.serving.requests import BadRequest, ForecastRequest
from manymodels.timeseries import future_frame

__all__ = ["Forecaster"]


class Forecaster:
    """Answers forecast requests from the catalog's versions and the cache's models.

    Args:
        config: the served config (its entity and time columns, ``data.future_exog``,
            ``forecast.alias`` and ``forecast.levels``).
        catalog: which version serves each entity.
        cache: the loaded models.
    """

    def __init__(self, config: Config, catalog: Catalog, cache: ModelCache) -> None:
        self.config = config
        self.catalog = catalog
        self.cache = cache

    def forecast(self, request: ForecastRequest) -> dict[str, Any]:
        """The response to one request (see the module docstring).

        Raises:
            BadRequest: 404 for an entity that no model serves under the alias; 400 for future
                rows that do not fit the model; 422 when the model cannot forecast them.
        """
        served = self._served(request.keys)
        model, cached = self.cache.get(served.location)
        future = self._future(model, request)
        levels = self.config.forecast.levels if request.levels is None else request.levels
        try:
            forecast = model.forecast(future=future, levels=levels)
        except EntityError as exc:
            raise BadRequest(f"the model could not forecast these inputs: {exc}", 422) from None
        return {
            "keys": dict(served.keys),
            "model": {"name": served.name, "version": served.version},
            "cached": cached,
            "forecast": _records(forecast, model.context.time_col),
        }

    def _served(self, keys: tuple[str, ...]) -> ServedModel:
        served = self.catalog.lookup(keys)
        if served is None:
            named = dict(zip(self.config.data.entity_cols, keys, strict=True))
            raise BadRequest(
                f"no model serves the entity {named} under the alias "
                f"'{self.config.forecast.alias}' ({len(self.catalog)} entities are served; "
                "GET /entities lists them)",
                404,
            )
        return served

    def _future(self, model: EntityModel, request: ForecastRequest) -> pd.DataFrame:
        """The periods to forecast, with the request's future covariates where it gave them."""
        ctx = model.context
        exog = list(ctx.exog_cols)
        known = request.future
        horizon = request.horizon or (len(known) if known is not None else ctx.horizon)
        if known is None:
            known = pd.DataFrame(
                {
                    ctx.time_col: pd.to_datetime([]),
                    **{col: pd.Series([], dtype=float) for col in exog},
                }
            )
        future = future_frame(model.history, known, ctx.time_col, exog, ctx.freq, horizon)
        _check_periods(known, future, ctx.time_col, ctx.freq)
        if self.config.data.future_exog != "carry_forward":
            _check_known(known, future, ctx.time_col, exog)
        return future


def _check_known(known: pd.DataFrame, future: pd.DataFrame, time_col: str, exog: list[str]) -> None:
    """Refuse a forecast whose periods lack covariate values that the request did not give
    (as a forecast job does, unless ``data.future_exog`` is ``carry_forward``)."""
    aligned = known.set_index(time_col).reindex(future[time_col])
    lacking = [col for col in exog if aligned[col].isna().any()]
    if lacking:
        periods = int(aligned[lacking].isna().any(axis=1).sum())
        first, last = future[time_col].iloc[0], future[time_col].iloc[-1]
        raise BadRequest(
            f"the model needs future values of {', '.join(map(repr, lacking))}; {periods} of the "
            f"{len(future)} periods to forecast ({_iso(first)} to {_iso(last)}) lack them. Hint: "
            "give them as 'future' rows, one per period (or serve with data.future_exog: "
            "carry_forward)"
        )


def _check_periods(known: pd.DataFrame, future: pd.DataFrame, time_col: str, freq: str) -> None:
    """Refuse future rows that are not periods of the model's grid from the first period to
    forecast on: they would be silently ignored. Rows after the last period (a longer plan than
    the horizon) are fine."""
    first, last = future[time_col].iloc[0], future[time_col].iloc[-1]
    times = known[time_col]
    offset = to_offset(freq)
    off_grid = (times < first) | ~times.map(offset.is_on_offset).astype(bool)
    outside = off_grid | (~times.isin(future[time_col]) & (times <= last))
    if outside.any():
        raise BadRequest(
            f"'future' has rows at {_iso(times[outside].iloc[0])}, which is not one of the "
            f"periods to forecast ({len(future)} from {_iso(first)} to {_iso(last)}, "
            f"frequency {freq}). Hint: start at the period after the model's last one, one row "
            "per period"
        )


def _records(forecast: pd.DataFrame, time_col: str) -> list[dict[str, Any]]:
    frame = forecast.copy()
    frame[time_col] = [_iso(value) for value in frame[time_col]]
    return frame.to_dict("records")


def _iso(value: Any) -> str:
    return pd.Timestamp(value).isoformat()
