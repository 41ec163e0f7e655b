"""Lag, calendar and exogenous features for regressors, built with NumPy.

Thousands of small series make per-call overhead matter more than per-row cost, so features are
built from plain arrays rather than with pandas ``shift``/``rolling``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["calendar_features", "is_sub_weekly", "lag_matrix", "next_lag_row", "numeric_columns"]

_YEAR_DAYS = 365.2425


def calendar_features(
    times: pd.Series | pd.DatetimeIndex, fourier_terms: int, weekdays: bool
) -> np.ndarray:
    """Yearly Fourier terms, plus day-of-week indicators when ``weekdays`` (daily or finer data).

    Returns:
        An array of shape ``(len(times), n_features)``, with zero columns when there is nothing
        to add.
    """
    index = pd.DatetimeIndex(times)
    columns: list[np.ndarray] = []
    if fourier_terms:
        day = index.dayofyear.to_numpy(dtype=float) + index.hour.to_numpy(dtype=float) / 24.0
        angle = 2.0 * np.pi * day / _YEAR_DAYS
        for k in range(1, fourier_terms + 1):
            columns.append(np.sin(k * angle))
            columns.append(np.cos(k * angle))
    if weekdays:
        weekday = index.dayofweek.to_numpy()
        columns.extend((weekday == day).astype(float) for day in range(6))
    if not columns:
        return np.empty((len(index), 0))
    return np.column_stack(columns)


def numeric_columns(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """``frame[columns]`` as a float array of shape ``(len(frame), len(columns))``.

    Column by column: selecting a list of columns builds a new DataFrame, which costs more than
    the fit of a small linear model.
    """
    if not columns:
        return np.empty((len(frame), 0))
    return np.column_stack([frame[column].to_numpy(dtype=float) for column in columns])


def is_sub_weekly(freq: str) -> bool:
    """Whether periods of ``freq`` are shorter than a week (so weekdays matter)."""
    from pandas.tseries.frequencies import to_offset

    try:
        return pd.Timedelta(to_offset(freq)) < pd.Timedelta(days=7)
    except ValueError:
        return to_offset(freq).rule_code.split("-")[0] in {"B", "C", "bh"}


def lag_matrix(values: np.ndarray, lags: list[int]) -> np.ndarray:
    """Rows ``max(lags)`` onwards of the lagged target: column j holds ``values[t - lags[j]]``."""
    start = max(lags)
    return np.column_stack([values[start - lag : len(values) - lag] for lag in lags])


def next_lag_row(recent: list[float], lags: list[int]) -> np.ndarray:
    """The lag features of the period that follows ``recent`` (newest value last)."""
    return np.array([recent[-lag] for lag in lags], dtype=float)
