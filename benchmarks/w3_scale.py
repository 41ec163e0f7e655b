"""W3, scale: 10,000 and 100,000 short series (60 weeks), cheap template, ``per_job`` registration.

Each job runs in a fresh Python process, so that the driver's peak RSS
(the driver and the in-process Dask scheduler, not the worker processes) belongs to that job
alone. The peak is ``VmHWM`` from ``/proc/self/status``: ``ru_maxrss`` would carry the parent's
peak over the exec (see ``_common.peak_rss_bytes``); it is kept in the JSON for comparison. Targets: driver peak below 2 GiB and
t(100k)/t(10k) at most 11. The large case runs only when the small one really registered one
version per job (``--force-large`` runs it anyway).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import (
    GIB,
    RIDGE,
    JobTime,
    Outcome,
    RegistryCounts,
    Row,
    config_dict,
    fmt_gib,
    job_extra,
    make_config,
    make_dataset,
    per_job_in_place,
    preload,
    registration_note,
    say,
    sequential_loop,
)

N_WEEKS = 60
MAX_PEAK = 2 * GIB
MAX_SCALING = 11.0


def run(root: Path, sizes: tuple[int, int], state: dict[str, Any], force_large: bool) -> Outcome:
    small, large = sizes
    outcome = Outcome()
    config = _config(root, small)
    loaded = preload(make_config(config))
    loop = sequential_loop(loaded)
    del loaded
    job = train_in_child(config, root / f"w3-{small}.json")
    outcome.notes.append(f"W3 {small:,}: " + registration_note("per_job", job))
    peak_ok = job.peak_rss is not None and job.peak_rss < MAX_PEAK
    outcome.rows.append(Row(
        workload="W3 scale: train per_job", entities=small, floor_s=loop.floor,
        seconds=job.seconds if job.ok else None,
        rate=job.trained / job.seconds if job.ok else None,
        target="driver peak < 2 GiB", met=job.ok and peak_ok,
        detail=fmt_gib(job.peak_rss) + ("" if job.ok else ", job failed"),
        extra={**job_extra(job), "sequential_s": loop.seconds, "weeks": N_WEEKS},
    ))  # fmt: skip

    scaling_target = (
        f"driver peak < 2 GiB; t({_short(large)})/t({_short(small)}) <= {MAX_SCALING:g}"
    )
    if not (per_job_in_place(job) or force_large):
        outcome.rows.append(Row(
            workload="W3 scale: train per_job", entities=large,
            target=scaling_target, detail="skipped: per_job not in place",
        ))  # fmt: skip
        outcome.notes.append(f"W3 {large:,}: skipped, because the {small:,} job did not register "
                             "one version per job (run with --force-large to run it anyway)")  # fmt: skip
        return outcome
    big = train_in_child(_config(root, large), root / f"w3-{large}.json")
    outcome.notes.append(f"W3 {large:,}: " + registration_note("per_job", big))
    scaling = big.seconds / job.seconds if big.ok and job.ok else None
    met = (big.ok and big.peak_rss is not None and big.peak_rss < MAX_PEAK
           and scaling is not None and scaling <= MAX_SCALING)  # fmt: skip
    outcome.rows.append(Row(
        workload="W3 scale: train per_job", entities=large,
        seconds=big.seconds if big.ok else None,
        rate=big.trained / big.seconds if big.ok else None, target=scaling_target, met=met,
        detail=f"{fmt_gib(big.peak_rss)}, {scaling:.1f}x" if scaling else fmt_gib(big.peak_rss),
        extra={**job_extra(big), "scaling": scaling, "weeks": N_WEEKS},
    ))  # fmt: skip
    return outcome


def _config(root: Path, n_entities: int) -> dict[str, Any]:
    data = make_dataset(root, f"data-{n_entities}x{N_WEEKS}", n_entities, N_WEEKS, future_weeks=0)
    return config_dict(data, root / f"w3-{n_entities}-per_job", RIDGE, "per_job")


def _short(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def train_in_child(config: dict[str, Any], config_file: Path) -> JobTime:
    """Run ``manymodels.train`` in a fresh interpreter and read back its measurements."""
    config_file.write_text(json.dumps(config), encoding="utf-8")
    say(f"W3: manymodels train in a child process, {config_file.stem} ...")
    process = subprocess.run([sys.executable, __file__, "--child", str(config_file)],
                             capture_output=True, text=True)  # fmt: skip
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        tail = (process.stderr or process.stdout).strip().splitlines()[-3:]
        return JobTime(0.0, error=f"child exited {process.returncode}: {' | '.join(tail)}")
    found = json.loads(lines[-1])
    counts = RegistryCounts(found["registered_models"], found["model_versions"])
    job = JobTime(found["seconds"], found["trained"], found["failed"], counts, found["error"],
                  found["peak_rss"], {"rss_before_train_bytes": found["rss_before"],
                                      "ru_maxrss_bytes": found["ru_maxrss"]})  # fmt: skip
    say(f"W3 child: {job.trained} ok, {job.failed} failed in {job.seconds:.1f} s, driver peak "
        f"{fmt_gib(job.peak_rss)} (after imports {fmt_gib(found['rss_before'])})")  # fmt: skip
    return job


def _child(config_file: str) -> None:
    import psutil
    from _common import peak_rss_bytes, ru_maxrss_bytes, timed_train

    import manymodels  # noqa: F401 - imported before the measurement starts, as a CLI run would

    config = make_config(json.loads(Path(config_file).read_text(encoding="utf-8")))
    rss_before = psutil.Process().memory_info().rss
    job = timed_train(config)
    counts = job.counts or RegistryCounts(0, 0)
    print(json.dumps({"seconds": job.seconds, "trained": job.trained, "failed": job.failed,
                      "error": job.error, "registered_models": counts.registered_models,
                      "model_versions": counts.model_versions, "peak_rss": peak_rss_bytes(),
                      "ru_maxrss": ru_maxrss_bytes(), "rss_before": rss_before}), flush=True)  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child(sys.argv[2])
    else:
        sys.exit("usage: run benchmarks/run_all.py --only W3 (this file's --child is internal)")
