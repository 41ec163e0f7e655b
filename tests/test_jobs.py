"""End-to-end jobs on a real Dask cluster, a real MLflow SQLite store and real Parquet files."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import manymodels
from manymodels.errors import DataError, RegistryError, TemplateError
from manymodels.naming import model_name
from manymodels.tracking.aliases import CHAMPION

N_ENTITIES = 12


def _names(frame: pd.DataFrame, prefix: str = "oj") -> set[str]:
    keys = frame[["store", "brand"]].drop_duplicates()
    return {
        model_name(prefix, {"store": str(s), "brand": b}) for s, b in keys.itertuples(index=False)
    }


def test_train_registers_one_loadable_champion_per_entity(make_config, registry_of, oj_frame):
    config = make_config()
    result = manymodels.train(config)

    assert (result.trained, result.failed, result.total) == (N_ENTITIES, 0, N_ENTITIES)
    registry = registry_of(config)
    models = registry.models()
    assert set(models) == _names(oj_frame)
    for name, record in models.items():
        assert record.aliases == {CHAMPION: 1}
        model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        predicted = model.predict(pd.DataFrame())
        assert len(predicted) == config.horizon
        assert np.isfinite(predicted["prediction"]).all()


def test_versions_carry_keys_lineage_and_metrics(make_config, registry_of):
    config = make_config()
    result = manymodels.train(config)
    versions = registry_of(config).versions()

    assert len(versions) == N_ENTITIES
    for ref in versions:
        assert ref.tags["manymodels.job_id"] == result.job_id
        assert ref.tags["manymodels.template"] == "sklearn_lags"
        assert len(ref.tags["manymodels.data_fingerprint"]) == 16
        assert float(ref.tags["manymodels.metric.mae"]) >= 0
        assert ref.name == model_name(
            "oj", {"store": ref.tags["store"], "brand": ref.tags["brand"]}
        )
        assert ref.run_id == result.run_id


def test_job_run_holds_config_metrics_and_tables(make_config):
    config = make_config()
    result = manymodels.train(config)
    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)

    assert run.info.status == "FINISHED"
    assert run.data.metrics["entities_trained"] == N_ENTITIES
    assert run.data.params["horizon"] == "4"
    artifacts = {item.path for item in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "entity_results.parquet", "failures.csv", "summary.json"} <= artifacts
    table = pd.read_parquet(mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path="entity_results.parquet"))  # fmt: skip
    assert len(table) == N_ENTITIES
    assert {"mae", "rmse", "smape", "mase", "model_version"} <= set(table.columns)


def test_second_training_gives_version_two_and_keeps_champion(make_config, registry_of):
    config = make_config()
    manymodels.train(config)
    manymodels.train(config)
    registry = registry_of(config)

    versions = registry.versions()
    assert len(versions) == 2 * N_ENTITIES
    assert {ref.version for ref in versions} == {1, 2}
    assert all(record.aliases[CHAMPION] == 1 for record in registry.models().values())


def test_forecast_writes_every_entity_atomically(make_config, oj_frame):
    config = make_config()
    manymodels.train(config)
    result = manymodels.forecast(config)

    assert (result.forecast, result.failed) == (N_ENTITIES, 0)
    frame = pd.read_parquet(result.output)
    assert len(frame) == N_ENTITIES * config.horizon
    assert set(frame.columns) >= {
        "store",
        "brand",
        "week",
        "prediction",
        "model_name",
        "model_version",
    }
    assert (frame.groupby(["store", "brand"], observed=True).size() == config.horizon).all()
    assert frame["model_version"].eq(1).all()
    last_sale = oj_frame.dropna(subset=["sales"])["week"].max()
    assert frame["week"].min() == last_sale + pd.Timedelta(weeks=1)
    leftovers = [p.name for p in Path(result.output).parent.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_forecast_by_version_and_missing_alias(make_config):
    config = make_config()
    manymodels.train(config)
    manymodels.train(config)
    by_version = manymodels.forecast(config, version=2)
    assert set(pd.read_parquet(by_version.output)["model_version"]) == {2}
    with pytest.raises(RegistryError, match="alias 'production'"):
        manymodels.forecast(config, alias="production")


def test_forecast_uses_known_future_prices(make_config, oj_frame):
    config = make_config()
    manymodels.train(config)
    frame = pd.read_parquet(manymodels.forecast(config).output)
    entity = frame[(frame["store"] == 1) & (frame["brand"] == "dominicks")].sort_values("week")
    future = oj_frame[(oj_frame["store"] == 1) & (oj_frame["brand"] == "dominicks")
                      & oj_frame["sales"].isna()].sort_values("week")  # fmt: skip
    model = mlflow.pyfunc.load_model("models:/oj.store=1.brand=dominicks@champion")
    expected = model.predict(future[["week", "price", "deal"]].head(config.horizon))
    np.testing.assert_allclose(entity["prediction"].to_numpy(), expected["prediction"].to_numpy())


def test_custom_template_file(make_config, registry_of, tmp_path):
    template = tmp_path / "mean_template.py"
    template.write_text(
        "import numpy as np\n"
        "def train(history, context):\n"
        "    return {'mean': float(history[context.target_col].tail(context.params['window']).mean())}\n"
        "def predict(model, history, future, context):\n"
        "    return np.full(len(future), model['mean'])\n"
    )
    config = make_config(model={"template": str(template), "params": {"window": 5}})
    result = manymodels.train(config)
    assert result.trained == N_ENTITIES

    loaded = mlflow.pyfunc.load_model(
        f"models:/{model_name('oj', {'store': '2', 'brand': 'minute.maid'})}@champion"
    )
    predicted = loaded.predict(pd.DataFrame())["prediction"]
    assert predicted.nunique() == 1
    versions = registry_of(config).versions()
    assert {ref.tags["manymodels.template"] for ref in versions} == {"mean_template"}


def test_failing_entity_is_isolated(make_config, registry_of, tmp_path):
    template = tmp_path / "fragile.py"
    template.write_text(
        "import numpy as np\n"
        "def train(history, context):\n"
        "    if context.keys['store'] == '2':\n"
        "        raise RuntimeError('store 2 is cursed')\n"
        "    return float(history[context.target_col].mean())\n"
        "def predict(model, history, future, context):\n"
        "    return np.full(len(future), model)\n"
    )
    config = make_config(model={"template": str(template)}, failures={"max_share": 0.5})
    result = manymodels.train(config)

    assert result.failed == 3 and result.trained == N_ENTITIES - 3
    assert not result.budget_exceeded
    failures = result.failures
    assert set(failures["store"]) == {"2"}
    assert set(failures["error"]) == {"store 2 is cursed"}
    assert set(failures["stage"]) == {"train"}
    names = set(registry_of(config).models())
    assert not any(".store=2." in name for name in names)
    assert len(names) == N_ENTITIES - 3


def test_failure_budget_sets_exit_status(make_config, tmp_path):
    template = tmp_path / "fragile.py"
    template.write_text(
        "def train(history, context):\n"
        "    if context.keys['brand'] == 'tropicana':\n"
        "        raise ValueError('no tropicana')\n"
        "    return 1.0\n"
        "def predict(model, history, future, context):\n"
        "    return [model] * len(future)\n"
    )
    config = make_config(model={"template": str(template)}, failures={"max_share": 0.1})
    result = manymodels.train(config)
    assert result.failed == 4 and result.budget_exceeded
    with pytest.raises(
        manymodels.JobError, match="4 of 12 entities failed, more than the 1 allowed"
    ):
        from manymodels.jobs.budget import require_within_budget

        require_within_budget(result, config)
    assert mlflow.MlflowClient().get_run(result.run_id).info.status == "FAILED"


@pytest.fixture
def short_data(oj_frame, tmp_path):
    """The OJ data with one series (store 4, tropicana) cut to its last 13 weeks."""
    from manymodels.data import write_partitioned

    short = oj_frame.copy()
    drop = (
        (short["store"] == 4)
        & (short["brand"] == "tropicana")
        & (short["week"] < short["week"].max() - pd.Timedelta(weeks=12))
    )
    write_partitioned(short[~drop], str(tmp_path / "short"), ["store", "brand"], basename="part")
    return tmp_path / "short"


def test_short_series_recorded_as_failure_without_a_fallback(make_config, short_data):
    config = make_config(data_path=short_data, failures={"max_share": 0.2},
                         model={"fallback": None})  # fmt: skip
    result = manymodels.train(config)
    failure = result.failures.iloc[0]
    assert (result.failed, failure["store"], failure["brand"]) == (1, "4", "tropicana")
    assert "series too short" in failure["error"]


def test_short_series_gets_the_fallback_tagged_and_forecast(make_config, short_data):
    config = make_config(data_path=short_data)
    result = manymodels.train(config)
    assert result.failed == 0
    rows = result.entities.set_index(["store", "brand"])
    short = rows.loc[("4", "tropicana")]
    assert (short["fallback"], short["winner"], short["template"]) == (True, "naive", "naive")
    assert not rows.drop(index=("4", "tropicana"))["fallback"].any()
    assert result.selection_summary()["fallbacks"] == 1
    forecasts = pd.read_parquet(manymodels.forecast(config).output)
    assert len(forecasts[(forecasts["store"] == 4) & (forecasts["brand"] == "tropicana")]) == 4


@pytest.mark.parametrize("template", ["ets", "seasonal_naive"])
def test_builtin_statistical_templates(make_config, template):
    config = make_config(model={"template": template, "params": {}})
    result = manymodels.train(config)
    assert result.trained == N_ENTITIES
    assert manymodels.forecast(config).forecast == N_ENTITIES


def test_tree_estimator_saves_and_loads(make_config):
    params = {"estimator": "gradient_boosting", "estimator_params": {"n_estimators": 20}, "lags": 4}
    config = make_config(model={"template": "sklearn_lags", "params": params})
    assert manymodels.train(config).trained == N_ENTITIES
    loaded = mlflow.pyfunc.load_model("models:/oj.store=1.brand=tropicana@champion")
    assert len(loaded.predict(pd.DataFrame())) == config.horizon


def test_embedded_default_local_cluster(tmp_path, oj_data):
    from tests.conftest import base_config

    config = manymodels.config_from_dict(
        base_config(oj_data, tmp_path / "work", compute={"n_workers": 2})
    )
    result = manymodels.train(config)
    assert result.trained == N_ENTITIES
    assert result.tracking_uri == f"sqlite:///{tmp_path / 'work' / 'mlflow.db'}"
    assert (tmp_path / "work" / "mlartifacts").is_dir()


class TestBadInputWritesNothing:
    """Bad input fails before the first write: no store, no registry entry, no output."""

    def _assert_nothing_written(self, config):
        work = Path(config.work_dir)
        assert not (work / "mlflow.db").exists()
        assert not Path(config.forecast.output).exists()

    def test_missing_data_path(self, make_config, tmp_path):
        config = make_config(data_path=tmp_path / "nowhere")
        with pytest.raises(DataError, match=r"data.path: .*nowhere does not exist"):
            manymodels.train(config)
        self._assert_nothing_written(config)

    def test_empty_dataset(self, make_config, tmp_path):
        (tmp_path / "empty").mkdir()
        config = make_config(data_path=tmp_path / "empty")
        with pytest.raises(DataError, match="no Parquet files under"):
            manymodels.train(config)
        self._assert_nothing_written(config)

    @pytest.mark.parametrize(
        ("section", "message"),
        [
            ({"time_col": "date"}, "data.time_col: column 'date' is not in the data"),
            ({"target_col": "units"}, "data.target_col: column 'units' is not in the data"),
            ({"exog_cols": ["promo"]}, "data.exog_cols: column 'promo' is not in the data"),
            (
                {"partition_by": ["store"]},
                "data.partition_by: .* is partitioned by \\['store', 'brand'\\]",
            ),
        ],
    )
    def test_missing_columns(self, make_config, section, message):
        config = make_config(data=section)
        with pytest.raises(DataError, match=message):
            manymodels.train(config)
        self._assert_nothing_written(config)

    def test_unknown_template(self, make_config):
        config = make_config(model={"template": "sklearn_lag"})
        with pytest.raises(TemplateError, match="did you mean 'sklearn_lags'"):
            manymodels.train(config)
        self._assert_nothing_written(config)

    def test_bad_template_parameter(self, make_config):
        config = make_config(model={"template": "sklearn_lags", "params": {"lag": 3}})
        with pytest.raises(
            TemplateError, match="model.params.lag: unknown parameter.*did you mean 'lags'"
        ):
            manymodels.train(config)
        self._assert_nothing_written(config)

    def test_forecast_before_training(self, make_config):
        config = make_config()
        with pytest.raises(
            RegistryError, match="has alias 'champion'.*run 'manymodels train' first"
        ):
            manymodels.forecast(config)
        assert not Path(config.forecast.output).exists()


def test_retrain_moves_champion_only_where_challenger_wins(make_config, registry_of, oj_data):
    baseline = make_config(model={"template": "seasonal_naive", "params": {"season_length": 1}})
    manymodels.train(baseline)
    better = make_config()
    result = manymodels.retrain(better)

    registry = registry_of(better)
    models = registry.models()
    promoted = set(result.promoted)
    assert result.trained == N_ENTITIES
    assert promoted, "a lag regression should beat the naive forecast somewhere"
    table = result.entities.set_index("model_name")
    for name, record in models.items():
        row = table.loc[name]
        assert row["champion_mase"] >= 0
        if name in promoted:
            assert record.aliases == {CHAMPION: 2}
            assert row["mase"] < row["champion_mase"]
        else:
            assert record.aliases == {CHAMPION: 1, "challenger": 2}
            assert row["mase"] >= row["champion_mase"]


def test_retrain_skips_unchanged_entities(make_config, oj_data, oj_frame):
    from manymodels.data import write_partitioned

    config = make_config()
    first = manymodels.train(config).entities.set_index("store")
    changed = oj_frame.copy()
    mask = (changed["store"] == 3) & (changed["brand"] == "dominicks") & changed["sales"].notna()
    changed.loc[mask, "sales"] *= 1.5
    shutil.rmtree(oj_data)
    write_partitioned(changed, str(oj_data), ["store", "brand"], basename="part")
    result = manymodels.retrain(config)
    assert result.skipped == N_ENTITIES - 1
    assert result.trained == 1
    retrained = result.entities[result.entities["status"] == "ok"]
    assert retrained["store"].tolist() == ["3"]
    # Revised values in the same holdout window: the champion is scored again on them, not
    # credited with the metrics it had on the old values.
    recorded = first.loc["3"]
    recorded = recorded[recorded["brand"] == "dominicks"]["mae"].item()
    assert retrained["champion_mae"].item() != pytest.approx(recorded)

    forced = manymodels.retrain(config, force=True)
    assert (forced.trained, forced.skipped) == (N_ENTITIES, 0)
    # Forced challengers are still compared with their champions on the same holdout.
    assert forced.entities["champion_mase"].notna().all()
    assert forced.entities["challenger_wins"].notna().all()


@pytest.mark.parametrize("registration", ["per_entity", "per_job"])
def test_retrain_counts_new_entities_apart_from_kept_champions(
    make_config, oj_data, oj_frame, registration, capsys
):
    from manymodels.data import write_partitioned
    from manymodels.report import print_train_summary

    config = make_config(tracking={"registration": registration})
    manymodels.train(config)
    newcomer = oj_frame[(oj_frame["store"] == 3) & (oj_frame["brand"] == "dominicks")].copy()
    newcomer["store"] = "99"
    write_partitioned(newcomer, str(oj_data), ["store", "brand"], basename="part")

    result = manymodels.retrain(config, force=True)
    print_train_summary(result)

    assert result.trained == N_ENTITIES + 1
    assert result.first_champions == ["oj.store=99.brand=dominicks"]
    kept = N_ENTITIES - len(result.promoted)
    printed = " ".join(capsys.readouterr().out.split())
    if registration == "per_job":
        assert (
            f"champion moved for {len(result.promoted)} entities; {kept} challengers kept the old "
            "champion; 1 new entities got their first champion"
        ) in printed
        return
    assert result.champion_counts() == {
        "new": N_ENTITIES + 1, "first": 1, "promoted": len(result.promoted), "kept": kept
    }  # fmt: skip
    assert f"{N_ENTITIES + 1} new versions; {len(result.promoted) + 1} became champion" in printed
    if kept:
        assert (
            f"{kept} did not: the champion scored as well or better (alias challenger); promote "
            f"with 'manymodels models promote --job {result.job_id}'"
        ) in printed


def test_a_partition_whose_registration_failed_is_not_finished_in_the_ledger(make_config):
    from manymodels.data import Partition
    from manymodels.jobs.training import _finished_partitions

    config = make_config()
    batch = [Partition((("store", "1"), ("brand", "a")), ("x",), 1),
             Partition((("store", "2"), ("brand", "a")), ("y",), 1)]  # fmt: skip
    rows = [{"store": "1", "brand": "a", "status": "ok"},
            {"store": "2", "brand": "a", "status": "failed", "stage": "register"}]  # fmt: skip

    assert _finished_partitions(batch, rows, config) == [batch[0].keys]


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk-transaction", "client-api"])
def test_both_registry_paths_write_the_same_registry(make_config, registry_of, bulk):
    config = make_config(
        tracking={"experiment": "tests", "model_prefix": "oj", "bulk_registry": bulk}
    )
    assert (registry_of(config).bulk is not None) == bulk
    manymodels.train(config)
    manymodels.train(config)
    result = manymodels.retrain(config, force=True)
    registry = registry_of(config)

    versions = registry.versions()
    assert len(versions) == 3 * N_ENTITIES
    assert {ref.version for ref in versions} == {1, 2, 3}
    for ref in versions:
        assert {"store", "brand", "manymodels.job_id", "manymodels.metric.mase"} <= set(ref.tags)
    models = registry.models()
    assert all(set(record.tags) >= {"store", "brand", "manymodels.entity_keys"}
               for record in models.values())  # fmt: skip
    for name, record in models.items():
        expected = {CHAMPION: 3} if name in result.promoted else {CHAMPION: 1, "challenger": 3}
        assert record.aliases == expected
    champions = registry.resolve(alias=CHAMPION)
    assert {name: ref.version for name, ref in champions.items()} == {
        name: record.aliases[CHAMPION] for name, record in models.items()
    }
    assert all(ref.tags["manymodels.job_id"] and ref.source for ref in champions.values())
    second = registry.resolve(version=2)
    assert sorted(second) == sorted(models) and {ref.version for ref in second.values()} == {2}
    loaded = mlflow.pyfunc.load_model(f"models:/{next(iter(models))}@champion")
    assert len(loaded.predict(pd.DataFrame())) == config.horizon


def test_auto_selects_per_entity_and_records_the_backtest(make_config, registry_of):
    config = make_config(model={"template": "auto", "params": {},
                                "candidates": [{"template": "naive"}, {"template": "auto_ets"},
                                               {"name": "ridge", "template": "sklearn_lags",
                                                "params": {"lags": 4}}],
                                "combine": 1})  # fmt: skip
    result = manymodels.train(config)
    assert result.trained == N_ENTITIES
    table = result.entities
    assert set(table["winner"]) <= {"naive", "auto_ets", "ridge"}
    assert {"mase_naive", "mase_auto_ets", "mase_ridge", "baseline_mase", "skill_mase",
            "coverage_80", "coverage_95", "windows", "filled_share", "selected_by"} <= set(table)
    # The winner's score is the best candidate's.
    best = table[["mase_naive", "mase_auto_ets", "mase_ridge"]].min(axis=1)
    assert np.allclose(table["mase"], best)
    summary = result.selection_summary()
    assert summary["scored_against_seasonal_naive"] == N_ENTITIES
    assert 0 <= summary["beats_seasonal_naive"] <= N_ENTITIES

    backtest = pd.read_parquet(mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path="backtest.parquet"))  # fmt: skip
    assert {"store", "brand", "cutoff", "week", "actual", "prediction", "candidate",
            "window"} <= set(backtest)  # fmt: skip
    assert set(backtest["candidate"]) == {"naive", "auto_ets", "ridge", "seasonal_naive"}
    per_entity = backtest.groupby(["store", "brand", "candidate"]).size()
    assert (per_entity == 3 * config.horizon).all()
    pd.testing.assert_frame_equal(
        result.backtest().sort_values(list(backtest.columns)).reset_index(drop=True),
        backtest.sort_values(list(backtest.columns)).reset_index(drop=True),
    )

    for ref in registry_of(config).versions():
        row = table[table["model_name"] == ref.name].iloc[0]
        assert ref.tags["manymodels.plan"] == "auto"
        assert ref.tags["manymodels.winner"] == row["winner"]
        assert ref.tags["manymodels.backtest_windows"] == "3"
        assert float(ref.tags["manymodels.metric.mase"]) == pytest.approx(row["mase"])
        assert "manymodels.margin.runner_up" in ref.tags
        assert "manymodels.margin.seasonal_naive" in ref.tags

    forecast = pd.read_parquet(manymodels.forecast(config).output)
    assert {"prediction", "lo-80", "hi-80", "lo-95", "hi-95"} <= set(forecast)
    assert (forecast["lo-95"] <= forecast["lo-80"]).all()
    assert (forecast["lo-80"] <= forecast["prediction"]).all()
    assert (forecast["prediction"] <= forecast["hi-80"]).all()
    assert (forecast["hi-80"] <= forecast["hi-95"]).all()


def test_future_exogenous_values_from_a_dataset_of_their_own(
    make_config, oj_frame, tmp_path
):
    from manymodels.data import write_partitioned

    history = oj_frame[oj_frame["sales"].notna()]
    plans = oj_frame[oj_frame["sales"].isna()].drop(columns=["sales"])
    write_partitioned(history, str(tmp_path / "history"), ["store", "brand"], basename="part")
    write_partitioned(plans, str(tmp_path / "plans"), ["store", "brand"], basename="part")
    together = make_config()  # the data itself carries the future rows
    manymodels.train(together)
    expected = pd.read_parquet(manymodels.forecast(together).output)

    apart = make_config(data_path=tmp_path / "history",
                        forecast={"future_path": str(tmp_path / "plans"),
                                  "output": str(tmp_path / "apart")})  # fmt: skip
    manymodels.train(apart)
    got = pd.read_parquet(manymodels.forecast(apart).output)
    columns = ["store", "brand", "week", "prediction", "lo-80", "hi-95"]
    order = ["store", "brand", "week"]
    pd.testing.assert_frame_equal(
        got[columns].sort_values(order).reset_index(drop=True),
        expected[columns].sort_values(order).reset_index(drop=True),
    )

    without = make_config(data_path=tmp_path / "history",
                          forecast={"output": str(tmp_path / "none")})  # fmt: skip
    with pytest.raises(manymodels.JobError, match=r"12 entities lack future values of deal, "
                                                  r"price for the forecast periods"):  # fmt: skip
        manymodels.forecast(without)
    assert not (tmp_path / "none").exists()
    carried = manymodels.forecast(make_config(
        data_path=tmp_path / "history", data={"future_exog": "carry_forward"},
        forecast={"output": str(tmp_path / "carried")},
    ))  # fmt: skip
    assert carried.carried_forward == N_ENTITIES
