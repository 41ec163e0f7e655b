"""Tests of manymodels.templates: the built-ins, parameter checks, loading user files, and the
template contract as manymodels.fitting.fit_entity enforces it."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pandas as pd
import pytest

from manymodels.datasets import oj_sales
from manymodels.errors import EntityError, ManyModelsError, TemplateError
from manymodels.fitting import FitSpec, fit_entity
from manymodels.templates import (
    BUILTIN_TEMPLATES,
    TrainContext,
    load_template,
    resolve_template,
    starter_template_text,
)

HORIZON = 4
EXOG = ("price", "deal")
KEYS = {"store": "1", "brand": "tropicana"}


@pytest.fixture(scope="module")
def weekly() -> pd.DataFrame:
    """One generated OJ-style series: 60 weeks of sales, price and deal."""
    frame = oj_sales(n_entities=1, n_weeks=60, seed=1, short_share=0.0, intermittent_share=0.0)
    return frame[["week", "sales", *EXOG]]


@pytest.fixture
def write_template(tmp_path):
    """Write a user template file and return its path as the config would name it."""

    def write(body: str, name: str = "my_template.py") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body), encoding="utf-8")
        return str(path)

    return write


def context_for(template, params=None, *, freq="W-SUN", season_length=52) -> TrainContext:
    return TrainContext(
        keys=KEYS, params=template.validate_params(params or {}), time_col="week",
        target_col="sales", exog_cols=EXOG, freq=freq, horizon=HORIZON,
        season_length=season_length,
    )  # fmt: skip


def spec_for(template, params=None, **changes) -> FitSpec:
    fields = dict(
        time_col="week", target_col="sales", exog_cols=EXOG, freq="W-SUN",
        fill_missing="interpolate", horizon=HORIZON, holdout=HORIZON, refit=True,
        season_length=None, windows=1, fallback=None,
    )  # fmt: skip
    fields.update(changes)
    return FitSpec.for_template(template, template.validate_params(params or {}), **fields)


def split(frame: pd.DataFrame, steps: int = HORIZON) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History, and the future rows (time and exogenous columns) of the last ``steps`` periods."""
    history = frame.iloc[:-steps].reset_index(drop=True)
    future = frame.iloc[-steps:][["week", *EXOG]].reset_index(drop=True)
    return history, future


# --- the built-ins ----------------------------------------------------------------------------


# (template, model.params, season length)
BUILTIN_CASES = [
    ("sklearn_lags", {}, 52),
    ("sklearn_lags", {"lags": [1, 2, 52], "fourier_terms": 0, "use_exog": False}, 52),
    ("sklearn_lags", {"estimator": "random_forest", "estimator_params": {"n_estimators": 10}}, 52),
    ("sklearn_lags", {"estimator": "extra_trees", "estimator_params": {"n_estimators": 5}}, 52),
    ("sklearn_lags", {"estimator": "sklearn.tree.DecisionTreeRegressor",
                      "estimator_params": {"max_depth": 3}}, 52),
    ("ets", {}, 52),
    ("ets", {"trend": None, "seasonal": None}, 52),
    ("ets", {"trend": "mul", "seasonal": "mul"}, 4),
    ("ets", {"seasonal": "add"}, 1),
    ("seasonal_naive", {}, 52),
    ("seasonal_naive", {"season_length": 4}, 52),
]  # fmt: skip


@pytest.mark.parametrize(("name", "params", "season_length"), BUILTIN_CASES)
def test_builtin_trains_and_predicts_one_value_per_future_row(weekly, name, params, season_length):
    template = load_template(name)
    context = context_for(template, params, season_length=season_length)
    history, future = split(weekly)
    model = template.train(history, context)
    predictions = np.asarray(template.predict(model, history, future, context), dtype=float)
    assert predictions.shape == (HORIZON,)
    assert np.isfinite(predictions).all()


@pytest.mark.parametrize(("name", "params", "season_length"), BUILTIN_CASES)
def test_builtin_fits_through_fit_entity(weekly, name, params, season_length):
    template = load_template(name)
    fit = fit_entity(weekly, KEYS, spec_for(template, params, season_length=season_length))
    assert set(fit.metrics) == {"mae", "rmse", "smape", "mase", "wape", "bias"}
    assert fit.observations == len(weekly)
    assert fit.holdout_start == weekly["week"].iloc[-HORIZON]
    assert fit.trained_until == weekly["week"].iloc[-1]
    forecast = fit.model.forecast()
    assert len(forecast) == HORIZON
    assert forecast["week"].iloc[0] == weekly["week"].iloc[-1] + pd.Timedelta(weeks=1)


def test_sklearn_lags_fits_a_good_model(weekly):
    fit = fit_entity(weekly, KEYS, spec_for(load_template("sklearn_lags"), {"lags": 4}))
    assert fit.metrics["mase"] < 1.0  # beats the in-sample naive forecast


@pytest.mark.parametrize("use_exog", [True, False])
def test_sklearn_lags_uses_exogenous_columns_when_asked(weekly, use_exog):
    template = load_template("sklearn_lags")
    history, future = split(weekly)
    dearer = future.assign(price=future["price"] * 2)
    context = context_for(template, {"use_exog": use_exog, "lags": 4})
    model = template.train(history, context)
    base = template.predict(model, history, future, context)
    moved = template.predict(model, history, dearer, context)
    assert (not np.allclose(base, moved)) is use_exog


def test_sklearn_lags_adds_weekdays_for_daily_data():
    days = pd.date_range("2024-01-01", periods=70, freq="D")
    sales = 100.0 + 50.0 * (days.dayofweek >= 5)  # busy weekends
    frame = pd.DataFrame({"week": days, "sales": sales, "price": 1.0, "deal": 0.0})
    template = load_template("sklearn_lags")
    params = {"estimator": "linear", "lags": [1], "fourier_terms": 0, "use_exog": False}
    context = context_for(template, params, freq="D", season_length=7)
    history, future = split(frame, 7)
    model = template.train(history, context)
    assert model.weekdays is True
    # A lag of one alone cannot tell Saturday from Friday; the weekday indicators can.
    predictions = template.predict(model, history, future, context)
    np.testing.assert_allclose(predictions, sales[-7:], atol=1e-6)


def test_ets_explicit_season_needs_two_full_seasons(weekly):
    template = load_template("ets")
    with pytest.raises(
        EntityError,
        match=r"^series too short: 60 observed periods, needs at least 108 \(4 holdout \+ 104 for "
        r"template 'ets'\)",
    ):
        fit_entity(weekly, KEYS, spec_for(template, {"seasonal": "add"}))


def test_ets_forecasts_from_newer_history(weekly):
    template = load_template("ets")
    context = context_for(template)
    history, future = split(weekly, 8)
    model = template.train(history.iloc[:-4], context)
    predictions = template.predict(model, history, future, context)
    assert len(predictions) == 8
    assert np.isfinite(predictions).all()


def test_seasonal_naive_repeats_the_last_season(weekly):
    template = load_template("seasonal_naive")
    context = context_for(template, {"season_length": 4})
    history, future = split(weekly, 6)
    model = template.train(history, context)
    last = history["sales"].to_numpy()[-4:]
    np.testing.assert_array_equal(
        template.predict(model, history, future, context), np.concatenate([last, last[:2]])
    )


def test_seasonal_naive_repeats_the_last_value_of_a_short_history(weekly):
    template = load_template("seasonal_naive")
    context = context_for(template)  # season of 52 weeks, history of 10
    history, future = split(weekly.iloc[:13], 3)
    model = template.train(history, context)
    np.testing.assert_array_equal(
        template.predict(model, history, future, context), [history["sales"].iloc[-1]] * 3
    )


@pytest.mark.parametrize(
    ("name", "params", "season_length", "needed"),
    [
        ("sklearn_lags", {}, 52, 11),
        ("sklearn_lags", {"lags": [1, 52]}, 52, 55),
        ("ets", {}, 52, 6),
        ("ets", {"seasonal": "add"}, 52, 104),
        ("ets", {"seasonal": "mul"}, 2, 6),
        ("ets", {"seasonal": "add"}, 1, 6),
        ("seasonal_naive", {}, 52, 1),
    ],
)
def test_min_history(name, params, season_length, needed):
    template = load_template(name)
    assert (
        template.min_history(context_for(template, params, season_length=season_length)) == needed
    )


# --- parameters -------------------------------------------------------------------------------


def test_sklearn_lags_defaults():
    assert load_template("sklearn_lags").validate_params({}) == {
        "estimator": "ridge", "estimator_params": {}, "lags": [1, 2, 3, 4, 5, 6, 7, 8],
        "fourier_terms": 3, "use_exog": True, "transform": "none", "scale": False,
    }  # fmt: skip


@pytest.mark.parametrize(("lags", "expanded"), [(3, [1, 2, 3]), ([52, 1, 2, 1], [1, 2, 52])])
def test_lags_count_or_list(lags, expanded):
    assert load_template("sklearn_lags").validate_params({"lags": lags})["lags"] == expanded


@pytest.mark.parametrize(
    ("name", "typo", "suggestion"),
    [
        ("sklearn_lags", "lag", "lags"),
        ("sklearn_lags", "estimater", "estimator"),
        ("ets", "trnd", "trend"),
        ("seasonal_naive", "season_lenght", "season_length"),
    ],
)
def test_unknown_parameter_suggests_the_nearest(name, typo, suggestion):
    with pytest.raises(
        TemplateError,
        match=rf"^model\.params\.{typo}: unknown parameter of template '{name}'\. Hint: did you "
        rf"mean '{suggestion}'\? valid parameters: ",
    ):
        load_template(name).validate_params({typo: 1})


def test_unknown_parameter_without_a_close_match_lists_the_valid_ones():
    with pytest.raises(TemplateError) as caught:
        load_template("ets").validate_params({"colour": "red"})
    assert str(caught.value).endswith(
        "Hint: valid parameters: damped_trend, season_length, seasonal, trend."
    )


@pytest.mark.parametrize(
    ("lags", "reason"),
    [
        (0, "a lag count must be at least 1"),
        (-2, "a lag count must be at least 1"),
        ([], "lags must be a non-empty list of positive integers"),
        ([0, 1], "lags must be a non-empty list of positive integers"),
        ("abc", "lags must be a list of positive integers, a count N, 'season' or 'auto'"),
        (True, "lags must be a list of positive integers, a count N, 'season' or 'auto'"),
    ],
)
def test_bad_lags(lags, reason):
    with pytest.raises(
        TemplateError,
        match=rf"^model\.params\.lags: invalid value {re.escape(repr(lags))} for template "
        rf"'sklearn_lags': {reason}\.$",
    ):
        load_template("sklearn_lags").validate_params({"lags": lags})


@pytest.mark.parametrize("estimator", ["ridgee", "sklearn.nope.Thing", "NoDots"])
def test_unknown_estimator(estimator):
    with pytest.raises(
        TemplateError,
        match=rf"^model\.params\.estimator: invalid value '{re.escape(estimator)}' for template "
        rf"'sklearn_lags': unknown estimator '{re.escape(estimator)}'; use one of ridge, linear, "
        r"lasso, .* or a dotted class path\.$",
    ):
        load_template("sklearn_lags").validate_params({"estimator": estimator})


def test_estimator_that_is_not_a_regressor_class():
    with pytest.raises(
        TemplateError,
        match=r"^model\.params\.estimator: invalid value 'os\.path'.*: os\.path is not a regressor "
        r"class with fit and predict methods\.$",
    ):
        load_template("sklearn_lags").validate_params({"estimator": "os.path"})


def test_estimator_refusing_its_parameters():
    with pytest.raises(
        TemplateError,
        match=r"^model\.params\.estimator_params: invalid value \{'alphaa': 1\} for template "
        r"'sklearn_lags': Ridge refused estimator_params: .*unexpected keyword argument 'alphaa'",
    ):
        load_template("sklearn_lags").validate_params({"estimator_params": {"alphaa": 1}})


@pytest.mark.parametrize(
    ("name", "params", "key"),
    [
        ("sklearn_lags", {"fourier_terms": -1}, "fourier_terms"),
        ("ets", {"seasonal": "multiplicative"}, "seasonal"),
        ("seasonal_naive", {"season_length": 0}, "season_length"),
    ],
)
def test_out_of_range_parameters(name, params, key):
    with pytest.raises(TemplateError, match=rf"^model\.params\.{key}: invalid value "):
        load_template(name).validate_params(params)


def test_template_error_is_a_value_error():
    assert issubclass(TemplateError, ValueError)
    assert issubclass(TemplateError, ManyModelsError)


# --- finding and loading templates ------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_TEMPLATES)
def test_builtins_resolve_to_their_modules(name):
    source = resolve_template(name)
    assert source.module == f"manymodels.templates.{name}"
    assert source.text is None
    template = load_template(name)
    assert template.name == name
    assert not template.is_user_file


@pytest.mark.parametrize(
    ("spec", "suggestion"),
    [("sklearn_lag", "sklearn_lags"), ("etss", "ets"), ("seasonal", "seasonal_naive")],
)
def test_unknown_builtin_suggests_the_nearest(spec, suggestion):
    with pytest.raises(
        TemplateError,
        match=rf"^model\.template: '{spec}' is not a built-in template or a \.py file\. Hint: did "
        rf"you mean '{suggestion}'\? built-ins are sklearn_lags, ets, seasonal_naive, naive, "
        r"auto_ets, auto_arima, theta, croston\.$",
    ):
        resolve_template(spec)


def test_unknown_builtin_without_a_close_match():
    with pytest.raises(TemplateError) as caught:
        resolve_template("prophet")
    assert "did you mean" not in str(caught.value)
    assert str(caught.value).endswith(
        "Hint: built-ins are sklearn_lags, ets, seasonal_naive, naive, auto_ets, auto_arima, theta, "
        "croston."
    )


def test_missing_template_file(tmp_path):
    missing = tmp_path / "nope.py"
    with pytest.raises(
        TemplateError,
        match=rf"^model\.template: template file {re.escape(str(missing))} not found\. Hint: check "
        r"the path, or write a starter with 'manymodels new-template FILE'\.$",
    ):
        resolve_template(str(missing))


def test_user_file_is_read_with_its_code(write_template):
    path = write_template(
        """\
        def train(history, context):
            return 1

        def predict(model, history, future, context):
            return [0.0] * len(future)
        """
    )
    source = resolve_template(path)
    assert source.name == "my_template"
    assert source.path == path
    assert "def train" in source.text
    template = load_template(path)
    assert template.is_user_file
    assert load_template(path) is template  # cached per process


def test_template_digest_follows_the_code(write_template):
    body = "def train(h, c):\n    return 1\n\ndef predict(m, h, f, c):\n    return [0.0]\n"
    first = resolve_template(write_template(body, "a.py"))
    same = resolve_template(write_template(body, "b.py"))
    changed = resolve_template(write_template(body + "# edited\n", "c.py"))
    assert first.digest == same.digest != changed.digest


def test_syntax_error_reports_the_line(write_template):
    path = write_template(
        """\
        def train(history, context):
            return 1

        def predict(model, history, future, context)
            return []
        """,
        "broken.py",
    )
    with pytest.raises(
        TemplateError,
        match=rf"^{re.escape(path)}:4: syntax error in template: expected ':'\. Hint: fix the file",
    ):
        load_template(path)


def test_import_error_in_template(write_template):
    path = write_template("import no_such_module_for_manymodels\n", "imports.py")
    with pytest.raises(
        TemplateError,
        match=rf"^{re.escape(path)}: importing the template raised ModuleNotFoundError: No module "
        r"named 'no_such_module_for_manymodels'$",
    ):
        load_template(path)


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ("def predict(model, history, future, context):\n    return []\n", "train"),
        ("def train(history, context):\n    return 1\n", "predict"),
        ("train = 3\ndef predict(model, history, future, context):\n    return []\n", "train"),
    ],
)
def test_template_without_train_or_predict(write_template, body, missing):
    path = write_template(body, "incomplete.py")
    with pytest.raises(
        TemplateError,
        match=rf"^{re.escape(path)}: template has no function '{missing}'\. Hint: a template "
        r"defines train\(history, context\) and predict\(model, history, future, context\)",
    ):
        load_template(path)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "def train(history):\n    return 1\ndef predict(m, h, f, c):\n    return []\n",
            r"'train' must accept 2 positional arguments \(history, context\)\.",
        ),
        (
            "def train(h, c):\n    return 1\ndef predict(model, history, future):\n    return []\n",
            r"'predict' must accept 4 positional arguments \(model, history, future, context\)\.",
        ),
        (
            "def train(h, c, extra):\n    return 1\ndef predict(m, h, f, c):\n    return []\n",
            r"'train' must accept 2 positional arguments \(history, context\)\.",
        ),
    ],
)
def test_template_functions_with_the_wrong_arity(write_template, body, message):
    path = write_template(body, "arity.py")
    with pytest.raises(TemplateError, match=rf"^{re.escape(path)}: {message}$"):
        load_template(path)


def test_flexible_signatures_are_accepted(write_template):
    path = write_template(
        "def train(h, c, extra=1):\n    return 1\ndef predict(*args):\n    return [0.0]\n",
        "flexible.py",
    )
    assert load_template(path).name == "flexible"


def test_params_must_be_a_pydantic_model(write_template):
    path = write_template(
        "PARAMS = dict\ndef train(h, c):\n    return 1\ndef predict(m, h, f, c):\n    return []\n",
        "params_dict.py",
    )
    with pytest.raises(
        TemplateError, match=rf"^{re.escape(path)}: PARAMS must be a pydantic BaseModel subclass\.$"
    ):
        load_template(path)


def test_template_without_params_passes_params_through(write_template):
    path = write_template(
        "def train(h, c):\n    return 1\ndef predict(m, h, f, c):\n    return []\n", "no_params.py"
    )
    assert load_template(path).validate_params({"anything": 1}) == {"anything": 1}


# --- the starter template ---------------------------------------------------------------------


@pytest.fixture
def starter_file(write_template) -> str:
    return write_template(starter_template_text(), "starter_copy.py")


def test_starter_text_is_the_shipped_file():
    import manymodels.templates.starter as starter

    with open(starter.__file__, encoding="utf-8") as shipped:
        assert starter_template_text() == shipped.read()


def test_starter_loads_with_its_params(starter_file):
    template = load_template(starter_file)
    assert template.is_user_file
    assert template.validate_params({}) == {"alpha": 0.3, "trend_window": 8}
    assert template.min_history(context_for(template)) == 8


def test_starter_params_are_checked(starter_file):
    template = load_template(starter_file)
    with pytest.raises(TemplateError, match=r"^model\.params\.alpah: .*did you mean 'alpha'\?"):
        template.validate_params({"alpah": 0.5})
    with pytest.raises(TemplateError, match=r"^model\.params\.alpha: invalid value 2"):
        template.validate_params({"alpha": 2})


def test_starter_fits_through_fit_entity(weekly, starter_file):
    template = load_template(starter_file)
    fit = fit_entity(weekly, KEYS, spec_for(template, {"alpha": 0.5, "trend_window": 6}))
    assert np.isfinite(list(fit.metrics.values())).all()
    forecast = fit.model.forecast()
    assert len(forecast) == HORIZON
    assert np.isfinite(forecast["prediction"]).all()
    assert fit.model.template == "starter_copy"


# --- the contract, as fit_entity enforces it --------------------------------------------------


def test_series_too_short_for_the_template(weekly):
    template = load_template("sklearn_lags")
    with pytest.raises(
        EntityError,
        match=r"^series too short: 12 observed periods, needs at least 15 \(4 holdout \+ 11 for "
        r"template 'sklearn_lags'\); lower evaluation\.holdout or the template's lags, set "
        r"model\.fallback, or leave this entity out$",
    ):
        fit_entity(weekly.iloc[:12], KEYS, spec_for(template, {"lags": 8}))


def test_series_just_long_enough(weekly):
    template = load_template("sklearn_lags")
    fit = fit_entity(weekly.iloc[:15], KEYS, spec_for(template, {"lags": 8}))
    assert fit.observations == 15


def test_template_min_history_counts(weekly, starter_file):
    template = load_template(starter_file)
    with pytest.raises(EntityError, match=r"needs at least 24 \(4 holdout \+ 20 for template"):
        fit_entity(weekly.iloc[:20], KEYS, spec_for(template, {"trend_window": 20}))


PREDICT_BODIES = [
    ("return None", r"^predict\(\) returned None; it must return one number per future row$"),
    ("return [1.0] * (len(future) - 1)", r"^predict\(\) returned 3 values for 4 future rows; return one per row$"),
    ("return [1.0] * (len(future) + 2)", r"^predict\(\) returned 6 values for 4 future rows"),
    ("return [float('nan')] * len(future)", r"^predict\(\) returned 4 NaN or infinite values$"),
    ("return [1.0, 2.0, float('inf'), 4.0]", r"^predict\(\) returned 1 NaN or infinite values$"),
    ("return ['a'] * len(future)", r"^predict\(\) returned list that is not a sequence of numbers$"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "message"), PREDICT_BODIES)
def test_bad_predictions_fail_the_entity(weekly, write_template, body, message):
    path = write_template(
        f"def train(history, context):\n    return 1\n\n"
        f"def predict(model, history, future, context):\n    {body}\n",
        "bad_predict.py",
    )
    with pytest.raises(EntityError, match=message):
        fit_entity(weekly, KEYS, spec_for(load_template(path)))


def test_train_returning_none_fails_the_entity(weekly, write_template):
    path = write_template(
        "def train(history, context):\n    return None\n\n"
        "def predict(model, history, future, context):\n    return [0.0] * len(future)\n",
        "train_none.py",
    )
    with pytest.raises(
        EntityError, match=r"^train\(\) returned None; it must return the fitted model$"
    ):
        fit_entity(weekly, KEYS, spec_for(load_template(path)))


def test_what_a_template_raises_reaches_the_caller(weekly, write_template):
    path = write_template(
        "def train(history, context):\n    raise RuntimeError('singular matrix')\n\n"
        "def predict(model, history, future, context):\n    return [0.0] * len(future)\n",
        "train_raises.py",
    )
    with pytest.raises(RuntimeError, match="singular matrix"):
        fit_entity(weekly, KEYS, spec_for(load_template(path)))


def test_template_sees_a_clean_history_and_its_context(weekly, write_template):
    path = write_template(
        """\
        SEEN = {}

        def train(history, context):
            SEEN["columns"] = list(history.columns)
            SEEN["index"] = list(history.index[:3])
            SEEN["context"] = context
            return 1

        def predict(model, history, future, context):
            SEEN["future_columns"] = list(future.columns)
            return [0.0] * len(future)
        """,
        "spy.py",
    )
    template = load_template(path)
    shuffled = weekly.sample(frac=1.0, random_state=0)
    fit_entity(shuffled, KEYS, spec_for(template, refit=False))
    seen = template.module.SEEN
    assert seen["columns"] == ["week", "sales", *EXOG]
    assert seen["index"] == [0, 1, 2]
    assert seen["future_columns"] == ["week", *EXOG]
    assert seen["context"].keys == KEYS
    assert seen["context"].season_length == 52
    assert seen["context"].freq == "W-SUN"


@pytest.mark.parametrize("estimator", ["linear", "ridge", "lasso", "elastic_net",
                                       "sklearn.linear_model.PoissonRegressor", "gradient_boosting"])  # fmt: skip
def test_sklearn_lags_one_row_prediction_is_the_estimators_own(estimator):
    from manymodels.templates.sklearn_lags import _row_predictor, make_estimator

    rng = np.random.default_rng(0)
    features = rng.random((80, 6))
    target = features @ rng.random(6) + 3.0
    fitted = make_estimator(estimator, {}).fit(features, target)
    predict_row = _row_predictor(fitted)
    for row in rng.random((5, 6)):
        assert predict_row(row) == pytest.approx(float(fitted.predict(row[np.newaxis, :])[0]),
                                                 rel=1e-12, abs=1e-12)  # fmt: skip


@pytest.mark.parametrize(("rows", "expected"), [(60, [1, 2, 3, 52]), (520, list(range(1, 53)))])
def test_automatic_lags_keep_a_full_season_only_where_the_series_affords_it(rows, expected):
    from manymodels.templates.sklearn_lags import lags_of

    context = context_for(load_template("sklearn_lags"), {"lags": "auto"})
    assert lags_of(context, rows) == expected


def test_automatic_transform_differences_a_trend_but_not_a_stationary_series():
    from manymodels.templates.transforms import fit_transform

    rng = np.random.default_rng(3)
    trended = 100.0 + 2.0 * np.arange(120) + rng.normal(0, 3, 120)
    stationary = 100.0 + rng.normal(0, 3, 120)
    negative = stationary - 200.0
    assert (fit_transform(trended, "auto", False).log, fit_transform(trended, "auto", False).diff) \
        == (True, True)  # fmt: skip
    assert not fit_transform(stationary, "auto", False).diff
    assert not fit_transform(negative, "auto", False).log


def test_sklearn_lags_keeps_its_lags_and_transform_when_refit():
    # The specification chosen at the first backtest cutoff is the one every later fit uses,
    # so that the recorded backtest belongs to the registered model.
    template = load_template("sklearn_lags")
    weeks = pd.date_range("2024-01-07", periods=200, freq="W-SUN")
    rng = np.random.default_rng(5)
    trend = 50.0 + np.arange(200) * 0.8 + rng.normal(0, 2, 200)
    frame = pd.DataFrame({"week": weeks, "sales": trend, "price": 1.0, "deal": 0.0})
    context = context_for(template, {"lags": "auto", "transform": "auto"})
    model = template.train(frame.iloc[:80], context)
    refit = template.refit(model, frame, context)
    assert model.lags == refit.lags == [1, 2, 3, 52]  # 80 rows: too few for 52 lags
    assert (refit.transform.log, refit.transform.diff) == (model.transform.log, model.transform.diff)


def test_a_runaway_recursive_forecast_stays_within_reach_of_the_history():
    # Lag coefficients summing past one make a recursive forecast of log differences grow
    # without bound; seen on one orange juice series (a backtest MASE of ten million).
    from manymodels.templates.transforms import fit_transform

    history = np.array([90.0, 110.0, 100.0, 120.0, 95.0, 105.0])
    transform = fit_transform(history, "log1p_diff", False)
    runaway = transform.invert(np.full(30, 1.0), history)  # e^30 times the last value
    assert np.isfinite(runaway).all()
    logged = np.log1p(history)
    width = max(logged.max() - logged.min(), 0.1 * logged.max())
    assert np.log1p(runaway.max()) == pytest.approx(logged.max() + width)
    calm = transform.invert(np.zeros(4), history)
    assert calm == pytest.approx(np.full(4, history[-1]))


def test_auto_arima_refits_chosen_orders_where_the_default_estimation_fails():
    # statsforecast's conditional-sum-of-squares start leaves no finite residual for this
    # ARIMA(2,0,1) on 24 points of a random walk (three prison series failed so).
    from manymodels.templates._stats import StatsModel

    template = load_template("auto_arima")
    values = 330 + np.cumsum(np.random.default_rng(0).normal(0, 12, 24))
    quarters = pd.date_range("2010-01-01", periods=24, freq="QS-JAN")
    history = pd.DataFrame({"week": quarters, "sales": values, "price": 1.0, "deal": 0.0})
    context = context_for(template, freq="QS-JAN", season_length=4)
    spec = {"order": (2, 0, 1), "seasonal_order": (0, 0, 0), "season_length": 4,
            "include_mean": True, "include_drift": False}  # fmt: skip
    chosen = StatsModel(None, spec, quarters[-1])
    refit = template.refit(chosen, history, context)
    assert refit.spec == spec
    future = pd.DataFrame({"week": pd.date_range("2016-01-01", periods=4, freq="QS-JAN"),
                           "price": 1.0, "deal": 0.0})  # fmt: skip
    assert np.isfinite(template.predict(refit, history, future, context)).all()


def test_auto_ets_keeps_a_multiplicative_form_until_a_zero_arrives():
    from manymodels.templates import auto_ets

    rng = np.random.default_rng(4)
    t = np.arange(72)
    values = (100 + t) * (1 + 0.4 * np.sin(2 * np.pi * t / 12)) * rng.lognormal(0, 0.05, 72)
    frame = pd.DataFrame({"t": pd.date_range("2015-01-01", periods=72, freq="MS"), "y": values})
    context = TrainContext(keys={"id": "1"}, target_col="y", time_col="t", exog_cols=(),
                           freq="MS", horizon=12, season_length=12,
                           params={"model": "MAM", "damped": False, "season_length": None})  # fmt: skip
    model = auto_ets.train(frame, context)
    assert model.spec["model"] == "MAM"
    assert auto_ets.update(model, frame, context).spec["model"] == "MAM"

    with_zero = frame.assign(y=np.r_[values[:-1], 0.0])
    refit = auto_ets.update(model, with_zero, context)
    assert refit.spec["model"] == "AAA"
    future = pd.DataFrame({"t": pd.date_range("2021-01-01", periods=12, freq="MS")})
    assert np.isfinite(auto_ets.predict(refit, with_zero, future, context)).all()
