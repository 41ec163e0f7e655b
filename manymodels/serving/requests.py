"""The body of ``POST /forecast``, checked before any model is touched.

A request is one JSON object::

    {
      "keys": {"store": 1, "brand": "dominicks"},       # every entity key column, required
      "horizon": 4,                                       # periods to forecast, optional
      "levels": [80, 95],                                 # interval levels in percent, optional
      "future": [                                         # known future covariates, optional
        {"week": "2022-05-08", "price": 2.1, "deal": 0},
        ...
      ]
    }

``horizon`` defaults to the number of ``future`` rows, else to the config's ``horizon``;
``levels`` to ``forecast.levels``. ``future`` rows hold the time column and exogenous columns
of the periods to forecast; periods they leave out carry the last known values forward only
when ``data.future_exog`` is ``carry_forward``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from manymodels.config import MAX_HORIZON
from manymodels.errors import ManyModelsError

__all__ = ["FIELDS", "BadRequest", "ForecastRequest", "parse_forecast_request"]

FIELDS = ("keys", "horizon", "levels", "future")


class BadRequest(ManyModelsError, ValueError):
    """A request the server refuses, with the HTTP status to answer (400 unless told)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ForecastRequest:
    """One checked forecast request.

    Attributes:
        keys: the entity's key values as strings, in the order of the entity columns.
        horizon: periods to forecast, or None for the default.
        levels: interval levels in percent, or None for ``forecast.levels``.
        future: rows of the time column and exogenous columns, or None.
    """

    keys: tuple[str, ...]
    horizon: int | None
    levels: tuple[float, ...] | None
    future: pd.DataFrame | None


def parse_forecast_request(
    body: bytes, entity_cols: Sequence[str], time_col: str, exog_cols: Sequence[str]
) -> ForecastRequest:
    """Check a request body and turn it into a :class:`ForecastRequest`.

    Raises:
        BadRequest: the body is not a JSON object, has an unknown field, or a field has the
            wrong type or value; the message names the field, the value and what was expected.
    """
    payload = _json_object(body)
    unknown = [name for name in payload if name not in FIELDS]
    if unknown:
        raise BadRequest(f"unknown field '{unknown[0]}'{_nearest(unknown[0], FIELDS)}; a "
                         f"request has the fields {list(FIELDS)}")  # fmt: skip
    keys = _keys(payload.get("keys"), entity_cols)
    horizon = _horizon(payload.get("horizon"))
    levels = _levels(payload.get("levels"))
    future = _future(payload.get("future"), time_col, exog_cols)
    return ForecastRequest(keys, horizon, levels, future)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not JSON ({exc}). Hint: send an object such as "
                         '{"keys": {...}, "horizon": 4}') from None  # fmt: skip
    if not isinstance(payload, dict):
        raise BadRequest(f"the body must be a JSON object; got {type(payload).__name__}")
    return payload


def _keys(value: Any, entity_cols: Sequence[str]) -> tuple[str, ...]:
    expected = f"an object with the entity key columns {list(entity_cols)}"
    if not isinstance(value, dict):
        raise BadRequest(f"The 'keys' field must be {expected}. Got {_shown(value)} instead.")
    missing = [col for col in entity_cols if col not in value]
    extra = [col for col in value if col not in entity_cols]
    if missing or extra:
        wrong = f"missing {missing}" if missing else f"unknown {extra}"
        raise BadRequest(f"The 'keys' field must be {expected}; {wrong}.")
    for col in entity_cols:
        if isinstance(value[col], bool) or not isinstance(value[col], str | int):
            raise BadRequest(f"The key '{col}' must be a string or an integer. "
                             f"Got {_shown(value[col])} instead.")  # fmt: skip
    return tuple(str(value[col]) for col in entity_cols)


def _horizon(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HORIZON:
        raise BadRequest(f"The 'horizon' field must be an integer in the range "
                         f"[1, {MAX_HORIZON}]. Got {_shown(value)} instead.")  # fmt: skip
    return value


def _levels(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    numbers = isinstance(value, list) and all(
        isinstance(level, int | float) and not isinstance(level, bool) for level in value
    )
    if not numbers or not all(0 < level < 100 for level in value):
        raise BadRequest("The 'levels' field must be a list of percentages strictly between 0 "
                         f"and 100, e.g. [80, 95]. Got {_shown(value)} instead.")  # fmt: skip
    return tuple(sorted({float(level) for level in value}))


def _future(value: Any, time_col: str, exog_cols: Sequence[str]) -> pd.DataFrame | None:
    if value is None:
        return None
    columns = [time_col, *exog_cols]
    if not isinstance(value, list) or not value or not all(isinstance(row, dict) for row in value):
        raise BadRequest(f"The 'future' field must be a non-empty list of objects with the "
                         f"columns {columns}. Got {_shown(value)} instead.")  # fmt: skip
    unknown = sorted({col for row in value for col in row if col not in columns})
    if unknown:
        raise BadRequest(f"'future' rows have the unknown column '{unknown[0]}'"
                         f"{_nearest(unknown[0], columns)}; they hold {columns}")  # fmt: skip
    if any(time_col not in row for row in value):
        raise BadRequest(f"every 'future' row needs the time column '{time_col}'")
    # Every column, a missing one as nulls: the model decides whether it may carry values.
    frame = pd.DataFrame(value, columns=columns)
    try:
        frame[time_col] = pd.to_datetime(frame[time_col])
    except (ValueError, TypeError) as exc:
        raise BadRequest(
            f"'future' has a '{time_col}' that is not a date or time ({exc})"
        ) from None
    for col in frame.columns.drop(time_col):
        numeric = pd.to_numeric(frame[col], errors="coerce")
        if numeric.isna().any() and not frame[col].isna().all():
            raise BadRequest(f"'future' column '{col}' must hold numbers; "
                             f"got {_shown(frame[col].tolist())}")  # fmt: skip
        frame[col] = numeric
    if frame[time_col].duplicated().any():
        raise BadRequest(f"'future' has the same '{time_col}' twice")
    return frame.sort_values(time_col).reset_index(drop=True)


def _nearest(name: str, choices: Sequence[str]) -> str:
    match = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
