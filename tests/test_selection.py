"""Backtests, automatic selection and intervals on synthetic series of known structure.

Each series is built so that one family of models is right for it; the tests check that the
backtest finds that family, that values the fill policy made up are never scored, and that the
conformal intervals cover close to their nominal share of new values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from manymodels.candidates import plan_models
from manymodels.config import config_from_dict
from manymodels.errors import TemplateError
from manymodels.fitting import fit_entity
from manymodels.tasks.entities import fit_spec

KEYS = {"id": "1"}
NAIVE_FAMILY = {"naive", "seasonal_naive"}


def spec_for(freq: str, horizon: int, model: dict | None = None, **evaluation):
    raw = {
        "horizon": horizon,
        "data": {"path": "unused", "partition_by": ["id"], "time_col": "t", "target_col": "y",
                 "freq": freq},
        "evaluation": evaluation,
    }  # fmt: skip
    if model is not None:
        raw["model"] = model
    config = config_from_dict(raw)
    return fit_spec(config, plan_models(config.model))


def series(values, freq: str, start: str = "2015-01-01") -> pd.DataFrame:
    return pd.DataFrame({"t": pd.date_range(start, periods=len(values), freq=freq), "y": values})


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(7)


def test_seasonal_series_gets_a_seasonal_model(rng):
    t = np.arange(120)
    pattern = 20 * np.sin(2 * np.pi * t / 12)
    fit = fit_entity(series(100 + pattern + rng.normal(0, 2, 120), "MS"), KEYS, spec_for("MS", 12))
    forecast = fit.model.forecast()["prediction"].to_numpy()
    truth = 100 + 20 * np.sin(2 * np.pi * np.arange(120, 132) / 12)
    assert fit.winner not in {"naive"}
    assert np.corrcoef(forecast, truth)[0, 1] > 0.95, fit.winner
    assert fit.metrics["mase"] < fit.scores["naive"]["mase"] / 3
    assert fit.windows == 3


def test_trended_series_gets_a_trend(rng):
    values = 10 + 2 * np.arange(60) + rng.normal(0, 1, 60)
    fit = fit_entity(series(values, "MS"), KEYS, spec_for("MS", 12))
    steps = np.diff(fit.model.forecast()["prediction"].to_numpy())
    assert fit.winner not in NAIVE_FAMILY
    assert steps.mean() == pytest.approx(2.0, abs=0.4)


def test_white_noise_gets_its_mean(rng):
    fit = fit_entity(series(50 + rng.normal(0, 5, 100), "W-SUN"), KEYS, spec_for("W-SUN", 8))
    forecast = fit.model.forecast()["prediction"].to_numpy()
    assert fit.winner not in NAIVE_FAMILY
    assert abs(forecast.mean() - 50) < 3
    assert fit.metrics["mase"] < fit.scores["naive"]["mase"]


def test_intermittent_series_gets_a_demand_rate_chosen_by_rmse(rng):
    values = rng.binomial(1, 0.3, 150) * rng.poisson(3, 150).astype(float)
    fit = fit_entity(series(values, "D"), KEYS, spec_for("D", 14))
    forecast = fit.model.forecast()["prediction"].to_numpy()
    assert fit.selected_by == "rmse"
    assert fit.winner not in NAIVE_FAMILY
    assert "croston" in fit.scores  # tried, as the series is intermittent
    assert 0.5 * values.mean() < forecast.mean() < 1.5 * values.mean()


def test_croston_is_not_tried_on_a_series_without_zeros(rng):
    fit = fit_entity(series(50 + rng.normal(0, 5, 100), "W-SUN"), KEYS, spec_for("W-SUN", 8))
    assert "croston" not in fit.scores
    assert fit.selected_by == "mase"


def test_seasonal_naive_competes_only_where_a_season_shows(rng):
    flat = fit_entity(series(50 + rng.normal(0, 5, 48), "QS"), KEYS, spec_for("QS", 8))
    assert "seasonal_naive" not in flat.scores
    assert flat.baseline  # still scored beside the entity, as the baseline
    assert "seasonal_naive" in set(flat.backtest["candidate"])
    pattern = 50 + 10 * np.tile([1.0, -1.0, 0.5, -0.5], 12) + rng.normal(0, 1, 48)
    seasonal = fit_entity(series(pattern, "QS"), KEYS, spec_for("QS", 8))
    assert "seasonal_naive" in seasonal.scores


def test_filled_values_are_never_scored():
    values = 100 + np.sin(np.arange(60)) * 10
    frame = series(values, "W-SUN")
    # Gaps inside the last window only: the forecasts do not depend on how they are filled.
    gappy = frame.drop(index=[53, 54, 57]).reset_index(drop=True)
    model = {"template": "naive"}
    filled = {
        fill: fit_entity(
            gappy, KEYS, _with_fill(spec_for("W-SUN", 8, model, windows=1), fill)
        )  # fmt: skip
        for fill in ("interpolate", "zero")
    }
    assert filled["interpolate"].metrics == pytest.approx(filled["zero"].metrics)
    expected = np.abs(values[[52, 55, 56, 58, 59]] - values[51]).mean()
    assert filled["zero"].metrics["mae"] == pytest.approx(expected)
    table = filled["zero"].backtest
    actual = table[table["candidate"] == "naive"].set_index("t")["actual"]
    assert actual[frame["t"].iloc[[53, 54, 57]]].isna().all()
    assert filled["zero"].filled == 3


def test_mase_scale_uses_observed_pairs_only():
    values = np.tile([10.0, 20.0], 30)
    frame = series(values, "W-SUN").drop(index=list(range(10, 20))).reset_index(drop=True)
    spec = spec_for("W-SUN", 4, {"template": "naive"}, windows=1, season_length=1)
    zero = fit_entity(frame, KEYS, _with_fill(spec, "zero"))
    interpolated = fit_entity(frame, KEYS, _with_fill(spec, "interpolate"))
    # Made-up values would change the scale (zeros give steps of 10 and 20, not 10 only).
    assert zero.metrics["mase"] == pytest.approx(interpolated.metrics["mase"])
    assert zero.metrics["mase"] == pytest.approx(zero.metrics["mae"] / 10.0)


@pytest.mark.parametrize(("template", "windows"), [("auto_ets", 6), ("auto_ets", 3), ("naive", 2)])
def test_intervals_reach_near_nominal_coverage(template, windows):
    # With few windows (three is the default), scores divided by a scale learnt from the same
    # errors made the 95% intervals too narrow (86% with two windows): each window's errors are
    # scaled by the other windows'.
    rng = np.random.default_rng(11)
    spec = spec_for("W-SUN", 8, {"template": template}, windows=windows)
    inside = {80.0: [], 95.0: []}
    for _ in range(60):
        level = 100 + np.cumsum(rng.normal(0, 1, 130)) * 0.3
        values = level + rng.normal(0, 3, 130)
        fit = fit_entity(series(values[:122], "W-SUN"), KEYS, spec)
        forecast = fit.model.forecast()
        for level_ in inside:
            label = int(level_)
            lo, hi = forecast[f"lo-{label}"].to_numpy(), forecast[f"hi-{label}"].to_numpy()
            inside[level_].extend((values[122:] >= lo) & (values[122:] <= hi))
    assert 0.74 <= np.mean(inside[80.0]) <= 0.88
    assert 0.92 <= np.mean(inside[95.0]) <= 0.995


def test_intervals_are_ordered_and_widen_with_the_horizon(rng):
    values = 100 + np.cumsum(rng.normal(0, 1, 100))
    fit = fit_entity(series(values, "W-SUN"), KEYS, spec_for("W-SUN", 8, {"template": "naive"}))
    forecast = fit.model.forecast(horizon=12, levels=[50, 80, 95])
    width = (forecast["hi-95"] - forecast["lo-95"]).to_numpy()
    assert (forecast["lo-95"] <= forecast["lo-80"]).all()
    assert (forecast["lo-80"] <= forecast["lo-50"]).all()
    assert (forecast["lo-50"] <= forecast["prediction"]).all()
    assert (np.diff(width) >= -1e-9).all()
    assert set(fit.coverage) == {80.0, 95.0}


def test_a_short_series_backtests_on_fewer_windows_and_says_so(rng):
    fit = fit_entity(series(50 + rng.normal(0, 5, 22), "W-SUN"), KEYS, spec_for("W-SUN", 8))
    assert fit.windows == 2 and not fit.fallback
    tiny = fit_entity(series([5.0, 6.0, 7.0], "W-SUN"), KEYS, spec_for("W-SUN", 8))
    assert (tiny.windows, tiny.fallback, tiny.winner) == (0, True, "naive")
    assert np.isnan(tiny.metrics["mase"])
    assert len(tiny.model.forecast()) == 8


def test_recorded_metrics_belong_to_the_registered_specification(rng):
    """The ETS form chosen at the first cutoff is the one refitted on all the data."""
    t = np.arange(110)
    values = 100 + 15 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 2, 110)
    spec = spec_for("MS", 12, {"template": "ets", "params": {"seasonal": "auto"}})
    fit = fit_entity(series(values[:40], "MS"), KEYS, spec)
    # 40 months: the first cutoff (16 months) is too short for a season, the whole series is
    # not; the registered model keeps the backtested, non-seasonal form.
    assert fit.model.model.spec["seasonal"] is None


def test_every_candidate_is_scored_on_the_same_windows(rng):
    fit = fit_entity(series(50 + rng.normal(0, 5, 100), "W-SUN"), KEYS, spec_for("W-SUN", 8))
    table = fit.backtest
    per_candidate = table.groupby("candidate")[["t", "cutoff"]].apply(
        lambda rows: tuple(rows.itertuples(index=False))
    )
    assert per_candidate.nunique() == 1
    assert set(table["candidate"]) == {*fit.scores, "seasonal_naive"}


def test_a_failing_candidate_drops_out_alone(tmp_path, rng):
    broken = tmp_path / "broken.py"
    broken.write_text(
        "def train(history, context):\n    raise RuntimeError('no luck')\n\n"
        "def predict(model, history, future, context):\n    return [0.0] * len(future)\n"
    )
    model = {"candidates": [{"template": "naive"}, {"template": str(broken)}]}
    fit = fit_entity(series(50 + rng.normal(0, 5, 60), "W-SUN"), KEYS,
                     spec_for("W-SUN", 8, model))  # fmt: skip
    assert fit.winner == "naive"
    assert fit.errors == {"broken": "RuntimeError: no luck"}


def _fails_on_the_newest_data(path, after: int):
    # Right in every backtest window (it forecasts the true mean), then unable to fit the
    # whole history, as a form chosen early can be (a multiplicative season after a zero).
    path.write_text(
        "def train(history, context):\n"
        f"    if len(history) > {after}:\n"
        "        raise ValueError('cannot fit the newest data')\n"
        "    return {}\n\n"
        "def predict(model, history, future, context):\n"
        "    return [50.0] * len(future)\n"
    )
    return {"template": str(path)}


def test_a_winner_whose_final_refit_fails_gives_way_to_the_next_best(tmp_path, rng):
    values = 50 + rng.normal(0, 5, 60)
    brittle = _fails_on_the_newest_data(tmp_path / "brittle.py", after=52)
    for combine in (1, 2):
        model = {"candidates": [{"template": "naive"}, brittle, {"template": "theta"}],
                 "combine": combine}  # fmt: skip
        fit = fit_entity(series(values, "W-SUN"), KEYS, spec_for("W-SUN", 8, model))

        assert fit.scores["brittle"]["mase"] < fit.scores["naive"]["mase"], "it was the best"
        assert fit.winner in {"theta", "naive", "combination"}
        assert "brittle" not in getattr(fit.model.model, "names", [])
        assert fit.errors == {"brittle": "final refit: ValueError: cannot fit the newest data"}
        assert len(fit.model.forecast()) == 8


def test_a_single_template_whose_final_refit_fails_fails_the_entity(tmp_path, rng):
    model = {"template": str(_fails_on_the_newest_data(tmp_path / "brittle.py", 52)["template"])}
    with pytest.raises(ValueError, match="cannot fit the newest data"):
        fit_entity(series(50 + rng.normal(0, 5, 60), "W-SUN"), KEYS, spec_for("W-SUN", 8, model))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"candidates": [{"template": "naive"}, {"template": "prophet"}]},
            r"^model\.candidates\[1\] \(prophet\): model\.template: 'prophet' is not a built-in",
        ),
        (
            {"candidates": [{"template": "auto_ets", "params": {"model": "XYZ"}}]},
            r"^model\.candidates\[0\] \(auto_ets\): model\.params\.model: invalid value 'XYZ'",
        ),
        (
            {"template": "naive", "candidates": [{"template": "naive"}]},
            r"^model\.candidates: candidates compete only with model\.template: auto",
        ),
        ({"params": {"lags": 3}}, r"^model\.params: with model\.template: auto, parameters"),
        ({"fallback": "my.py"}, r"^model\.fallback: 'my.py' must be a built-in template"),
    ],
)
def test_bad_candidates_are_one_line_errors(model, message, tmp_path):
    if model.get("fallback") == "my.py":
        (tmp_path / "my.py").write_text("")
        model = {"fallback": str(tmp_path / "my.py")}
        message = r"^model\.fallback: '.*my\.py' must be a built-in template"
    with pytest.raises(TemplateError, match=message):
        spec_for("W-SUN", 8, model)


def test_repeated_candidate_names_are_a_config_error():
    from manymodels.errors import ConfigError

    with pytest.raises(ConfigError, match=r"candidate name 'naive' is used twice"):
        spec_for("W-SUN", 8, {"candidates": [{"template": "naive"}, {"template": "naive"}]})


@pytest.mark.parametrize("levels", [[0], [100], [-5], [80, 120]])
def test_levels_outside_zero_to_hundred_are_refused(levels):
    from manymodels.errors import ConfigError

    with pytest.raises(ConfigError, match=r"key 'forecast\.levels' has an invalid value"):
        config_from_dict({"horizon": 4, "forecast": {"levels": levels},
                          "data": {"path": "x", "partition_by": ["id"], "time_col": "t",
                                   "target_col": "y"}})  # fmt: skip


def _with_fill(spec, fill: str):
    from dataclasses import replace

    return replace(spec, fill_missing=fill)


def test_combination_of_the_best_is_kept_only_where_it_backtests_better(tmp_path):
    # Two forecasts biased in opposite directions: their mean is better than either.
    for name, shift in (("high", 5.0), ("low", -5.0)):
        (tmp_path / f"{name}.py").write_text(
            "def train(history, context):\n    return None or {}\n\n"
            "def predict(model, history, future, context):\n"
            f"    return [float(history[context.target_col].mean()) + {shift}] * len(future)\n"
        )
    candidates = [{"template": str(tmp_path / "high.py")}, {"template": str(tmp_path / "low.py")}]
    rng = np.random.default_rng(3)
    values = 50 + rng.normal(0, 1, 80)
    combined = fit_entity(series(values, "W-SUN"), KEYS,
                          spec_for("W-SUN", 8, {"candidates": candidates, "combine": 2}))  # fmt: skip
    assert combined.winner == "combination"
    assert combined.model.model.names == ["high", "low"] or combined.model.model.names == [
        "low", "high"]  # fmt: skip
    assert combined.metrics["mase"] < min(combined.scores["high"]["mase"],
                                          combined.scores["low"]["mase"])  # fmt: skip
    forecast = combined.model.forecast()["prediction"].to_numpy()
    assert forecast == pytest.approx(np.full(8, values.mean()))
    assert "combination" in set(combined.backtest["candidate"])

    single = fit_entity(series(values, "W-SUN"), KEYS,
                        spec_for("W-SUN", 8, {"candidates": [{"template": "naive"},
                                                             candidates[0]], "combine": 2}))  # fmt: skip
    # naive alone beats its mean with a forecast that is 5 too high: the single best stays.
    assert single.winner == "naive"


def _non_negative_spec(non_negative, template: str = "theta"):
    config = config_from_dict({
        "horizon": 12, "model": {"template": template},
        "data": {"path": "unused", "partition_by": ["id"], "time_col": "t", "target_col": "y",
                 "freq": "MS", "non_negative": non_negative},
    })  # fmt: skip
    return fit_spec(config, plan_models(config.model))


def test_a_series_that_runs_down_to_zero_is_forecast_at_zero_not_below(rng):
    # Sales that fall to nothing: a trend carried on goes negative, in the backtest too.
    values = np.maximum(60 - 1.4 * np.arange(60) + rng.normal(0, 1, 60), 0)
    unfloored = fit_entity(series(values, "MS"), KEYS, _non_negative_spec(False))
    assert unfloored.model.forecast()["lo-80"].min() < 0
    assert unfloored.backtest["prediction"].min() < 0

    for template in ("theta", "auto"):
        fit = fit_entity(series(values, "MS"), KEYS, _non_negative_spec("auto", template))
        forecast = fit.model.forecast()
        bounds = forecast[[col for col in forecast if col.startswith(("lo-", "hi-"))]]
        assert (forecast["prediction"] >= 0).all() and (bounds.to_numpy() >= 0).all()
        # What chose and judged the model was floored the same way as what it serves.
        assert (fit.backtest["prediction"] >= 0).all()
        assert fit.metrics["mae"] <= unfloored.metrics["mae"] or template == "auto"


def test_auto_leaves_a_target_that_goes_negative_alone_and_true_floors_it(rng):
    values = 30 - 1.4 * np.arange(60) + rng.normal(0, 1, 60)  # a balance that turns negative
    free = fit_entity(series(values, "MS"), KEYS, _non_negative_spec("auto"))
    assert free.model.forecast()["prediction"].max() < 0
    forced = fit_entity(series(values, "MS"), KEYS, _non_negative_spec(True))
    assert (forced.model.forecast()["prediction"] == 0).all()


def test_a_combination_floors_each_member_as_their_backtests_were():
    from manymodels.ensembles import Ensemble, Member, predict
    from manymodels.templates import TrainContext

    context = TrainContext({"id": "1"}, {}, "t", "y", (), "MS", 2, 12)
    history = series([3.0, 1.0, 0.0], "MS")
    members = [Member("down", lambda model, h, f, c: np.full(len(f), model), -4.0, context),
               Member("up", lambda model, h, f, c: np.full(len(f), model), 2.0, context)]  # fmt: skip
    future = pd.DataFrame({"t": pd.date_range("2015-04-01", periods=2, freq="MS")})
    assert predict(Ensemble(members, non_negative="auto"), history, future, context).tolist() == [
        1,
        1,
    ]
    assert predict(Ensemble(members), history, future, context).tolist() == [-1, -1]
