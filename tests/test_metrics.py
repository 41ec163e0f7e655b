"""Tests of manymodels.metrics on small arrays computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from manymodels.metrics import METRICS, bias, mae, mase, rmse, score, smape, wape


@pytest.fixture
def actual() -> np.ndarray:
    return np.array([1.0, 2.0, 3.0])


@pytest.fixture
def predicted() -> np.ndarray:
    """Errors of 1, 0 and 2 against ``actual``."""
    return np.array([2.0, 2.0, 5.0])


def test_mae(actual, predicted):
    assert mae(actual, predicted) == pytest.approx(1.0)  # (1 + 0 + 2) / 3


def test_rmse(actual, predicted):
    assert rmse(actual, predicted) == pytest.approx(math.sqrt(5 / 3))  # (1 + 0 + 4) / 3


def test_smape(actual, predicted):
    # 2|e| / (|a| + |p|): 2/3, 0, 4/8
    assert smape(actual, predicted) == pytest.approx(100 * (2 / 3 + 0 + 0.5) / 3)


def test_smape_is_symmetric(actual, predicted):
    assert smape(actual, predicted) == pytest.approx(smape(predicted, actual))


def test_smape_counts_zero_against_zero_as_perfect():
    assert smape(np.zeros(3), np.zeros(3)) == 0.0
    assert smape(np.array([0.0, 1.0]), np.array([0.0, 0.0])) == pytest.approx(100.0)


def test_smape_tops_out_at_200():
    assert smape(np.zeros(2), np.array([1.0, 5.0])) == pytest.approx(200.0)
    assert smape(np.array([1.0, -1.0]), np.array([-1.0, 1.0])) == pytest.approx(200.0)


@pytest.mark.parametrize("metric", [mae, rmse, smape])
def test_perfect_forecast_scores_zero(metric, actual):
    assert metric(actual, actual.copy()) == 0.0


def test_mase_with_lag_one(actual, predicted):
    # history steps: |3-1|, |2-3|, |4-2| -> scale 5/3; MAE 1
    assert mase(actual, predicted, np.array([1.0, 3.0, 2.0, 4.0]), 1) == pytest.approx(0.6)


@pytest.fixture
def zigzag() -> np.ndarray:
    """A history whose lag-2 steps are all 1 and whose lag-1 steps average 9.6."""
    return np.array([0.0, 10.0, 1.0, 11.0, 2.0, 12.0])


@pytest.mark.parametrize(
    ("season_length", "scale"),
    [
        (2, 1.0),  # three seasons: seasonal lag 2
        (3, 10.0),  # exactly two seasons: seasonal lag 3, steps 11, 8, 11
        (4, 9.6),  # less than two seasons: falls back to lag 1
    ],
)
def test_mase_scales_by_the_in_sample_seasonal_naive_error(zigzag, season_length, scale):
    actual, predicted = np.array([5.0, 5.0]), np.array([6.0, 8.0])  # MAE 2
    assert mase(actual, predicted, zigzag, season_length) == pytest.approx(2.0 / scale)


def test_mase_is_nan_on_a_constant_history(actual, predicted):
    assert math.isnan(mase(actual, predicted, np.full(10, 7.0), 1))
    assert math.isnan(mase(actual, predicted, np.full(10, 7.0), 4))


def test_mase_is_nan_on_a_seasonally_constant_history(actual, predicted):
    assert math.isnan(mase(actual, predicted, np.array([1.0, 5.0] * 4), 2))


@pytest.mark.parametrize("history", [np.array([4.0]), np.array([]), np.array([1.0, np.nan, 3.0])])
def test_mase_is_nan_when_the_history_cannot_scale(actual, predicted, history):
    assert math.isnan(mase(actual, predicted, history, 1))


def test_score_returns_every_metric(actual, predicted):
    history = np.array([1.0, 3.0, 2.0, 4.0])
    scores = score(actual, predicted, history, 1)
    assert tuple(scores) == METRICS
    assert scores == pytest.approx(
        {
            "mae": mae(actual, predicted),
            "rmse": rmse(actual, predicted),
            "smape": smape(actual, predicted),
            "mase": mase(actual, predicted, history, 1),
            "wape": wape(actual, predicted),
            "bias": bias(actual, predicted),
        }
    )
    assert all(isinstance(value, float) for value in scores.values())


def test_score_accepts_lists_and_integers():
    scores = score([1, 2, 3], [2, 2, 5], [1, 3, 2, 4], 1)
    assert scores["mae"] == pytest.approx(1.0)
    assert scores["mase"] == pytest.approx(0.6)
