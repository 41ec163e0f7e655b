"""Tests of manymodels.timeseries: one entity's raw rows to a regular series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from manymodels.errors import EntityError
from manymodels.timeseries import future_frame, is_seasonal, regularize, season_length_for

NAN = float("nan")


@pytest.fixture
def weeks() -> pd.DatetimeIndex:
    """Six Sundays from 2024-01-07."""
    return pd.date_range("2024-01-07", periods=6, freq="W-SUN")


def rows(times, target, **exog) -> pd.DataFrame:
    """One entity's raw rows: columns t, y and any exogenous columns."""
    return pd.DataFrame({"t": times, "y": target, **exog})


def regular(frame, freq=None, fill="interpolate", exog=()):
    return regularize(frame, "t", "y", list(exog), freq, fill)


# --- parsing, sorting, refusing ---------------------------------------------------------------


def test_rows_are_sorted_by_time(weeks):
    series = regular(rows(weeks[::-1], [6.0, 5, 4, 3, 2, 1]))
    assert list(series.history["t"]) == list(weeks)
    assert list(series.history["y"]) == [1.0, 2, 3, 4, 5, 6]
    assert series.filled == 0
    assert series.future.empty


def test_input_frame_is_left_alone(weeks):
    frame = rows(weeks[::-1].astype(str), [6, 5, 4, 3, 2, 1])
    before = frame.copy()
    regular(frame)
    pd.testing.assert_frame_equal(frame, before)


def test_only_the_named_columns_are_kept(weeks):
    series = regular(rows(weeks, range(6), price=np.arange(6.0), store="1"), exog=["price"])
    assert list(series.history.columns) == ["t", "y", "price"]


def test_string_timestamps_and_numeric_strings_are_parsed():
    series = regular(rows(["2024-01-01", "2024-01-02", "2024-01-03"], ["1", "2.5", 3]))
    assert pd.api.types.is_datetime64_any_dtype(series.history["t"])
    assert series.history["y"].dtype == float
    assert list(series.history["y"]) == [1.0, 2.5, 3.0]


def test_boolean_target_becomes_float(weeks):
    series = regular(rows(weeks, [True, False] * 3))
    assert list(series.history["y"]) == [1.0, 0.0] * 3


def test_duplicate_timestamps_are_refused(weeks):
    frame = rows([weeks[0], weeks[1], weeks[2], weeks[2], weeks[3], weeks[3]], range(6))
    with pytest.raises(
        EntityError,
        match=r"^2 duplicate timestamps in 't' \(first: 2024-01-21 00:00:00\); aggregate them, or "
        r"add the column that tells them apart to data\.id_cols$",
    ):
        regular(frame)


def test_unparseable_timestamps_are_refused():
    with pytest.raises(
        EntityError,
        match=r"^column 't' has values that are not timestamps \(e\.g\. 'not a date'\); fix them "
        r"or convert the column to a date type$",
    ):
        regular(rows(["2024-01-01", "not a date", "2024-01-03"], [1, 2, 3]))


def test_missing_timestamps_are_refused():
    with pytest.raises(EntityError, match=r"^column 't' has missing timestamps; drop those rows$"):
        regular(rows(["2024-01-01", None, "2024-01-03"], [1, 2, 3]))


def test_non_numeric_target_is_refused():
    with pytest.raises(
        EntityError,
        match=r"^column 'y' is not numeric \(e\.g\. 'x'\); clean it or leave it out of the model$",
    ):
        regular(rows(["2024-01-01", "2024-01-02", "2024-01-03"], [1, "x", 3]))


def test_non_numeric_exogenous_column_is_refused(weeks):
    with pytest.raises(EntityError, match=r"^column 'price' is not numeric \(e\.g\. 'cheap'\)"):
        regular(rows(weeks, range(6), price=["cheap"] * 6), exog=["price"])


def test_target_never_observed_is_refused(weeks):
    with pytest.raises(EntityError, match=r"^column 'y' has no observed values for this entity$"):
        regular(rows(weeks, [NAN] * 6))


# --- the grid and its gaps --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fill", "expected"),
    [
        ("interpolate", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ("zero", [1.0, 2.0, 0.0, 4.0, 0.0, 6.0]),
        ("ffill", [1.0, 2.0, 2.0, 4.0, 4.0, 6.0]),
        ("none", [1.0, 2.0, NAN, 4.0, NAN, 6.0]),
    ],
)
def test_gaps_are_filled_per_mode(weeks, fill, expected):
    series = regular(rows(weeks[[0, 1, 3, 5]], [1.0, 2, 4, 6]), freq="W-SUN", fill=fill)
    assert list(series.history["t"]) == list(weeks)
    np.testing.assert_array_equal(series.history["y"].to_numpy(), expected)
    assert series.filled == 2


@pytest.mark.parametrize(
    ("fill", "expected"),
    [("interpolate", [2.0, 2.0, 3.0]), ("zero", [0.0, 2.0, 3.0]), ("ffill", [2.0, 2.0, 3.0])],
)
def test_missing_first_value_is_filled_too(weeks, fill, expected):
    series = regular(rows(weeks[:3], [NAN, 2.0, 3.0]), fill=fill)
    assert list(series.history["y"]) == expected
    assert series.filled == 1


def test_exogenous_gaps_are_carried_forward_then_back(weeks):
    frame = rows(weeks[[0, 1, 3]], [1.0, 2, 4], price=[NAN, 2.0, 4.0])
    series = regular(frame, freq="W-SUN", exog=["price"])
    assert list(series.history["price"]) == [2.0, 2.0, 2.0, 4.0]


def test_fill_none_leaves_exogenous_gaps(weeks):
    frame = rows(weeks[[0, 1, 3]], [1.0, 2, 4], price=[1.0, 2.0, 4.0])
    series = regular(frame, freq="W-SUN", fill="none", exog=["price"])
    assert np.isnan(series.history["price"].iloc[2])


def test_timestamps_off_the_grid_are_refused(weeks):
    monday = weeks[3] + pd.Timedelta(days=1)
    with pytest.raises(
        EntityError,
        match=r"^timestamps in 't' do not follow the frequency 'W-SUN' \(e\.g\. 2024-01-29 "
        r"00:00:00\); set data\.freq to match the data$",
    ):
        regular(rows([*weeks[:3], monday], [1.0, 2, 3, 4]), freq="W-SUN")


def test_data_on_another_weekday_than_freq_is_refused():
    mondays = pd.date_range("2024-01-01", periods=4, freq="W-MON")
    with pytest.raises(EntityError, match="do not follow the frequency 'W-SUN'"):
        regular(rows(mondays, [1.0, 2, 3, 4]), freq="W-SUN")


def test_timezone_is_kept():
    times = pd.date_range("2024-03-28", periods=6, freq="D", tz="Europe/Berlin")
    series = regular(rows(times, range(6)))
    assert str(series.history["t"].dt.tz) == "Europe/Berlin"
    assert series.freq == "D"


# --- known future rows ------------------------------------------------------------------------


def test_trailing_rows_without_target_are_future_rows(weeks):
    frame = rows(weeks, [1.0, NAN, 3.0, 4.0, NAN, NAN], price=[1.0, 2, 3, 4, 5, 6])
    series = regular(frame, exog=["price"])
    assert list(series.history["t"]) == list(weeks[:4])
    assert list(series.history["y"]) == [1.0, 2.0, 3.0, 4.0]  # the inner gap is filled
    assert series.filled == 1
    assert list(series.future["t"]) == list(weeks[4:])
    assert list(series.future["price"]) == [5.0, 6.0]
    assert list(series.future.index) == [0, 1]


def test_future_rows_are_found_in_unsorted_input(weeks):
    frame = rows(weeks[::-1], [NAN, NAN, 4.0, 3.0, 2.0, 1.0], price=np.arange(6.0))
    series = regular(frame, exog=["price"])
    assert list(series.future["t"]) == list(weeks[4:])
    assert list(series.future["price"]) == [1.0, 0.0]


# --- frequency --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("freq", "start", "inferred"),
    [
        ("W-SUN", "2024-01-07", "W-SUN"),
        ("W-MON", "2024-01-01", "W-MON"),
        ("7D", "2024-01-01", "W-MON"),
        ("D", "2024-01-01", "D"),
        ("MS", "2024-01-01", "MS"),
        ("h", "2024-01-01", "h"),
        ("QS", "2024-01-01", ("QS-JAN", "QS-OCT")),  # pandas names either anchor
        ("B", "2024-01-01", "B"),
    ],
)
def test_frequency_is_inferred(freq, start, inferred):
    series = regular(rows(pd.date_range(start, periods=8, freq=freq), range(8)))
    assert series.freq in (inferred if isinstance(inferred, tuple) else (inferred,))


@pytest.mark.parametrize(
    ("freq", "inferred", "season"), [("W-SUN", "W-SUN", 52), ("D", "D", 7), ("h", "h", 24)]
)
def test_frequency_is_inferred_despite_gaps(freq, inferred, season):
    times = pd.date_range("2024-01-07", periods=8, freq=freq)[[0, 1, 2, 5, 7]]
    series = regular(rows(times, range(5)))
    assert series.freq == inferred
    assert season_length_for(series.freq) == season
    assert len(series.history) == 8
    assert series.filled == 3


def test_frequency_is_inferred_from_two_timestamps():
    series = regular(rows(pd.to_datetime(["2024-01-01", "2024-01-02"]), [1, 2]))
    assert series.freq == "D"


def test_daily_frequency_is_inferred_across_a_dst_change_with_gaps():
    times = pd.date_range("2024-03-28", periods=6, freq="D", tz="Europe/Berlin").delete(2)
    series = regular(rows(times, range(5)))
    assert series.freq == "D"
    assert len(series.history) == 6


def test_one_timestamp_needs_a_configured_frequency(weeks):
    with pytest.raises(
        EntityError, match=r"^cannot infer the frequency of 't' from one timestamp; set data\.freq$"
    ):
        regular(rows(weeks[:1], [1.0]))
    assert regular(rows(weeks[:1], [1.0]), freq="W-SUN").freq == "W-SUN"


def test_frequency_finer_than_the_data_is_refused_not_resampled(weeks):
    with pytest.raises(EntityError, match=r"^data.freq 'D' is finer than the timestamps in 't'"):
        regular(rows(weeks, range(6)), freq="D")


def test_sparse_data_at_its_own_frequency_is_filled_and_flagged():
    days = pd.date_range("2024-01-01", periods=10, freq="D").delete([3, 4, 7])
    series = regular(rows(days, range(7)), freq="D")
    assert series.filled == 3
    assert series.observed.tolist() == [True] * 3 + [False] * 2 + [True] * 2 + [False] + [True] * 2


@pytest.mark.parametrize(
    ("freq", "season"),
    [
        ("W-SUN", 52),
        ("W", 52),
        ("2W-SUN", 26),
        ("D", 7),
        ("7D", 52),
        ("14D", 26),
        ("24h", 7),
        ("168h", 52),
        ("MS", 12),
        ("ME", 12),
        ("QS", 4),
        ("h", 24),
        ("2h", 12),
        ("30min", 2),
        ("B", 5),
        ("YS", 1),
    ],
)
def test_season_length_for(freq, season):
    assert season_length_for(freq) == season


_NOISE = np.random.default_rng(3).normal(0, 1, 48)


@pytest.mark.parametrize(
    ("values", "season", "seasonal"),
    [
        (10 * np.tile([1.0, -1.0, 0.5, -0.5], 12) + _NOISE, 4, True),
        (_NOISE, 4, False),
        (10 * np.tile([1.0, -1.0, 0.5, -0.5], 12) + _NOISE, 1, False),  # no season to test
        (np.full(48, 3.0), 4, False),  # constant
        (_NOISE[:7], 4, True),  # under two seasons: cannot tell, so not ruled out
    ],
)
def test_is_seasonal(values, season, seasonal):
    assert is_seasonal(values, season) is seasonal


# --- future frame -----------------------------------------------------------------------------


@pytest.fixture
def history(weeks) -> pd.DataFrame:
    return rows(weeks, np.arange(6.0), price=[1.0, 2, 3, 4, 5, 6], deal=[0.0, 1, 0, 1, 0, 1])


def test_future_frame_without_exogenous_columns(history):
    future = future_frame(history, history.iloc[:0], "t", [], "W-SUN", 3)
    assert list(future.columns) == ["t"]
    assert list(future["t"]) == list(pd.date_range("2024-02-18", periods=3, freq="W-SUN"))


def test_future_frame_carries_the_last_exogenous_values(history):
    future = future_frame(history, history.iloc[:0], "t", ["price", "deal"], "W-SUN", 3)
    assert list(future["t"]) == list(pd.date_range("2024-02-18", periods=3, freq="W-SUN"))
    assert list(future["price"]) == [6.0, 6.0, 6.0]
    assert list(future["deal"]) == [1.0, 1.0, 1.0]


def test_future_frame_uses_known_future_rows(history):
    known = rows(
        pd.date_range("2024-02-18", periods=2, freq="W-SUN"), [NAN, NAN],
        price=[9.0, NAN], deal=[0.0, 0.0],
    )  # fmt: skip
    future = future_frame(history, known, "t", ["price", "deal"], "W-SUN", 4)
    assert len(future) == 4
    # A missing known value, and every period after the known rows, takes the last observed one.
    assert list(future["price"]) == [9.0, 6.0, 6.0, 6.0]
    assert list(future["deal"]) == [0.0, 0.0, 1.0, 1.0]


def test_future_frame_stops_at_the_horizon(history):
    known = rows(pd.date_range("2024-02-18", periods=5, freq="W-SUN"), NAN, price=np.arange(5.0))
    future = future_frame(history, known, "t", ["price"], "W-SUN", 2)
    assert list(future["price"]) == [0.0, 1.0]


def test_future_frame_from_regularized_rows(weeks):
    frame = rows(weeks, [1.0, 2, 3, 4, NAN, NAN], price=[1.0, 2, 3, 4, 8, 9])
    series = regular(frame, exog=["price"])
    future = future_frame(series.history, series.future, "t", ["price"], series.freq, 3)
    assert list(future["t"]) == list(pd.date_range(weeks[4], periods=3, freq="W-SUN"))
    # Beyond the known rows the values come from the last observation, as documented.
    assert list(future["price"]) == [8.0, 9.0, 4.0]
