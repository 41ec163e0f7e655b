"""Incremental retraining: unchanged partitions are skipped on the driver, unread.

Real Parquet files, the shared real Dask cluster and a real MLflow SQLite registry. That a
partition is not read is made observable by corrupting its files while keeping their listing
(same size, same modification time): a worker reading one would fail the entity.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

import manymodels
from manymodels import lineage
from manymodels.artifacts.bundle import bundle_name, read_manifest
from manymodels.data import discover_partitions
from manymodels.report import print_train_summary
from manymodels.tracking.aliases import CHAMPION

N_ENTITIES = 12


def _files(data: Path) -> list[Path]:
    """The dataset's files in discovery order (the first is the one validation reads)."""
    return sorted(data.glob("store=*/brand=*/*.parquet"))


def _revise(path: Path) -> None:
    """Rewrite a file with its sales raised by half: new content, new modification time."""
    table = pq.ParquetFile(path).read()
    frame = table.to_pandas()
    frame["sales"] = frame["sales"] * 1.5
    time.sleep(0.01)  # a modification time distinct from the original write's
    frame.to_parquet(path, index=False)


def _corrupt_keeping_listing(path: Path) -> None:
    """Overwrite a file with zeros of the same size and restore its modification time."""
    stat = path.stat()
    path.write_bytes(b"\0" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _touch(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


def _status(result, store: str, brand: str) -> str:
    table = result.entities
    return table[(table["store"] == store) & (table["brand"] == brand)]["status"].item()


def _keys(path: Path) -> tuple[str, str]:
    return path.parent.parent.name.split("=")[1], path.parent.name.split("=")[1]


def test_listing_signature_follows_files_not_the_dataset_root(oj_data: Path, tmp_path: Path):
    before = {p.keys: p.signature for p in discover_partitions(str(oj_data), ["store", "brand"])}
    moved = tmp_path / "moved"
    oj_data.rename(moved)
    after = {p.keys: p.signature for p in discover_partitions(str(moved), ["store", "brand"])}
    assert after == before and all(before.values())
    assert len(set(before.values())) == len(before)  # the keys make them unique

    first = _files(moved)[0]
    _touch(first)
    touched = {p.keys: p.signature for p in discover_partitions(str(moved), ["store", "brand"])}
    changed = {keys for keys in before if touched[keys] != before[keys]}
    assert changed == {(("store", _keys(first)[0]), ("brand", _keys(first)[1]))}


@pytest.mark.parametrize("registration", ["per_entity", "per_job"])
def test_unchanged_partitions_are_skipped_unread_and_a_changed_one_retrained(
    make_config, oj_data, registry_of, registration, capsys
):
    config = make_config(tracking={"registration": registration})
    manymodels.train(config)
    changed, *unchanged = _files(oj_data)
    _revise(changed)
    for path in unchanged:
        _corrupt_keeping_listing(path)

    result = manymodels.retrain(config)

    assert (result.trained, result.failed) == (1, 0)
    assert result.skipped == result.skipped_unread == N_ENTITIES - 1
    assert _status(result, *_keys(changed)) == "ok"
    assert all(_status(result, *_keys(path)) == "skipped" for path in unchanged)
    registry = registry_of(config)
    if registration == "per_entity":
        versions = registry.versions()
        assert len(versions) == N_ENTITIES + 1
        (new,) = [ref for ref in versions if ref.version == 2]
        assert new.tags[lineage.SOURCE_FINGERPRINT] and new.tags[lineage.PARTITION_ENTITIES] == "1"
    else:
        # The new bundle holds every entity: the unchanged ones' champions were carried unread.
        bundle = registry.models()[bundle_name("oj")]
        assert bundle.aliases[CHAMPION] == 2
        (ref,) = registry.versions(chosen=[(bundle.name, 2)])
        assert len(read_manifest(ref.source)) == N_ENTITIES

    # Nothing changed since: a second retrain dispatches nothing and says so in one line.
    again = manymodels.retrain(config)
    assert again.skipped == again.skipped_unread == N_ENTITIES
    assert len(registry_of(config).versions()) == len(registry.versions())
    capsys.readouterr()
    print_train_summary(again)
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert f"nothing changed, all {N_ENTITIES} entities skipped ({N_ENTITIES} without" in out


def test_no_op_retrain_records_its_check_in_a_run(make_config):
    config = make_config()
    trained = manymodels.train(config)

    result = manymodels.retrain(config)

    client = MlflowClient(config.tracking.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["entities_skipped_unread"] == N_ENTITIES
    assert run.data.metrics["entities_trained"] == 0
    # A record of the check, not of a job with results: the report still shows the train.
    logged = {artifact.path for artifact in client.list_artifacts(result.run_id)}
    assert "summary.json" in logged and "entity_results.parquet" not in logged
    assert manymodels.load_job(config).job_id == trained.job_id


def test_a_touched_file_with_the_same_rows_is_read_once_then_skipped_unread(
    make_config, oj_data, registry_of
):
    config = make_config()
    manymodels.train(config)
    touched = _files(oj_data)[3]
    _touch(touched)

    result = manymodels.retrain(config)

    # The listing changed, so a worker compared the rows: the same, so skipped...
    assert (result.trained, result.skipped, result.skipped_unread) == (0, N_ENTITIES,
                                                                       N_ENTITIES - 1)  # fmt: skip
    assert len(registry_of(config).versions()) == N_ENTITIES
    # ... and the champion now carries the new listing: the next retrain reads nothing.
    assert manymodels.retrain(config).skipped_unread == N_ENTITIES


def test_a_registry_without_source_fingerprints_falls_back_to_content_hashes(
    make_config, oj_data, registry_of
):
    config = make_config()
    manymodels.train(config)
    client = MlflowClient(config.tracking.uri)
    for ref in registry_of(config).versions():  # as a registry written before them
        for tag in (lineage.SOURCE_FINGERPRINT, lineage.PARTITION_ENTITIES):
            client.delete_model_version_tag(ref.name, str(ref.version), tag)
    _revise(_files(oj_data)[0])

    result = manymodels.retrain(config)

    assert (result.trained, result.skipped, result.skipped_unread) == (1, N_ENTITIES - 1, 0)
    again = manymodels.retrain(config)
    assert (again.trained, again.skipped_unread) == (0, N_ENTITIES)


def test_new_versions_without_force_is_refused_before_anything_runs(make_config):
    config = make_config()
    with pytest.raises(manymodels.ConfigError, match="'new_versions' parameter of retrain needs"):
        manymodels.retrain(config, new_versions=True)
    assert not Path(config.work_dir).exists()


def test_forced_retrain_of_an_identical_spec_compares_and_registers_only_when_asked(
    make_config, registry_of
):
    config = make_config()
    manymodels.train(config)

    forced = manymodels.retrain(config, force=True)

    assert (forced.trained, forced.skipped, forced.skipped_unread) == (0, N_ENTITIES, 0)
    assert forced.entities["champion_mase"].notna().all()
    assert forced.entities["mase"].notna().all()
    assert not forced.promoted
    assert len(registry_of(config).versions()) == N_ENTITIES

    renewed = manymodels.retrain(config, force=True, new_versions=True)

    assert renewed.trained == N_ENTITIES
    versions = registry_of(config).versions()
    assert sorted(ref.version for ref in versions) == [1] * N_ENTITIES + [2] * N_ENTITIES


def test_a_partition_is_skipped_only_when_all_its_entities_carry_its_fingerprint():
    from manymodels.data import Partition
    from manymodels.outcomes import Champion
    from manymodels.tasks.unchanged import source_fingerprint, unchanged_partitions

    partition = Partition((("store", "1"),), ("f.parquet",), 1, signature="listed")
    source = source_fingerprint("listed", "code", "params")

    def champion(count: int) -> Champion:
        tags = {lineage.SOURCE_FINGERPRINT: source, lineage.PARTITION_ENTITIES: str(count)}
        return Champion(1, "somewhere", tags)

    both = {"a": champion(2), "b": champion(2)}
    assert unchanged_partitions([partition], both, "code", "params") == {partition.keys: ["a", "b"]}
    # "b" has no champion (it failed, or is new): the partition must be read.
    assert unchanged_partitions([partition], {"a": champion(2)}, "code", "params") == {}
    # Other params, or a filesystem that gave no version for a file: not provably unchanged.
    assert unchanged_partitions([partition], both, "code", "other params") == {}
    unlisted = Partition(partition.keys, partition.files, 1, signature="")
    assert source_fingerprint("", "code", "params") == ""
    assert unchanged_partitions([unlisted], both, "code", "params") == {}


def test_the_work_left_is_estimated_from_the_champions_fit_times():
    from manymodels.data import Partition
    from manymodels.jobs.dispatch import estimated_seconds
    from manymodels.outcomes import Champion

    def partition(store: str) -> Partition:
        return Partition((("store", store),), (f"store={store}/f.parquet",), 1)

    def champion(store: str, seconds: str | None) -> Champion:
        tags = {"store": store, "item": "x"}
        if seconds is not None:
            tags[lineage.FIT_SECONDS] = seconds
        return Champion(1, "somewhere", tags)

    # Two entities (items) in store 1, one in store 2; store 3's entity predates fit times.
    champions = {"a": champion("1", "0.5"), "b": champion("1", "0.25"), "c": champion("2", "2.0"),
                 "d": champion("3", None)}  # fmt: skip
    assert estimated_seconds([partition("1")], champions, ["store"]) == 0.75
    assert estimated_seconds([partition("1"), partition("2")], champions, ["store"]) == 2.75
    # A partition without a recorded time (or without a champion) makes the cost unknown.
    assert estimated_seconds([partition("1"), partition("3")], champions, ["store"]) is None
    assert estimated_seconds([partition("4")], champions, ["store"]) is None
    assert estimated_seconds([partition("1")], {}, ["store"]) is None


_PID_TEMPLATE = """
import os
from pathlib import Path

import numpy as np


def train(history, context):
    # Which worker process trained this entity, one file per process.
    folder = Path(context.params["pids"])
    with open(folder / str(os.getpid()), "a") as log:
        log.write(str(len(history)) + "\\n")
    return 0.0


def predict(model, history, future, context):
    return np.full(len(future), model)
"""


@pytest.mark.parametrize("registration", ["per_entity", "per_job"])
def test_a_retrain_with_little_work_runs_in_one_task_on_one_worker(
    make_config, oj_data, registry_of, tmp_path, registration
):
    # On the embedded cluster (two workers): a retrain whose changed entities took
    # milliseconds to fit last time starts one worker and sends it one task.
    template, pids = tmp_path / "pid.py", tmp_path / "pids"
    template.write_text(_PID_TEMPLATE, encoding="utf-8")
    config = make_config(model={"template": str(template), "params": {"pids": str(pids)}},
                         compute={"n_workers": 2}, tracking={"registration": registration},
                         evaluation={"windows": 1})  # fmt: skip
    pids.mkdir()
    manymodels.train(config)
    champions = registry_of(config).versions()
    if registration == "per_entity":
        seconds = [float(ref.tags[lineage.FIT_SECONDS]) for ref in champions]
    else:
        (bundle,) = champions
        seconds = read_manifest(bundle.source)[lineage.FIT_SECONDS].astype(float).tolist()
    assert len(seconds) == N_ENTITIES and all(0 < value < 5 for value in seconds)
    for path in _files(oj_data)[:6]:
        _revise(path)
    for log in pids.iterdir():
        log.unlink()

    result = manymodels.retrain(config)

    assert (result.trained, result.failed) == (6, 0)
    (log,) = pids.iterdir()  # one worker process trained them all
    # Six challengers, each fit for its backtest window and refit, and six champions scored
    # on the same window.
    assert len(log.read_text().split()) == 6 * 3


def test_carried_partitions_travel_by_whole_old_shards_after_those_to_train(monkeypatch):
    from manymodels.data import Partition
    from manymodels.jobs import dispatch as planning
    from manymodels.outcomes import Champion

    partitions = [Partition((("store", str(i)),), (f"store={i}/f.parquet",), 10 + i)
                  for i in range(7)]  # fmt: skip
    # Stores 0-5 are unchanged, their champions in three old shards; store 6 changed.
    champions = {f"m{i}": Champion(1, f"file:///old/shards/{i // 2}.pkl#m{i}", {"store": str(i)})
                 for i in range(7)}  # fmt: skip
    carry = {partitions[i].keys: (f"m{i}",) for i in range(6)}
    dispatch = planning.Dispatch(partitions, carry=carry)

    assert dispatch.to_train == [partitions[6]]
    tasks = dispatch.tasks(champions, workers=2)
    assert tasks[0] == [partitions[6]]
    assert sorted(p.keys for task in tasks[1:] for p in task) == sorted(carry)
    # A task takes old shards whole, up to CARRIED_PER_TASK partitions.
    assert len(tasks) == 2
    monkeypatch.setattr(planning, "CARRIED_PER_TASK", 3)
    by_task = [{int(p.key_dict["store"]) // 2 for p in task}
               for task in dispatch.tasks(champions, workers=2)[1:]]  # fmt: skip
    assert by_task == [{0}, {1}, {2}]
