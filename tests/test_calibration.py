"""Interval calibration on a panel's most recent backtest window.

Unit tests of the forward check, the pooled quantile and the widening, then real training jobs
on a local cluster: a panel whose noise grows is widened to near-nominal coverage on the data
that follows, and a panel that holds still is left as it is.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import manymodels
from manymodels.calibration import LEVELS, RatioHistogram, forward_ratios
from manymodels.data import write_partitioned
from manymodels.intervals import (
    ConformalScores,
    conformal_share,
    coverage,
    fit_scores,
    interval_columns,
    widening,
)  # fmt: skip
from manymodels.priors import MIN_ENTITIES
from manymodels.report import print_train_summary

from .conftest import base_config


def test_forward_ratios_say_how_far_earlier_intervals_fell_short():
    # Earlier windows miss by 1 at every step: their scores are all 1, the scale 1, so every
    # level's interval is +/-1; the last window misses by 2, twice as far.
    errors = np.array([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [2.0, -2.0, np.nan]])
    ratios = forward_ratios(errors)
    assert ratios.shape == (len(LEVELS), 2)  # the unobserved value is not checked
    np.testing.assert_allclose(ratios, 2.0)


def test_no_forward_check_without_two_windows_or_an_observed_last_window():
    assert forward_ratios(np.array([[1.0, 2.0]])) is None
    assert forward_ratios(np.array([[1.0, 2.0], [np.nan, np.nan]])) is None
    assert forward_ratios(np.array([[np.nan, np.nan], [1.0, 2.0]])) is None


def test_the_check_takes_the_share_of_scores_that_the_final_interval_takes():
    rng = np.random.default_rng(3)
    errors = rng.normal(size=(3, 8))
    earlier = fit_scores(errors[:-1])
    share = conformal_share(24, 0.8)  # the final interval's rank among all 24 scores
    half = np.quantile(earlier.scores, share) * earlier.scale
    ratios = forward_ratios(errors)[LEVELS.index(80.0)]
    np.testing.assert_allclose(ratios, np.abs(errors[-1]) / half)


def test_the_factor_is_the_conformal_quantile_of_the_pooled_ratios():
    rng = np.random.default_rng(0)
    histogram, pooled = RatioHistogram(), []
    for _ in range(MIN_ENTITIES + 5):
        ratios = np.tile(rng.lognormal(0.3, 0.5, size=6), (len(LEVELS), 1))
        histogram.add(ratios)
        pooled.extend(ratios[0])
    histogram.add(None)  # an entity without a forward check counts for nothing
    assert histogram.entities == MIN_ENTITIES + 5
    pooled = np.sort(pooled)
    for level, factor in histogram.calibration():
        rank = min(math.ceil((len(pooled) + 1) * level / 100), len(pooled))
        exact = max(1.0, pooled[rank - 1])
        # The upper edge of the exact quantile's bin: at most one bin (1.4%) wider.
        assert exact <= factor <= exact * 1.014 + 1e-12


def test_a_calibration_never_narrows_and_needs_a_panel():
    small = RatioHistogram()
    for _ in range(MIN_ENTITIES):
        small.add(np.full((len(LEVELS), 4), 0.5))
    assert all(factor == 1.0 for _, factor in small.calibration())
    few = RatioHistogram()
    for _ in range(MIN_ENTITIES - 1):
        few.add(np.full((len(LEVELS), 4), 3.0))
    assert few.calibration() == ()
    merged = few + small
    assert merged.entities == 2 * MIN_ENTITIES - 1
    assert merged.counts.sum() == (2 * MIN_ENTITIES - 1) * 4 * len(LEVELS)


def test_widening_interpolates_between_levels_and_holds_beyond_them():
    calibration = ((80.0, 1.5), (90.0, 2.0))
    assert widening(calibration, 85.0) == pytest.approx(1.75)
    assert widening(calibration, 50.0) == 1.5 and widening(calibration, 99.0) == 2.0
    assert widening((), 80.0) == 1.0


def test_calibrated_scores_widen_every_interval_and_older_models_still_load():
    errors = np.random.default_rng(1).normal(size=(3, 5))
    plain, widened = fit_scores(errors), fit_scores(errors, ((80.0, 1.5), (95.0, 1.2)))
    np.testing.assert_allclose(widened.half_widths(80, 7), 1.5 * plain.half_widths(80, 7))
    np.testing.assert_allclose(widened.half_widths(95, 7), 1.2 * plain.half_widths(95, 7))
    # A model saved before calibrations existed has no such attribute in its pickle.
    older = ConformalScores.__new__(ConformalScores)
    older.__dict__.update({"scale": plain.scale, "scores": plain.scores})
    loaded = pickle.loads(pickle.dumps(older))
    np.testing.assert_allclose(loaded.half_widths(80, 7), plain.half_widths(80, 7))


def test_intervals_stay_nested_when_a_lower_level_is_widened_more():
    errors = np.random.default_rng(2).normal(size=(3, 6))
    scores = fit_scores(errors, ((80.0, 3.0), (95.0, 1.0)))
    columns = interval_columns(np.zeros(6), scores, [95, 80])
    assert list(columns) == ["lo-80", "hi-80", "lo-95", "hi-95"]
    np.testing.assert_allclose(columns["hi-80"], scores.half_widths(80, 6))
    assert (columns["hi-95"] >= columns["hi-80"]).all() and (columns["lo-95"] <= columns["lo-80"]).all()
    # The backtest coverage judges the same nested intervals: 95% never below 80%.
    covered = coverage(errors, [80, 95], ((80.0, 3.0), (95.0, 1.0)))
    assert covered[95.0] >= covered[80.0]


HORIZON = 8
ENTITIES = MIN_ENTITIES + 4


def _panel(tmp_path: Path, growth: float, seed: int = 5) -> tuple[Path, pd.DataFrame]:
    """White noise around a level, its spread multiplied by ``growth`` every eight weeks of the
    last 24 (the three backtest windows) and on into the eight weeks that follow, held back."""
    rng = np.random.default_rng(seed)
    weeks = pd.date_range("2020-01-05", periods=64 + HORIZON, freq="W-SUN")
    spread = growth ** np.clip((np.arange(len(weeks)) - 40) // HORIZON + 1, 0, None)
    frames = []
    for store in range(ENTITIES):
        frames.append(pd.DataFrame({
            "store": str(store), "brand": "b", "week": weeks,
            "sales": 100.0 + rng.normal(scale=spread),
        }))  # fmt: skip
    frame = pd.concat(frames, ignore_index=True)
    seen, future = frame[frame["week"] < weeks[64]], frame[frame["week"] >= weeks[64]]
    path = tmp_path / f"data-{growth}"
    write_partitioned(seen, str(path), ["store", "brand"], basename="part")
    return path, future


def _config(data: Path, work: Path, scheduler: str, calibrate: bool = True):
    return manymodels.config_from_dict(base_config(
        data, work, horizon=HORIZON,
        data={"exog_cols": []},
        model={"template": "auto", "params": {},
               "candidates": [{"template": "naive"}, {"template": "theta"}]},
        evaluation={"windows": 3, "calibrate": calibrate},
        compute={"scheduler": scheduler},
    ))  # fmt: skip


def _coverage(config, future: pd.DataFrame, level: int) -> tuple[float, pd.DataFrame]:
    forecast = pd.read_parquet(manymodels.forecast(config).output)
    forecast["store"] = forecast["store"].astype(str)
    joined = forecast.merge(future, on=["store", "week"])
    assert len(joined) == ENTITIES * HORIZON
    inside = (joined["lo-80"] <= joined["sales"]) & (joined["sales"] <= joined["hi-80"])
    return float(inside.mean()), joined


def test_a_panel_whose_noise_grew_gets_wider_intervals_that_hold(
    tmp_path, dask_scheduler, capsys
):
    data, future = _panel(tmp_path, growth=1.5)
    calibrated = _config(data, tmp_path / "on", dask_scheduler)
    plain = _config(data, tmp_path / "off", dask_scheduler, calibrate=False)

    result, twin = manymodels.train(calibrated), manymodels.train(plain)

    assert result.failed == twin.failed == 0
    assert result.calibration[80.0] > 1.3 and set(result.calibration) == {80.0, 95.0}
    assert twin.calibration == {}
    logged = _logged_panel(calibrated, result.run_id)["calibration"]
    assert logged["entities"] == ENTITIES
    assert set(logged["factors"]) == {str(level) for level in LEVELS}
    assert float(logged["factors"]["80.0"]) == pytest.approx(result.calibration[80.0])
    assert _logged_panel(plain, twin.run_id)["calibration"]["factors"] == {}

    covered, with_factor = _coverage(calibrated, future, 80)
    covered_before, without = _coverage(plain, future, 80)
    # The same models, the calibrated intervals wider by the job's factor.
    pd.testing.assert_series_equal(with_factor["prediction"], without["prediction"])
    np.testing.assert_allclose(
        with_factor["hi-80"] - with_factor["prediction"],
        result.calibration[80.0] * (without["hi-80"] - without["prediction"]), rtol=1e-9,
    )  # fmt: skip
    assert covered_before < 0.65
    assert abs(covered - 0.8) < abs(covered_before - 0.8) and 0.7 <= covered <= 0.95

    print_train_summary(result)
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if "intervals widened" in ln]
    assert f"x{result.calibration[80.0]:.2f} at 80%" in line


def test_a_panel_that_holds_still_keeps_its_own_intervals(tmp_path, dask_scheduler):
    data, future = _panel(tmp_path, growth=1.0)
    result = manymodels.train(_config(data, tmp_path / "work", dask_scheduler))
    assert result.failed == 0
    assert result.calibration[80.0] < 1.2
    covered, _ = _coverage(_config(data, tmp_path / "work", dask_scheduler), future, 80)
    assert 0.7 <= covered <= 0.95


def _logged_panel(config, run_id: str) -> dict:
    client = mlflow.MlflowClient(f"sqlite:///{Path(config.work_dir) / 'mlflow.db'}")
    local = client.download_artifacts(run_id, "prior.json", str(Path(config.work_dir) / "dl"))
    return json.loads(Path(local).read_text(encoding="utf-8"))
