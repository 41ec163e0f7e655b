"""Scale mode (``tracking.registration: per_job``): one bundle version per job."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

import manymodels
from manymodels.tracking.aliases import CHAMPION

N_ENTITIES = 12


@pytest.fixture
def bundle_config(make_config):
    def make(**sections):
        tracking = {"experiment": "tests", "model_prefix": "oj", "registration": "per_job"}
        return make_config(tracking=tracking, compute={"batch_size": 5}, **sections)

    return make


def test_one_bundle_version_holds_every_entity(bundle_config, registry_of, oj_frame):
    config = bundle_config()
    result = manymodels.train(config)
    assert (result.trained, result.failed) == (N_ENTITIES, 0)

    registry = registry_of(config)
    assert set(registry.models()) == {"oj.bundle"}
    (version,) = registry.versions()
    assert version.version == 1 and version.tags["manymodels.entities"] == str(N_ENTITIES)
    assert registry.models()["oj.bundle"].aliases == {CHAMPION: 1}
    assert set(result.entities["model_version"]) == {1}

    bundle = mlflow.pyfunc.load_model("models:/oj.bundle@champion")
    wanted = pd.DataFrame({"store": ["1", "4"], "brand": ["dominicks", "tropicana"]})
    predicted = bundle.predict(wanted)
    assert len(predicted) == 2 * config.horizon
    assert set(zip(predicted["store"], predicted["brand"], strict=True)) == {
        ("1", "dominicks"),
        ("4", "tropicana"),
    }
    assert np.isfinite(predicted["prediction"]).all()


def test_bundle_member_matches_the_forecast_job(bundle_config):
    config = bundle_config()
    manymodels.train(config)
    forecast = manymodels.forecast(config)
    assert (forecast.forecast, forecast.failed) == (N_ENTITIES, 0)
    frame = pd.read_parquet(forecast.output)
    assert len(frame) == N_ENTITIES * config.horizon
    assert set(frame["model_name"]) == {"oj.bundle"}
    assert set(frame["model_version"]) == {1}


def test_bundle_forecasts_given_future_rows(bundle_config, oj_frame):
    config = bundle_config()
    manymodels.train(config)
    bundle = mlflow.pyfunc.load_model("models:/oj.bundle/1")
    future = oj_frame[oj_frame["sales"].isna() & (oj_frame["store"] == 2)]
    request = future.assign(store=future["store"].astype(str))[
        ["store", "brand", "week", "price", "deal"]
    ]
    predicted = bundle.predict(request.groupby(["store", "brand"]).head(config.horizon))
    assert len(predicted) == 3 * config.horizon


def test_second_training_gives_bundle_version_two(bundle_config, registry_of):
    config = bundle_config()
    manymodels.train(config)
    manymodels.train(config)
    registry = registry_of(config)
    assert sorted(ref.version for ref in registry.versions()) == [1, 2]
    assert registry.models()["oj.bundle"].aliases == {CHAMPION: 1}
    assert set(pd.read_parquet(manymodels.forecast(config, version=2).output)["model_version"]) == {
        2
    }


def test_retrain_bundle_keeps_the_better_model_of_each_entity(bundle_config, registry_of):
    naive = bundle_config(model={"template": "seasonal_naive", "params": {"season_length": 1}})
    manymodels.train(naive)
    result = manymodels.retrain(bundle_config())
    registry = registry_of(naive)

    assert registry.models()["oj.bundle"].aliases == {CHAMPION: 2}
    assert 0 < len(result.promoted) <= N_ENTITIES
    table = result.entities.set_index("model_name")
    from manymodels.artifacts.bundle import read_manifest

    source = next(ref.source for ref in registry.versions() if ref.version == 2)
    manifest = read_manifest(source).set_index("model_name")
    assert len(manifest) == N_ENTITIES
    for name, row in table.iterrows():
        template = manifest.loc[name, "manymodels.template"]
        assert template == ("sklearn_lags" if row["challenger_wins"] else "seasonal_naive")


def test_retrain_bundle_skips_unchanged_and_registers_no_new_bundle(bundle_config, registry_of):
    config = bundle_config()
    manymodels.train(config)
    result = manymodels.retrain(config)
    assert result.skipped == result.skipped_unread == N_ENTITIES
    from manymodels.artifacts.bundle import read_manifest

    # The champion bundle already holds every entity's model: nothing new to register.
    registry = registry_of(config)
    versions = {ref.version: ref for ref in registry.versions()}
    assert sorted(versions) == [1]
    assert registry.models()["oj.bundle"].aliases == {CHAMPION: 1}
    assert set(result.entities["model_version"]) == {1}
    assert len(read_manifest(versions[1].source)) == N_ENTITIES
    assert manymodels.forecast(config).forecast == N_ENTITIES


def test_a_retrain_copies_the_old_shards_of_unchanged_entities_whole(
    bundle_config, registry_of, oj_data
):
    from manymodels.artifacts.bundle import read_manifest
    from manymodels.artifacts.locations import local_path

    config = bundle_config()  # batch_size 5: three shards of the twelve entities
    manymodels.train(config)
    changed = sorted(oj_data.glob("store=*/brand=*/*.parquet"))[0]
    frame = pd.read_parquet(changed)
    frame.assign(sales=frame["sales"] * 1.5).to_parquet(changed, index=False)

    result = manymodels.retrain(config)

    assert (result.trained, result.skipped_unread) == (1, N_ENTITIES - 1)
    versions = {ref.version: ref for ref in registry_of(config).versions()}
    old, new = (read_manifest(versions[v].source).set_index("model_name") for v in (1, 2))
    # Every old shard holds a kept champion, so each was copied byte for byte, not re-pickled.
    shard_files = {v: {path.name: path.read_bytes() for path in
                       Path(local_path(versions[v].source)).rglob("*.pkl")} for v in (1, 2)}  # fmt: skip
    assert len(shard_files[1]) == 3
    assert set(shard_files[1].values()) <= set(shard_files[2].values())
    # The unchanged entities' models answer exactly as before; the changed one is new.
    entities = old.reset_index()[["store", "brand"]]
    before = mlflow.pyfunc.load_model("models:/oj.bundle/1").predict(entities)
    after = mlflow.pyfunc.load_model("models:/oj.bundle/2").predict(entities)
    # (The retrained entity's challenger may have lost: then its champion is kept too.)
    kept = int((new.loc[old.index, "manymodels.job_id"] == old["manymodels.job_id"]).sum())
    assert kept == N_ENTITIES - len(result.promoted) >= N_ENTITIES - 1
    both = before.merge(after, on=["store", "brand", "week"], suffixes=("_before", "_after"))
    assert len(both) == N_ENTITIES * config.horizon
    same = (both["prediction_before"] == both["prediction_after"]).groupby(
        [both["store"], both["brand"]]
    ).all()  # fmt: skip
    assert same.sum() == kept


def test_bundle_forecast_batches_stay_within_a_shard_and_the_batch_size():
    from manymodels.data import Partition
    from manymodels.jobs.forecast_models import _by_shard

    items = [
        (Partition((("store", str(index)),), (f"f{index}",), 1),
         {f"m{index}": (f"m{index}", 1, f"shards/{index % 2}.pkl#m{index}")})
        for index in range(10)
    ]  # fmt: skip

    batches = _by_shard(items, size=2)

    assert sorted(len(batch) for batch in batches) == [1, 1, 2, 2, 2, 2]
    for batch in batches:
        shards = {next(iter(refs.values()))[2].partition("#")[0] for _, refs in batch}
        assert len(shards) == 1
    assert sorted(p.keys for batch in batches for p, _ in batch) == sorted(p.keys for p, _ in items)
