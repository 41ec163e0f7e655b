"""Turning one entity's raw rows into a clean, regular series.

Every entity passes through :func:`regularize` before a template sees it: timestamps parsed and
sorted, duplicates refused, the series put on its frequency grid, gaps filled, and trailing
rows without a target split off as known future rows (for exogenous values). Problems raise
:class:`~manymodels.errors.EntityError`, which the caller records as that entity's failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from manymodels.errors import EntityError, FutureValuesError

__all__ = [
    "INTERMITTENT_ZEROS",
    "Series",
    "frequency_problem",
    "future_frame",
    "is_intermittent",
    "is_seasonal",
    "regularize",
    "season_length_for",
]

# From this share of zero periods on, a series counts as intermittent.
INTERMITTENT_ZEROS = 0.3

# The one-sided 90% normal quantile of the classic seasonality test (M4's, AutoTheta's).
_SEASONALITY_Z = 1.645

# Periods per yearly (or weekly, daily) cycle, by the frequency's base code.
_SEASONS = {
    "W": 52, "D": 7, "B": 5, "C": 5, "h": 24, "H": 24, "bh": 8, "min": 60, "T": 60,
    "s": 60, "S": 60, "M": 12, "ME": 12, "MS": 12, "SM": 24, "SMS": 24, "BM": 12, "BME": 12,
    "BMS": 12, "Q": 4, "QE": 4, "QS": 4, "BQ": 4, "BQE": 4, "BQS": 4,
    "Y": 1, "YE": 1, "YS": 1, "A": 1, "AS": 1, "BY": 1, "BYS": 1,
}  # fmt: skip
_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Series:
    """One entity's regular series.

    Attributes:
        history: observed rows on the frequency grid (time, target, exogenous columns).
        future: rows after the last observation whose exogenous values are known; may be empty.
        freq: the frequency the grid follows.
        filled: how many target values were filled in (gaps and missing values).
        observed: one flag per ``history`` row: whether its target was observed rather than
            filled in. Only observed values are ever scored.
    """

    history: pd.DataFrame
    future: pd.DataFrame
    freq: str
    filled: int
    observed: np.ndarray


def is_intermittent(values: np.ndarray) -> bool:
    """Whether at least :data:`INTERMITTENT_ZEROS` of ``values`` are zeros (intermittent
    demand, which Croston's method forecasts and MAE-based metrics judge badly)."""
    return bool(len(values) and np.mean(np.asarray(values) == 0) >= INTERMITTENT_ZEROS)


def is_seasonal(values: np.ndarray, season: int) -> bool:
    """Whether ``values`` repeat every ``season`` periods, by the classic autocorrelation test
    (the one Theta and the M4 competition's benchmarks deseasonalise by): the autocorrelation
    at lag ``season`` exceeds its 90% bound under no seasonality. A series shorter than two
    seasons cannot be told apart and counts as seasonal; one with ``season`` below 2, or
    constant, does not."""
    from statsmodels.tsa.stattools import acf

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if season < 2 or not len(values) or np.ptp(values) == 0:
        return False
    if len(values) < 2 * season:
        return True
    correlations = acf(values, nlags=season, fft=False)[1:]
    bound = np.sqrt((1 + 2 * np.sum(correlations[:-1] ** 2)) / len(values))
    return bool(abs(correlations[-1]) > _SEASONALITY_Z * bound)


def season_length_for(freq: str) -> int:
    """Periods per season for a pandas frequency (52 for weekly, 7 for daily, 12 for monthly)."""
    offset = to_offset(freq)
    code, periods = offset.rule_code.split("-")[0], offset.n
    if isinstance(offset, pd.offsets.Tick) and pd.Timedelta(offset) % _DAY == pd.Timedelta(0):
        # A fixed step of whole days ("24h", "168h") has the seasons of daily or weekly data.
        code, periods = "D", pd.Timedelta(offset).days
    if code == "D" and periods % 7 == 0:
        code, periods = "W", periods // 7
    base = _SEASONS.get(code, 1)
    return max(1, base // periods)


def regularize(
    frame: pd.DataFrame,
    time_col: str,
    target_col: str,
    exog_cols: list[str],
    freq: str | None,
    fill_missing: str,
) -> Series:
    """Validate, sort and regularise one entity's rows.

    Raises:
        EntityError: timestamps do not parse, repeat or miss the grid; the target is not
            numeric or never observed; the frequency cannot be inferred.
    """
    frame = frame[[time_col, target_col, *exog_cols]].copy()
    frame[time_col] = _parse_times(frame[time_col], time_col)
    frame[target_col] = _numeric(frame[target_col], target_col)
    for col in exog_cols:
        frame[col] = _numeric(frame[col], col)
    if not frame[time_col].is_monotonic_increasing:
        frame = frame.sort_values(time_col, kind="stable")
    frame = frame.reset_index(drop=True)
    _refuse_duplicates(frame[time_col], time_col)

    observed = frame[target_col].notna().to_numpy()
    if not observed.any():
        raise EntityError(f"column '{target_col}' has no observed values for this entity")
    last = int(np.flatnonzero(observed)[-1])
    history, future = frame.iloc[: last + 1], frame.iloc[last + 1 :]

    freq = freq or _infer_freq(history[time_col], time_col)
    history, observed = _on_grid(history, time_col, target_col, exog_cols, freq, fill_missing)
    return Series(
        history=history,
        future=future.reset_index(drop=True),
        freq=freq,
        filled=int(len(observed) - observed.sum()),
        observed=observed,
    )


def future_frame(
    history: pd.DataFrame,
    known_future: pd.DataFrame,
    time_col: str,
    exog_cols: list[str],
    freq: str,
    horizon: int,
    carry_forward: bool = True,
) -> pd.DataFrame:
    """The ``horizon`` periods after ``history``: known future rows where present, else the
    next grid timestamps with exogenous values carried forward from the last observation.

    Raises:
        FutureValuesError: ``carry_forward`` is off and an exogenous value of a forecast period
            is not known.
    """
    times = _next_periods(history[time_col].iloc[-1], freq, horizon)
    future = pd.DataFrame({time_col: times})
    if not exog_cols:
        return future
    known_times = known_future[time_col].to_numpy() if len(known_future) else None
    lacking, periods = [], np.zeros(horizon, dtype=bool)
    for col in exog_cols:
        carried = history[col].iloc[-1]
        if known_times is not None and np.array_equal(known_times[:horizon], times.to_numpy()):
            # The usual case: the planned rows are exactly the periods to forecast.
            values = known_future[col].to_numpy(dtype=float)[:horizon]
        elif known_times is not None:
            values = known_future.set_index(time_col)[col].reindex(times).to_numpy(dtype=float)
        else:
            values = np.full(horizon, np.nan)
        missing = np.isnan(values)
        if missing.any():
            lacking.append(col)
            periods |= missing
        future[col] = np.where(missing, carried, values)
    if lacking and not carry_forward:
        raise FutureValuesError(lacking, int(periods.sum()), horizon)
    return future


def _next_periods(last: pd.Timestamp, freq: str, horizon: int) -> pd.DatetimeIndex:
    offset = to_offset(freq)
    exact = last.tz is None or isinstance(offset, pd.offsets.Tick)  # calendar days shift at DST
    if exact and _fixed_length(offset) and offset.is_on_offset(last):
        # Arithmetic instead of date_range, which walks a weekly calendar period by period.
        step = (last + offset) - last
        return pd.DatetimeIndex(last + step * np.arange(1, horizon + 1))
    return pd.date_range(last, periods=horizon + 1, freq=freq)[1:]


def _fixed_length(offset: Any) -> bool:
    return isinstance(offset, pd.offsets.Tick | pd.offsets.Day) or (
        isinstance(offset, pd.offsets.Week) and offset.weekday is not None
    )


def _parse_times(values: pd.Series, col: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        try:
            parsed = pd.to_datetime(values, errors="raise")
        except (ValueError, TypeError, OverflowError):
            bad = _first_unparseable(values)
            raise EntityError(
                f"column '{col}' has values that are not timestamps (e.g. {bad!r}); "
                "fix them or convert the column to a date type"
            ) from None
    if parsed.isna().any():
        raise EntityError(f"column '{col}' has missing timestamps; drop those rows")
    return parsed


def _first_unparseable(values: pd.Series) -> object:
    for value in values:
        try:
            pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            return value
    return values.iloc[0]


def _numeric(values: pd.Series, col: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)
    converted = pd.to_numeric(values, errors="coerce")
    bad = values[converted.isna() & values.notna()]
    if len(bad):
        raise EntityError(
            f"column '{col}' is not numeric (e.g. {bad.iloc[0]!r}); clean it or leave it out "
            "of the model"
        )
    return converted.astype(float)


def _refuse_duplicates(times: pd.Series, col: str) -> None:
    duplicated = times.duplicated()
    if duplicated.any():
        first = times[duplicated].iloc[0]
        raise EntityError(
            f"{int(duplicated.sum())} duplicate timestamps in '{col}' (first: {first}); aggregate "
            "them, or add the column that tells them apart to data.id_cols"
        )


def _infer_freq(times: pd.Series, col: str) -> str:
    if len(times) >= 3:
        inferred = pd.infer_freq(times)
        if inferred:
            # A string today; pandas 4 returns an offset. Context and tags need the string.
            return to_offset(inferred).freqstr
    # Steps in local wall-clock time, so that a DST change does not make a 23-hour day.
    steps = (times.dt.tz_localize(None) if times.dt.tz is not None else times).diff().dropna()
    if steps.empty:
        raise EntityError(
            f"cannot infer the frequency of '{col}' from one timestamp; set data.freq"
        )
    step = steps.min()
    # Whole days and weeks get calendar frequencies, as pd.infer_freq gives for a series without
    # gaps; to_offset would give "24h" or "168h", which hide the season and ignore DST.
    if step % (7 * _DAY) == pd.Timedelta(0):
        weeks, anchored = step // (7 * _DAY), f"W-{times.iloc[0].day_name()[:3].upper()}"
        return anchored if weeks == 1 else f"{weeks}{anchored}"
    if step % _DAY == pd.Timedelta(0):
        return "D" if step == _DAY else f"{step.days}D"
    return to_offset(step).freqstr


def _on_grid(
    history: pd.DataFrame,
    time_col: str,
    target_col: str,
    exog_cols: list[str],
    freq: str,
    fill_missing: str,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows on the frequency grid, gaps filled, and which targets were observed."""
    times = history[time_col]
    if _already_regular(times, freq):
        # The common case: nothing to put on the grid, only missing values to fill.
        regular = history.reset_index(drop=True)
        observed = regular[target_col].notna().to_numpy()
        if not observed.all() or (exog_cols and regular[exog_cols].isna().to_numpy().any()):
            regular = _fill(regular.copy(), target_col, exog_cols, fill_missing)
        return regular, observed
    problem = frequency_problem(times.reset_index(drop=True), time_col, freq)
    if problem:
        raise EntityError(problem)
    grid = pd.date_range(times.iloc[0], times.iloc[-1], freq=freq)
    regular = history.set_index(time_col).reindex(grid)
    regular.index.name = time_col
    observed = regular[target_col].notna().to_numpy()
    regular = _fill(regular, target_col, exog_cols, fill_missing)
    return regular.reset_index(), observed


def frequency_problem(times: pd.Series, time_col: str, freq: str) -> str | None:
    """Why sorted, unique ``times`` cannot be on a grid of ``freq``, or None when they can.

    Two problems: timestamps off the grid, and a frequency finer than the data, which would
    fill every period between two observations (29 of every 30 days of monthly data given
    ``D``) and is refused rather than silently resampled.
    """
    if len(times) < 2:
        return None
    grid = pd.date_range(times.iloc[0], times.iloc[-1], freq=freq)
    positions = grid.get_indexer(pd.DatetimeIndex(times))
    if (positions < 0).any():
        return (
            f"timestamps in '{time_col}' do not follow the frequency '{freq}' (e.g. "
            f"{times.iloc[int(np.flatnonzero(positions < 0)[0])]}); set data.freq to match the data"
        )
    steps = np.diff(positions)
    if len(times) >= 3 and steps.min() > 1:
        return (
            f"data.freq '{freq}' is finer than the timestamps in '{time_col}' (never two "
            f"observations one period apart; they are {int(steps.min())} or more periods "
            "apart); set data.freq to the data's frequency, or leave it out to infer it"
        )
    return None


def _already_regular(times: pd.Series, freq: str) -> bool:
    """Whether sorted, unique ``times`` already are every period of ``freq`` from first to last.

    Checked with array arithmetic: generating a calendar grid (``pd.date_range`` with a weekly
    offset) costs about a millisecond, a lot for each of thousands of entities. Only offsets of
    fixed length qualify; others (months, business days) take the general path.
    """
    offset = to_offset(freq)
    first = times.iloc[0]
    if not _fixed_length(offset) or not offset.is_on_offset(first):
        return False
    if len(times) == 1:
        return True
    steps = np.diff(times.to_numpy())
    return bool(first + offset == times.iloc[1] and (steps == steps[0]).all())


def _fill(frame: pd.DataFrame, target_col: str, exog_cols: list[str], how: str) -> pd.DataFrame:
    if how == "interpolate":
        frame[target_col] = frame[target_col].interpolate(limit_direction="both")
    elif how == "zero":
        frame[target_col] = frame[target_col].fillna(0.0)
    elif how == "ffill":
        frame[target_col] = frame[target_col].ffill().bfill()
    if exog_cols and how != "none":
        frame[exog_cols] = frame[exog_cols].ffill().bfill()
    return frame
