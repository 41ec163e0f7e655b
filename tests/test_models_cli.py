"""``manymodels models``: list, show, promote, rollback, prune, against a real registry.

One module-wide registry is filled by two real training jobs over four entities (so every
entity has versions 1 and 2, version 1 the champion); every test works on its own copy of
that work folder, so that tests that change the registry do not see each other's changes.
"""

from __future__ import annotations

import io
import json
import shutil
from typing import Any

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from manymodels.cli import main
from manymodels.naming import legacy_model_name, model_name
from tests.conftest import base_config

KEY_COLS = ["store_id", "brand"]
ENTITIES = [(1, "dominicks"), (1, "minute.maid"), (2, "dominicks"), (2, "minute.maid")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, oj_frame, dask_scheduler) -> dict[str, Any]:
    """Two training jobs of the same config: versions 1 (champion) and 2 of four entities."""
    from manymodels import config_from_dict, train
    from manymodels.data import write_partitioned

    root = tmp_path_factory.mktemp("models-cli")
    frame = oj_frame.rename(columns={"store": "store_id"})
    frame = frame[
        frame["store_id"].isin([1, 2]) & frame["brand"].isin(["dominicks", "minute.maid"])
    ]
    write_partitioned(frame, str(root / "data"), KEY_COLS, basename="part")
    raw = base_config(root / "data", root / "work", compute={"scheduler": dask_scheduler})
    raw["data"]["partition_by"] = KEY_COLS
    config = config_from_dict(raw)
    first, second = train(config), train(config)
    assert first.trained == second.trained == len(ENTITIES)
    return {"root": root, "raw": raw, "first": first.job_id, "second": second.job_id,
            "results": (first, second)}  # fmt: skip


@pytest.fixture
def workspace(trained, tmp_path) -> dict[str, Any]:
    """A copy of the trained work folder, its config file, and a client on its registry."""
    from mlflow import MlflowClient

    work = tmp_path / "work"
    shutil.copytree(trained["root"] / "work", work)
    raw = {**trained["raw"], "work_dir": str(work)}
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    return {**trained, "config": str(config_file),
            "client": MlflowClient(tracking_uri=uri, registry_uri=uri)}  # fmt: skip


def run(workspace: dict[str, Any], *args: str) -> Any:
    return CliRunner().invoke(main, ["models", args[0], "-c", workspace["config"], *args[1:]])


def name_of(store: int, brand: str) -> str:
    return model_name("oj", {"store_id": str(store), "brand": brand})


def champions(client) -> dict[str, int]:
    return {name_of(*entity): int(client.get_registered_model(name_of(*entity)).aliases["champion"])
            for entity in ENTITIES}  # fmt: skip


def versions(client) -> dict[str, list[int]]:
    return {name_of(*entity): sorted(int(v.version) for v in
                                     client.search_model_versions(f"name = '{name_of(*entity)}'"))
            for entity in ENTITIES}  # fmt: skip


# --- names ------------------------------------------------------------------------------------


def test_models_have_readable_names(workspace):
    names = {model.name for model in workspace["client"].search_registered_models()}
    assert names == {"oj.store_id=1.brand=dominicks", "oj.store_id=1.brand=minute~2Emaid",
                     "oj.store_id=2.brand=dominicks", "oj.store_id=2.brand=minute~2Emaid"}  # fmt: skip


def name_models_the_older_way(client) -> None:
    """Rename every model to the name an earlier release gave it."""
    for store, brand in ENTITIES:
        legacy = legacy_model_name("oj", {"store_id": str(store), "brand": brand})
        client.rename_registered_model(name_of(store, brand), legacy)
    assert {m.name for m in client.search_registered_models()} == {
        "oj.store_5Fid=1.brand=dominicks", "oj.store_5Fid=1.brand=minute_2Emaid",
        "oj.store_5Fid=2.brand=dominicks", "oj.store_5Fid=2.brand=minute_2Emaid",
    }  # fmt: skip


def test_registry_of_the_older_naming_is_renamed_and_keeps_working(workspace):
    client = workspace["client"]
    name_models_the_older_way(client)
    from manymodels import forecast, load_config

    result = forecast(load_config(workspace["config"]))
    assert result.forecast == len(ENTITIES) and result.without_model == 0
    assert champions(client) == dict.fromkeys(champions(client), 1)
    assert versions(client) == {name_of(*entity): [1, 2] for entity in ENTITIES}


def test_retrain_finds_the_champions_of_a_registry_of_the_older_naming(workspace):
    from manymodels import load_config, retrain

    client = workspace["client"]
    name_models_the_older_way(client)
    result = retrain(load_config(workspace["config"]))
    # Unchanged data: every champion was found under its renamed model and nothing retrained.
    assert (result.skipped, result.trained) == (len(ENTITIES), 0)
    assert {m.name for m in client.search_registered_models()} == {
        name_of(*entity) for entity in ENTITIES
    }
    assert versions(client) == {name_of(*entity): [1, 2] for entity in ENTITIES}


def test_models_commands_find_models_of_the_older_naming_and_rename_nothing(workspace):
    client = workspace["client"]
    name_models_the_older_way(client)
    legacy = "oj.store_5Fid=1.brand=minute_2Emaid"
    out = run(workspace, "promote", "store_id=1", "brand=minute.maid")
    assert out.exit_code == 0, out.output
    assert client.get_registered_model(legacy).aliases == {"champion": 2}
    assert (
        run(workspace, "rollback", "store_id=1", "brand=minute.maid", "--version", "7").exit_code
        == 2
    )
    listed = json.loads(run(workspace, "list", "--format", "json").output)
    assert len(listed) == len(ENTITIES) and legacy in {row["model_name"] for row in listed}
    assert len({m.name for m in client.search_registered_models()} & {legacy}) == 1


def test_train_summaries_say_which_new_versions_became_champion(trained):
    from manymodels.report import champion_line

    first, second = trained["results"]
    assert champion_line(first) == "4 new versions; 4 became champion (4 first version)"
    assert champion_line(second) == (
        "4 new versions; 0 became champion, 4 did not: champion kept; promote with "
        f"'manymodels models promote --job {second.job_id}'"
    )


# --- list -------------------------------------------------------------------------------------


def test_list_filters_and_sorts_on_metrics(workspace):
    out = run(workspace, "list", "--where", "mase > 0", "--sort", "-mase", "--format", "json")
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert len(rows) == len(ENTITIES)
    assert [row["mase"] for row in rows] == sorted((row["mase"] for row in rows), reverse=True)
    client = workspace["client"]
    for row in rows:
        tags = client.get_model_version(row["model_name"], "1").tags
        assert row["mase"] == pytest.approx(float(tags["manymodels.metric.mase"]))
        assert row["champion"] == 1 and row["versions"] == 2
        assert row["job_id"] == workspace["first"]


def test_list_ands_conditions_and_limits(workspace):
    everything = pd.read_csv(io.StringIO(run(workspace, "list", "--format", "csv").output))
    median = everything["mase"].median()
    out = run(workspace, "list", "--where", f"mase <= {median}", "--where", "brand = dominicks",
              "--sort", "mase", "--limit", "1", "--format", "csv")  # fmt: skip
    rows = pd.read_csv(io.StringIO(out.output))
    wanted = everything[(everything["mase"] <= median) & (everything["brand"] == "dominicks")]
    assert len(rows) == 1
    assert rows["model_name"].iloc[0] == wanted.sort_values("mase")["model_name"].iloc[0]


def test_list_prints_a_table(workspace):
    out = run(workspace, "list", "--sort", "model_name")
    assert out.exit_code == 0, out.output
    assert "4 models" in out.output and "store_id=1.brand=minute~2Emaid" in out.output


def test_an_empty_registry_lists_nothing(trained, tmp_path):
    raw = {**trained["raw"], "work_dir": str(tmp_path / "empty")}
    config_file = tmp_path / "empty.yaml"
    config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = CliRunner().invoke(main, ["models", "list", "-c", str(config_file), "--where",
                                    "mase > 1", "--format", "json"])  # fmt: skip
    assert out.exit_code == 0 and json.loads(out.output) == []


@pytest.mark.parametrize(
    ("where", "message"),
    [("mase >", "expected FIELD OP VALUE"), ("mase", "expected FIELD OP VALUE"),
     ("masee > 1", "did you mean 'mase'"), ("mase >> 1", "'>>' is no operator"),
     ("mase > high", "mase holds numbers and 'high' is not one")],
)  # fmt: skip
def test_malformed_where_is_one_line_and_exit_2(workspace, where, message):
    out = run(workspace, "list", "--where", where)
    assert out.exit_code == 2
    assert message in out.output and len(out.output.strip().splitlines()) == 1


# --- show -------------------------------------------------------------------------------------


def test_show_gives_versions_aliases_metrics_and_backtests(workspace):
    out = run(workspace, "show", "store_id=1", "brand=minute.maid", "--format", "json")
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)
    assert shown["model_name"] == "oj.store_id=1.brand=minute~2Emaid"
    assert shown["aliases"] == {"champion": 1}
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert [v["job_id"] for v in shown["versions"]] == [workspace["first"], workspace["second"]]
    assert all(v["mase"] >= 0 and v["data_fingerprint"] for v in shown["versions"])
    backtests = pd.DataFrame(shown["backtests"])
    assert set(backtests["version"]) == {1, 2}
    assert set(backtests["brand"]) == {"minute.maid"}
    assert set(backtests["store_id"].astype(str)) == {"1"}
    table = run(workspace, "show", "store_id=1", "brand=minute.maid")
    assert table.exit_code == 0 and "champion -> 1" in table.output


def test_show_of_an_unknown_entity_is_exit_2(workspace):
    out = run(workspace, "show", "store_id=9", "brand=minute.maid")
    assert out.exit_code == 2
    assert "no registered model for the entity store_id=9 brand=minute.maid" in out.output


# --- promote and rollback ---------------------------------------------------------------------


def test_promote_one_entity_to_its_newest_version(workspace):
    out = run(workspace, "promote", "store_id=2", "brand=dominicks")
    assert out.exit_code == 0, out.output
    expected = dict.fromkeys(champions(workspace["client"]), 1)
    expected[name_of(2, "dominicks")] = 2
    assert champions(workspace["client"]) == expected


def test_promote_a_job_with_a_dry_run_first(workspace):
    client = workspace["client"]
    dry = run(workspace, "promote", "--job", workspace["second"], "--dry-run")
    assert dry.exit_code == 0 and "would have moved champion of 4 models" in dry.output
    assert set(champions(client).values()) == {1}
    out = run(workspace, "promote", "--job", workspace["second"])
    assert out.exit_code == 0 and "moved champion of 4 models" in out.output
    assert set(champions(client).values()) == {2}


def test_rollback_a_job_returns_to_the_earlier_versions(workspace):
    client = workspace["client"]
    assert run(workspace, "promote", "--job", workspace["second"]).exit_code == 0
    out = run(workspace, "rollback", "--job", workspace["second"])
    assert out.exit_code == 0, out.output
    assert set(champions(client).values()) == {1}


def test_rollback_returns_to_the_champion_before_not_to_the_version_before(workspace):
    from manymodels import load_config, train

    client = workspace["client"]
    third = train(load_config(workspace["config"]))  # version 3, registered while 1 is champion
    name = name_of(1, "dominicks")
    assert client.get_model_version(name, "3").tags["manymodels.champion_before"] == "1"
    assert run(workspace, "promote", "--job", third.job_id).exit_code == 0
    assert set(champions(client).values()) == {3}
    one = run(workspace, "rollback", "store_id=1", "brand=dominicks")
    assert one.exit_code == 0 and f"{name}: champion version 3 -> version 1" in one.output
    out = run(workspace, "rollback", "--job", third.job_id)
    assert out.exit_code == 0 and "moved back champion of 3 models" in out.output
    assert set(champions(client).values()) == {1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["promote", "store_id=1", "brand=dominicks", "--version", "9"], "has no version 9"),
        (["rollback", "store_id=1", "brand=dominicks"], "no earlier version to roll back to"),
        (["rollback", "--job", "nosuchjob"], "job nosuchjob registered no version"),
        (["promote", "store_id=1"], "the entity's key brand is missing"),
        (["promote", "store_id=7", "brand=dominicks"], "no registered model for the entity"),
        (["prune", "store_id=1", "brand=dominicks", "--version", "1"], "has the alias champion"),
        (["prune", "--keep", "0"], "--keep must be at least 1"),
    ],
)  # fmt: skip
def test_bad_requests_are_one_line_exit_2_and_change_nothing(workspace, args, message):
    client = workspace["client"]
    before = (champions(client), versions(client))
    out = run(workspace, *args)
    assert out.exit_code == 2, out.output
    assert message in out.output and len(out.output.strip().splitlines()) == 1
    assert (champions(client), versions(client)) == before


# --- prune ------------------------------------------------------------------------------------


def test_prune_keeps_the_newest_and_every_aliased_version(workspace):
    client = workspace["client"]
    nothing = run(workspace, "prune", "--keep", "1")  # version 1 is the champion, 2 the newest
    assert nothing.exit_code == 0 and "deleted 0 versions" in nothing.output
    assert run(workspace, "promote", "store_id=1", "brand=dominicks").exit_code == 0
    dry = run(workspace, "prune", "--keep", "1", "--dry-run")
    assert "would have deleted 1 versions" in dry.output
    assert versions(client)[name_of(1, "dominicks")] == [1, 2]
    out = run(workspace, "prune", "--keep", "1")
    assert out.exit_code == 0 and f"{name_of(1, 'dominicks')}: version 1" in out.output
    expected = {name_of(*entity): [1, 2] for entity in ENTITIES}
    expected[name_of(1, "dominicks")] = [2]
    assert versions(client) == expected


def test_python_api_matches_the_commands(workspace):
    import manymodels

    config = manymodels.load_config(workspace["config"])
    rows = manymodels.list_models(config, where=["mase > 0"], sort=["-mase"], limit=2)
    assert len(rows) == 2 and rows["mase"].is_monotonic_decreasing
    moves = manymodels.promote_models(config, {"store_id": "1", "brand": "dominicks"},
                                      dry_run=True)  # fmt: skip
    assert [(m.old, m.new) for m in moves] == [(1, 2)]
    assert champions(workspace["client"])[name_of(1, "dominicks")] == 1


# --- stale ------------------------------------------------------------------------------------


def test_stale_by_age(workspace):
    recent = run(workspace, "stale", "--older-than", "1d", "--format", "json")
    assert recent.exit_code == 0 and json.loads(recent.output) == []
    everything = run(workspace, "stale", "--older-than", "0s", "--format", "json")
    rows = json.loads(everything.output)
    assert {row["model_name"] for row in rows} == {name_of(*entity) for entity in ENTITIES}
    assert {row["reason"] for row in rows} == {"older than 0s"}


def test_stale_finds_the_entities_whose_data_changed(workspace, trained, tmp_path):
    unchanged = run(workspace, "stale", "--changed", "--format", "json")
    assert unchanged.exit_code == 0, unchanged.output
    assert json.loads(unchanged.output) == []
    # New data for one entity: a copy of the dataset with one sales value changed.
    data = tmp_path / "data"
    shutil.copytree(trained["root"] / "data", data)
    part = next((data / "store_id=2" / "brand=dominicks").glob("*.parquet"))
    frame = pd.read_parquet(part)
    frame.loc[frame.index[0], "sales"] += 1.0
    frame.to_parquet(part, index=False)
    out = run(workspace, "stale", "--changed", "--set", f"data.path={data}", "--format", "csv")
    assert out.exit_code == 0, out.output
    rows = pd.read_csv(io.StringIO(out.output))
    assert list(rows["model_name"]) == [name_of(2, "dominicks")]
    assert list(rows["reason"]) == ["data changed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "give --older-than AGE"), (["--older-than", "30x"], "expected a number and a unit")],
)
def test_stale_needs_a_readable_question(workspace, args, message):
    out = run(workspace, "stale", *args)
    assert out.exit_code == 2 and message in out.output
