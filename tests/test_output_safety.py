"""Outputs never destroy what manymodels did not write, on real files, folders and jobs.

An output folder is replaced only when it is absent, empty, or carries the marker of an earlier
output; it may never overlap the input. A failed swap puts the earlier output back; a forecast
over its failure budget publishes nothing; the demo keeps out of folders it did not make.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import manymodels
import manymodels.outputs as outputs
import manymodels.prepare as preparing
from manymodels.demo import DEMO_MARKER, claim_workdir, run_demo
from manymodels.errors import ConfigError, DataError, JobError
from manymodels.outputs import OUTPUT_MARKER, check_output, replace_dir, staging_path
from manymodels.prepare import prepare

MARKER_TEXT = outputs._MARKER_TEXT


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (relative), with the bytes of each file (None for a folder)."""
    return {
        str(path.relative_to(root)): None if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def exactly(message: str) -> str:
    """A ``match`` pattern for this whole message and nothing else."""
    return f"^{re.escape(message)}$"


def marked_output(path: Path, **files: str) -> Path:
    """A folder as manymodels leaves an output: the marker and some files."""
    path.mkdir(parents=True)
    (path / OUTPUT_MARKER).write_text(MARKER_TEXT, encoding="utf-8")
    for name, text in files.items():
        (path / name).write_text(text, encoding="utf-8")
    return path


def staged(final: Path, **files: str) -> str:
    """A staging folder next to ``final`` holding the given files."""
    staging = Path(staging_path(str(final)))
    staging.mkdir()
    for name, text in files.items():
        (staging / name).write_text(text, encoding="utf-8")
    return str(staging)


def not_manymodels(what: str, path: Path) -> str:
    return (
        f"{what}: {path} is a folder that manymodels did not write (it has no "
        f"{OUTPUT_MARKER} file), and replacing it would delete what it holds. Hint: remove it "
        "yourself, or choose another folder."
    )


def overlaps(what: str, path: Path, relation: str, name: str, source: Path) -> str:
    return (
        f"{what}: {path} {relation} {name} {source}; replacing it would delete or corrupt that "
        f"input. Hint: choose another output folder, apart from {source}."
    )


# --- check_output -----------------------------------------------------------------------------


def test_absent_empty_and_marked_folders_may_be_replaced(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    marked_output(tmp_path / "earlier", **{"part-0.parquet": "x"})

    for name in ("absent", "empty", "earlier"):
        check_output(str(tmp_path / name), "out")


def test_an_unmarked_folder_is_refused(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine", encoding="utf-8")

    with pytest.raises(ConfigError, match=exactly(not_manymodels("out", precious))):
        check_output(str(precious), "out")
    assert snapshot(precious) == {"notes.txt": b"mine"}


def test_a_file_is_refused(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.write_text("mine", encoding="utf-8")

    expected = (
        f"out: {precious} is a file, and writing the output folder there would delete it. "
        "Hint: remove it yourself, or choose another folder."
    )
    with pytest.raises(ConfigError, match=exactly(expected)):
        check_output(str(precious), "out")
    assert precious.read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize(
    ("output", "relation"),
    [("data", "is"), ("data/out", "is inside"), (".", "contains"), ("data/../data", "is")],
)
def test_an_output_that_overlaps_an_input_is_refused(
    tmp_path: Path, output: str, relation: str
) -> None:
    source = tmp_path / "data"
    marked_output(source)  # marked, so only the overlap can refuse it
    path = str(tmp_path / output)

    with pytest.raises(
        ConfigError, match=exactly(overlaps("out", Path(path), relation, "data.path", source))
    ):
        check_output(path, "out", {"data.path": str(source)})


def test_a_symlink_does_not_hide_an_overlap(tmp_path: Path) -> None:
    source = tmp_path / "data"
    source.mkdir()
    (tmp_path / "alias").symlink_to(source)

    with pytest.raises(ConfigError, match="is inside data.path"):
        check_output(str(tmp_path / "alias" / "out"), "out", {"data.path": str(source)})


def test_a_sibling_of_the_input_is_apart(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    check_output(str(tmp_path / "data-forecasts"), "out", {"data.path": str(tmp_path / "data")})


# --- replace_dir ------------------------------------------------------------------------------


def test_replace_dir_marks_the_output_and_replaces_an_earlier_one(tmp_path: Path) -> None:
    final = tmp_path / "out"
    replace_dir(staged(final, **{"old.txt": "old"}), str(final))
    replace_dir(staged(final, **{"new.txt": "new"}), str(final))

    assert snapshot(final) == {OUTPUT_MARKER: MARKER_TEXT.encode(), "new.txt": b"new"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_replace_dir_refuses_an_unmarked_folder_and_moves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "notes.txt").write_text("mine", encoding="utf-8")
    staging = staged(final, **{"new.txt": "new"})

    with pytest.raises(ConfigError, match=exactly(not_manymodels("output", final))):
        replace_dir(staging, str(final))
    assert snapshot(final) == {"notes.txt": b"mine"}
    assert snapshot(Path(staging)) == {"new.txt": b"new"}


def test_replace_dir_without_a_staging_folder_leaves_the_output(tmp_path: Path) -> None:
    final = marked_output(tmp_path / "out", **{"old.txt": "old"})
    staging = staging_path(str(final))

    expected = (
        f"{staging}: the folder to publish as {final} does not exist; {final} was left as it was."
    )
    with pytest.raises(DataError, match=exactly(expected)):
        replace_dir(staging, str(final))
    assert snapshot(final) == {OUTPUT_MARKER: MARKER_TEXT.encode(), "old.txt": b"old"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_a_write_into_a_running_jobs_staging_stands(tmp_path: Path) -> None:
    staging = outputs.start_staging(str(tmp_path / "out"))

    def write() -> None:
        (Path(staging) / "part.parquet").write_text("rows", encoding="utf-8")

    assert outputs.write_while_open(staging, write)
    assert (Path(staging) / "part.parquet").exists()


def test_a_task_that_outlives_its_job_leaves_no_staging_behind(tmp_path: Path) -> None:
    staging = outputs.start_staging(str(tmp_path / "out"))

    def write_while_the_job_ends() -> None:
        # The job stops after the task looked (its folder is removed), then the task writes,
        # bringing the folder back.
        outputs.remove_dir(staging)
        (Path(staging) / "key=1").mkdir(parents=True)
        (Path(staging) / "key=1" / "part.parquet").write_text("rows", encoding="utf-8")

    assert not outputs.write_while_open(staging, write_while_the_job_ends)
    assert not Path(staging).exists()

    wrote = []
    assert not outputs.write_while_open(staging, lambda: wrote.append(1))
    assert wrote == [], "a task must not start writing into the folder of a job that ended"
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_a_failed_move_puts_the_earlier_output_back(tmp_path: Path) -> None:
    # A folder cannot be moved into itself: the second rename fails after the first succeeded.
    staging = tmp_path / "stage"
    staging.mkdir()
    (staging / "new.txt").write_text("new", encoding="utf-8")
    final = marked_output(staging / "out", **{"old.txt": "old"})

    with pytest.raises(shutil.Error, match="Cannot move a directory .* into itself"):
        replace_dir(str(staging), str(final))
    assert snapshot(final) == {OUTPUT_MARKER: MARKER_TEXT.encode(), "old.txt": b"old"}
    assert sorted(path.name for path in staging.iterdir()) == [OUTPUT_MARKER, "new.txt", "out"]


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem than ``tmp_path``, where a move must copy."""
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a filesystem of its own")
    folder = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="manymodels-test-"))
    yield folder
    shutil.rmtree(folder)


def test_a_half_copied_output_is_removed_and_the_earlier_one_put_back(
    tmp_path: Path, other_filesystem: Path
) -> None:
    # Across filesystems a move copies; a named pipe cannot be copied, so the copy stops half
    # done, leaving a partial new output where the earlier one was.
    staging = other_filesystem / "stage"
    staging.mkdir()
    (staging / "new.txt").write_text("new", encoding="utf-8")
    os.mkfifo(staging / "pipe")
    final = marked_output(tmp_path / "out", **{"old.txt": "old"})

    with pytest.raises(shutil.Error, match="is a named pipe"):
        replace_dir(str(staging), str(final))
    assert snapshot(final) == {OUTPUT_MARKER: MARKER_TEXT.encode(), "old.txt": b"old"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
    assert sorted(path.name for path in staging.iterdir()) == [OUTPUT_MARKER, "new.txt", "pipe"]


# --- prepare ----------------------------------------------------------------------------------


@pytest.fixture
def flat_csv(tmp_path: Path) -> Path:
    folder = tmp_path / "pdir"
    folder.mkdir()
    path = folder / "flat.csv"
    frame = pd.DataFrame({"store": [1, 1, 2], "week": ["2024-01-07"] * 3, "sales": [1.0, 2, 3]})
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("output", "relation"), [("pdir", "contains"), ("pdir/flat.csv", "is"), (".", "contains")]
)
def test_prepare_refuses_an_output_over_its_input(
    tmp_path: Path, flat_csv: Path, output: str, relation: str
) -> None:
    before = snapshot(tmp_path)
    path = tmp_path / output

    with pytest.raises(
        ConfigError, match=exactly(overlaps("--output", path, relation, "the input", flat_csv))
    ):
        prepare(str(flat_csv), ["store"], str(path))
    assert snapshot(tmp_path) == before


def test_prepare_refuses_an_output_inside_an_input_folder(tmp_path: Path, flat_csv: Path) -> None:
    before = snapshot(tmp_path)
    output = flat_csv.parent / "out"

    with pytest.raises(
        ConfigError,
        match=exactly(overlaps("--output", output, "is inside", "the input", flat_csv.parent)),
    ):
        prepare(str(flat_csv.parent), ["store"], str(output))
    assert snapshot(tmp_path) == before


def test_prepare_refuses_an_unrelated_folder(tmp_path: Path, flat_csv: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine", encoding="utf-8")
    before = snapshot(tmp_path)

    with pytest.raises(ConfigError, match=exactly(not_manymodels("--output", precious))):
        prepare(str(flat_csv), ["store"], str(precious))
    assert snapshot(tmp_path) == before


def test_prepare_replaces_its_own_earlier_output(tmp_path: Path, flat_csv: Path) -> None:
    output = tmp_path / "prepared"
    assert prepare(str(flat_csv), ["store"], str(output)) == 2
    flat_csv.write_text("store,week,sales\n7,2024-01-07,1.0\n", encoding="utf-8")

    assert prepare(str(flat_csv), ["store"], str(output)) == 1
    assert sorted(snapshot(output)) == [OUTPUT_MARKER, "store=7", "store=7/part-0.parquet"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pdir", "prepared"]


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "streamed"])
@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_prepare_of_a_file_without_rows_names_it_and_keeps_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_memory: bool, suffix: str
) -> None:
    if not in_memory:
        monkeypatch.setattr(preparing, "_IN_MEMORY_BYTES", 0)
    empty = tmp_path / f"empty.{suffix}"
    if suffix == "csv":
        empty.write_text("store,week,sales\n", encoding="utf-8")
    else:
        schema = pa.schema([("store", pa.int64()), ("week", pa.string()), ("sales", pa.float64())])
        pq.write_table(schema.empty_table(), empty)
    earlier = marked_output(tmp_path / "out", **{"old.txt": "old"})
    before = snapshot(tmp_path)

    expected = (
        f"{empty}: has no rows, so there is nothing to partition. Hint: check that it is the "
        "file you meant."
    )
    with pytest.raises(DataError, match=exactly(expected)):
        prepare(str(empty), ["store"], str(earlier))
    assert snapshot(tmp_path) == before


# --- forecast ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "relation"), [("data", "is"), ("data/forecasts", "is inside"), (".", "contains")]
)
def test_forecast_refuses_an_output_over_its_data_before_anything_runs(
    make_config, tmp_path: Path, oj_data: Path, output: str, relation: str
) -> None:
    path = tmp_path / output
    config = make_config(forecast={"output": str(path)})
    before = snapshot(tmp_path)

    expected = "config: " + overlaps("forecast.output", path, relation, "data.path", oj_data)
    with pytest.raises(ConfigError, match=exactly(expected)):
        manymodels.forecast(config)
    assert snapshot(tmp_path) == before  # not even the tracking store was created


def test_forecast_refuses_an_unrelated_folder_or_file(make_config, tmp_path: Path) -> None:
    config = make_config()
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    (tmp_path / "precious.txt").write_text("mine", encoding="utf-8")
    before = snapshot(tmp_path)

    with pytest.raises(ConfigError, match=exactly("config: " + not_manymodels("output", folder))):
        manymodels.forecast(config, output=str(folder))
    with pytest.raises(ConfigError, match=r"^config: output: .*precious.txt is a file, and"):
        manymodels.forecast(config, output=str(tmp_path / "precious.txt"))
    assert snapshot(tmp_path) == before


def test_forecast_over_the_failure_budget_keeps_the_previous_output(
    make_config, oj_data: Path
) -> None:
    import mlflow

    from manymodels.tracking.store import open_tracking

    config = make_config()
    manymodels.train(config)
    first = manymodels.forecast(config)
    output = Path(first.output)
    before = snapshot(output)
    # The last partition: the first one's footer is read when the job validates its inputs.
    victim = sorted(oj_data.rglob("*.parquet"))[-1]
    victim.write_bytes(b"not parquet")
    store, brand = (part.split("=")[1] for part in victim.parent.relative_to(oj_data).parts)

    with pytest.raises(JobError) as caught:
        manymodels.forecast(config)

    message = str(caught.value)
    run_id = message.rsplit(" ", 1)[1].rstrip(".")
    assert message.startswith(
        "config: 1 of 12 entities failed to forecast, more than the 0 allowed, so nothing was "
        f"published and the previous output at {output} was left as it was. Most common "
        "failure: 1 x read/"
    )
    assert message.endswith(f" See failures.csv in run {run_id}.")
    assert snapshot(output) == before
    assert [path.name for path in output.parent.iterdir() if ".tmp-" in path.name] == []
    session = open_tracking(config)
    assert session.client.get_run(run_id).info.status == "FAILED"
    failures = pd.read_csv(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="failures.csv", tracking_uri=session.target.tracking_uri))  # fmt: skip
    assert failures[["store", "brand", "stage"]].astype(str).values.tolist() == [
        [store, brand, "read"]
    ]

    # Within the budget, the same failure is published around.
    allowing = make_config(failures={"max_count": 1})
    second = manymodels.forecast(allowing)
    written = pd.read_parquet(second.output).astype({"store": str})
    assert (second.failed, second.forecast) == (1, 11)
    assert len(written.groupby(["store", "brand"])) == 11
    assert (store, brand) not in set(zip(written["store"], written["brand"], strict=True))


# --- demo -------------------------------------------------------------------------------------


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    workdir = tmp_path / "mine"
    workdir.mkdir()
    (workdir / "config.yaml").write_text("my: config\n", encoding="utf-8")
    before = snapshot(tmp_path)

    expected = (
        f"--workdir: {workdir} is not empty and no earlier demo made it (it has no "
        f"{DEMO_MARKER} file); the demo would overwrite its config.yaml and data. Hint: choose "
        "a new or empty folder, or pass --force to use this one anyway."
    )
    with pytest.raises(ConfigError, match=exactly(expected)):
        run_demo(str(workdir), entities=3, weeks=30, seed=0, progress=False)
    assert snapshot(tmp_path) == before


def test_demo_with_force_still_keeps_a_data_folder_it_did_not_write(tmp_path: Path) -> None:
    workdir = tmp_path / "mine"
    (workdir / "data").mkdir(parents=True)
    (workdir / "data" / "sales.csv").write_text("store,sales\n1,2\n", encoding="utf-8")
    before = snapshot(tmp_path)

    with pytest.raises(ConfigError, match=exactly(not_manymodels("--workdir", workdir / "data"))):
        run_demo(str(workdir), entities=3, weeks=30, seed=0, progress=False, force=True)
    assert snapshot(tmp_path) == before


def test_a_new_or_empty_workdir_is_marked_and_a_marked_one_reused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for name in ("new", "empty"):
        claim_workdir(tmp_path / name, force=False)
        assert sorted(snapshot(tmp_path / name)) == [DEMO_MARKER]
        marker = (tmp_path / name / DEMO_MARKER).read_text(encoding="utf-8")
        assert marker.startswith("'manymodels demo' made this folder")
    reused = tmp_path / "new"
    (reused / "config.yaml").write_text("from the last demo\n", encoding="utf-8")
    before = snapshot(reused)

    claim_workdir(reused, force=False)
    assert snapshot(reused) == before


def test_force_uses_a_foreign_folder_without_marking_it(tmp_path: Path) -> None:
    workdir = tmp_path / "mine"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("mine", encoding="utf-8")

    claim_workdir(workdir, force=True)
    assert snapshot(workdir) == {"notes.txt": b"mine"}


def test_two_publishes_to_one_folder_take_turns(tmp_path: Path) -> None:
    import threading

    final = tmp_path / "out"
    stagings = [staged(final, **{f"{name}.txt": name}) for name in ("first", "second")]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def publish(staging: str) -> None:
        start.wait()
        try:
            replace_dir(staging, str(final))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(staging,)) for staging in stagings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    content = snapshot(final)
    # One whole output, never the other one's staging folder moved inside it.
    assert content in (
        {OUTPUT_MARKER: MARKER_TEXT.encode(), "first.txt": b"first"},
        {OUTPUT_MARKER: MARKER_TEXT.encode(), "second.txt": b"second"},
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def test_publishing_locks_live_in_the_users_own_folder(tmp_path, monkeypatch):
    # Another user's leftover in the shared temporary folder: a name that cannot be a folder.
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    (shared / "manymodels-locks").write_text("not yours")
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setenv("MANYMODELS_CACHE_DIR", str(tmp_path / "cache"))
    staging = staging_path(str(tmp_path / "out"))
    os.makedirs(staging)
    replace_dir(staging, str(tmp_path / "out"))

    assert (tmp_path / "out" / OUTPUT_MARKER).exists()
    assert outputs.lock_folder() == tmp_path / "cache" / "locks"
    assert list((tmp_path / "cache" / "locks").glob("*.lock"))


def test_without_a_cache_folder_locks_go_to_a_folder_of_the_users_own(tmp_path, monkeypatch):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    monkeypatch.setenv("MANYMODELS_CACHE_DIR", str(blocked / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = outputs.lock_folder()
    assert folder == tmp_path / f"manymodels-locks-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700
