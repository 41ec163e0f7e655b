"""The registry facade and its two backends: the same registry through either, read back by
MLflow's own client; the bulk path's guard, announced fallback and retry."""

from __future__ import annotations

import logging
import types
from pathlib import Path

import pytest
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from manymodels import config_from_dict, lineage
from manymodels.tracking import registry_bulk, registry_bulk_guard
from manymodels.tracking.aliases import CHALLENGER, CHAMPION
from manymodels.tracking.registry import Registry
from manymodels.tracking.registry_types import Registration
from manymodels.tracking.runs import open_job_run
from manymodels.tracking.store import client_for, ensure_experiment, open_tracking, resolve_target
from tests.conftest import base_config

ENTITIES = [{"store": str(store), "brand": brand} for store in (1, 2) for brand in ("a", "b_c")]


def _open(work_dir: Path) -> tuple[MlflowClient, str, str]:
    """An embedded store: its client, a new run's id and the run's artifact root."""
    client = client_for(resolve_target(None, None, str(work_dir)))
    experiment_id = ensure_experiment(client, "tests", None)
    run = client.create_run(experiment_id)
    return client, run.info.run_id, run.info.artifact_uri


def _registrations(artifact_uri: str, job: str) -> list[Registration]:
    return [
        Registration(
            name=f"oj.store={keys['store']}.brand={keys['brand']}", keys=keys,
            source=f"{artifact_uri}/models/{job}/{keys['store']}-{keys['brand']}",
            tags={lineage.JOB_ID: job, lineage.metric_tag("mae"): "1.5"},
        )  # fmt: skip
        for keys in ENTITIES
    ]


def _register_history(work_dir: Path, bulk: bool) -> tuple[MlflowClient, dict[str, str]]:
    """Two jobs, the champion alias removed from one model in between, and alias moves.

    Returns:
        The store's client, and the placeholders for its own run ids and artifact roots.
    """
    placeholders = {}
    for job in ("one", "two"):
        client, run_id, artifact_uri = _open(work_dir)
        placeholders.update({run_id: f"RUN-{job}", artifact_uri: f"ARTIFACTS-{job}"})
        registry = Registry(client, "oj", bulk=bulk)
        assert (registry.bulk is not None) == bulk
        if job == "two":
            client.delete_registered_model_alias("oj.store=2.brand=a", CHAMPION)
        batch = _registrations(artifact_uri, job)
        created = registry.register_many(batch, run_id, registry.models())
        expected = 1 if job == "one" else 2
        assert {getattr(ref, "version", ref) for ref in created.values()} == {expected}
    registry.set_aliases([("oj.store=1.brand=a", CHAMPION, 2),
                          ("oj.store=1.brand=b_c", CHALLENGER, 2)])  # fmt: skip
    # One tag replaced and one added on version 1; version 2 of the same model keeps its own.
    registry.set_version_tags([("oj.store=1.brand=a", 1, {lineage.JOB_ID: "retagged", "new": "x"}),
                               ("oj.store=2.brand=b_c", 2, {lineage.metric_tag("mae"): "2.0"})])  # fmt: skip
    return client, placeholders


def _read_back(client: MlflowClient, placeholders: dict[str, str]) -> dict[str, object]:
    """Everything MLflow's client reads back, with the store's own run ids and artifact roots
    replaced by placeholders."""

    def neutral(text: str) -> str:
        for own, placeholder in placeholders.items():
            text = text.replace(own, placeholder)
        return text

    models = {
        model.name: (dict(model.tags), dict(model.aliases))
        for model in client.search_registered_models("name LIKE 'oj.%'")
    }
    versions = {}
    for ref in client.search_model_versions("name LIKE 'oj.%'"):
        version = client.get_model_version(ref.name, ref.version)
        versions[(version.name, int(version.version))] = (
            dict(version.tags), neutral(version.source), neutral(version.run_id),
            version.status, version.current_stage, sorted(version.aliases or []),
            version.description, version.user_id,
        )  # fmt: skip
    return {"models": models, "versions": versions}


def test_both_backends_write_what_mlflow_reads_back_the_same(tmp_path: Path) -> None:
    bulk = _read_back(*_register_history(tmp_path / "bulk", bulk=True))
    client_api = _read_back(*_register_history(tmp_path / "client", bulk=False))

    assert bulk == client_api
    assert len(bulk["versions"]) == 2 * len(ENTITIES)
    aliases = {name: aliases for name, (_, aliases) in bulk["models"].items()}
    assert aliases["oj.store=1.brand=a"] == {CHAMPION: 2}
    assert aliases["oj.store=2.brand=a"] == {CHAMPION: 2}  # its champion had been removed
    assert aliases["oj.store=1.brand=b_c"] == {CHAMPION: 1, CHALLENGER: 2}
    assert aliases["oj.store=2.brand=b_c"] == {CHAMPION: 1}
    retagged, kept = (bulk["versions"][("oj.store=1.brand=a", n)][0] for n in (1, 2))
    assert retagged[lineage.JOB_ID] == "retagged" and retagged["new"] == "x"
    assert kept[lineage.JOB_ID] == "two" and "new" not in kept
    assert bulk["versions"][("oj.store=2.brand=b_c", 2)][0][lineage.metric_tag("mae")] == "2.0"
    tags, _ = bulk["models"]["oj.store=1.brand=b_c"]
    keys = '{"store": "1", "brand": "b_c"}'
    assert tags == {"store": "1", "brand": "b_c", lineage.ENTITY_KEYS: keys}


@pytest.mark.parametrize("bulk", [True, False])
def test_chosen_versions_come_back_with_their_own_tags_only(tmp_path: Path, bulk: bool) -> None:
    client, _ = _register_history(tmp_path, bulk=True)
    registry = Registry(client, "oj", bulk=bulk)
    wanted = [("oj.store=1.brand=a", 1), ("oj.store=2.brand=b_c", 2), ("oj.store=2.brand=a", 2)]

    refs = {(ref.name, ref.version): ref for ref in registry.versions(chosen=wanted)}
    assert sorted(refs) == sorted(wanted)
    assert refs[("oj.store=1.brand=a", 1)].tags[lineage.JOB_ID] == "retagged"
    assert refs[("oj.store=2.brand=b_c", 2)].tags[lineage.metric_tag("mae")] == "2.0"
    assert refs[("oj.store=2.brand=a", 2)].tags[lineage.JOB_ID] == "two"


def test_the_guard_accepts_mlflow_s_own_tables() -> None:
    from mlflow.store.model_registry.dbmodels import models as tables

    assert registry_bulk_guard.unwritable_columns(tables) is None


def _tables_with(mapped: str, *extra: sa.Column, without: str | None = None) -> object:
    """MLflow's registry table mappings, with one table's columns changed."""
    from mlflow.store.model_registry.dbmodels import models as tables

    original = getattr(tables, mapped).__table__
    columns = [sa.Column(c.name, c.type, nullable=c.nullable, primary_key=c.primary_key)
               for c in original.columns if c.name != without]  # fmt: skip
    changed = sa.Table(original.name, sa.MetaData(), *columns, *extra)
    names = dict(vars(tables))
    names[mapped] = types.SimpleNamespace(__table__=changed)
    return types.SimpleNamespace(**names)


def test_the_guard_refuses_a_table_without_a_column_it_writes() -> None:
    tables = _tables_with("SqlModelVersion", without="storage_location")
    assert registry_bulk_guard.unwritable_columns(tables) == (
        "model_versions has no columns ['storage_location']"
    )


def test_the_guard_refuses_a_table_with_a_required_column_it_does_not_write() -> None:
    owner = sa.Column("owner", sa.String(20), nullable=False)
    tables = _tables_with("SqlRegisteredModelAlias", owner)
    assert registry_bulk_guard.unwritable_columns(tables) == (
        "registered_model_aliases requires columns ['owner'] that the bulk path does not write"
    )


def test_a_fallback_is_announced_once_and_tagged_on_the_job_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, oj_data
) -> None:
    problem = "model_versions has no columns ['colour']"
    monkeypatch.setattr(registry_bulk_guard, "unwritable_columns", lambda tables: problem)
    monkeypatch.setattr(registry_bulk_guard, "_announced", set())
    config = config_from_dict(base_config(oj_data, tmp_path / "work"))
    with caplog.at_level(logging.WARNING, logger="manymodels"):
        session = open_tracking(config)
        open_tracking(config)
    assert session.registry.bulk is None
    assert session.registry.fallback is not None and problem in session.registry.fallback
    warnings = [record for record in caplog.records if "bulk_registry" in record.getMessage()]
    assert len(warnings) == 1 and problem in warnings[0].getMessage()

    job = open_job_run(session, config, "train", "digest", None, fresh=True)
    tags = session.client.get_run(job.run_id).data.tags
    assert problem in tags[lineage.REGISTRY_FALLBACK]


def test_no_fallback_is_announced_where_the_bulk_path_is_not_asked_for(tmp_path: Path) -> None:
    client, _, _ = _open(tmp_path)
    assert Registry(client, "oj", bulk=False).fallback is None
    assert Registry(client, "oj", bulk=True).fallback is None


def _mlflow_conflict(tmp_path: Path) -> MlflowException:
    """What MLflow's session raises when an insert clashes with an existing row."""
    client, _, _ = _open(tmp_path)
    client.create_registered_model("oj.taken")
    store = client._get_registry_client().store
    bulk = registry_bulk.BulkRegistry(store)
    table = bulk.tables.SqlRegisteredModel.__table__
    # The session commits, and so raises, as its block ends.
    with pytest.raises(MlflowException) as raised, bulk._write_session() as session:
        session.execute(sa.insert(table), [{"name": "oj.taken", "creation_time": 1}])
    return raised.value


def test_the_retry_sees_through_mlflow_s_wrapping(tmp_path: Path) -> None:
    conflict = _mlflow_conflict(tmp_path)
    assert registry_bulk.is_conflict(conflict)
    assert not registry_bulk.is_conflict(MlflowException("a bad request"))

    calls = []

    def clashes_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise conflict
        return "done"

    store = object.__new__(registry_bulk.BulkRegistry)
    assert store._retrying(clashes_once) == "done" and len(calls) == 2


def test_the_guard_checks_the_columns_the_bulk_path_really_writes(tmp_path: Path) -> None:
    client, run_id, artifact_uri = _open(tmp_path)
    bulk = registry_bulk.BulkRegistry(client._get_registry_client().store)
    rows: dict = {table: [] for table in bulk._order()}
    (registration, *_) = _registrations(artifact_uri, "one")
    bulk._new_rows(rows, registration, 1, run_id, 0, new_model=True, champion=True)

    written = {table.__name__: set(values[0]) for table, values in rows.items()}
    declared = registry_bulk.WRITTEN_COLUMNS
    assert written == {name: set(columns) for name, columns in declared.items()}
