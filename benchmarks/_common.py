"""Shared helpers of the benchmarks: data, configs, baselines, timed jobs and result rows.

Importing this module pins BLAS and OpenMP to one thread through the environment, so it must be
imported before numpy (``run_all.py`` imports it first). Heavy imports happen inside the
functions, after the pinning.
"""

from __future__ import annotations

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")  # fmt: skip
for _variable in THREAD_VARIABLES:
    os.environ[_variable] = "1"

import math  # noqa: E402
import resource  # noqa: E402
import sqlite3  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

GIB = 1024**3
N_WORKERS = 2
HORIZON = 8
PREFIX = "bench"
EXOG = ["price", "deal"]
RIDGE = {"estimator": "ridge", "lags": 8, "fourier_terms": 3}
GRADIENT_BOOSTING = {
    "estimator": "gradient_boosting",
    "estimator_params": {"n_estimators": 100, "max_depth": 3},
    "lags": 8,
    "fourier_terms": 3,
}

# Measured elsewhere on a comparable 2-core machine; printed beside ours, never recomputed.
REFERENCE = {
    "joblib_ratio": {"W1": 1.23, "W2": 1.26},
    "spark_apply_in_pandas_ratio": {"W1": 8.1, "W2": 2.2},
    "tuned_mlflow_loop_ratio": {"W1": 64.0, "W2": 13.0},
    "tutorial_seconds_per_model": 7.9,
}


# --- result rows -------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table (and of ``latest.json``).

    Attributes:
        workload: what ran, e.g. ``W1 manymodels train (per_entity)``.
        entities: how many entities the row measured.
        floor_s: the 2-core floor: the sequential fit-only loop time divided by 2.
        seconds: wall time of the system the row names.
        rate: models (or entities, see ``rate_unit``) per second.
        target: the goal in words; ``met`` says whether it was reached (None: no goal).
        detail: a measured value the target refers to that has no column (memory, scaling).
        reference: numbers measured elsewhere, to read beside ours.
        extra: everything else worth keeping, written to JSON only.
    """

    workload: str
    entities: int
    entities_label: str = ""
    floor_s: float | None = None
    seconds: float | None = None
    rate: float | None = None
    rate_unit: str = "models/s"
    target: str = ""
    met: bool | None = None
    detail: str = ""
    reference: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.floor_s and self.seconds is not None:
            return self.seconds / self.floor_s
        return None


@dataclass
class Outcome:
    """What one workload module returns: its rows and notes for the reader."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def say(message: str) -> None:
    """Progress on stderr, so that stdout holds only the table."""
    import sys

    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- data and configs --------------------------------------------------------------------


def make_dataset(root: Path, name: str, n_entities: int, n_weeks: int, seed: int = 0,
                 future_weeks: int = HORIZON) -> Path:  # fmt: skip
    """Write the OJ-style panel as hive Parquet under ``root/name`` (once per name)."""
    from manymodels.datasets import write_oj_sales

    path = root / name
    if not path.exists():
        started = time.perf_counter()
        write_oj_sales(str(path), n_entities=n_entities, n_weeks=n_weeks, seed=seed,
                       future_weeks=future_weeks)  # fmt: skip
        say(f"wrote {n_entities} series x {n_weeks} weeks to {path} "
            f"({time.perf_counter() - started:.1f} s)")  # fmt: skip
    return path


def config_dict(data_path: Path, work_dir: Path, params: dict[str, Any],
                registration: str = "per_entity") -> dict[str, Any]:  # fmt: skip
    """The job config of every benchmark: manymodels defaults, 2 single-threaded workers."""
    return {
        "horizon": HORIZON,
        "data": {
            "path": str(data_path),
            "partition_by": ["store", "brand"],
            "time_col": "week",
            "target_col": "sales",
            "exog_cols": list(EXOG),
            "freq": "W-SUN",
        },
        "model": {"template": "sklearn_lags", "params": params},
        "compute": {"n_workers": N_WORKERS, "threads_per_worker": 1},
        "tracking": {
            "experiment": "benchmark",
            "model_prefix": PREFIX,
            "registration": registration,
        },  # fmt: skip
        "forecast": {"output": str(work_dir / "forecasts")},
        "work_dir": str(work_dir),
    }


def make_config(raw: dict[str, Any]) -> Any:
    from manymodels import config_from_dict

    return config_from_dict(raw)


# --- baselines: the same per-entity work without Dask, Parquet or MLflow ------------------


@dataclass
class Loaded:
    """Every entity's raw rows in memory, and the job's fitting specification."""

    frames: list[tuple[dict[str, str], Any]]
    spec: Any
    config: Any
    template_source: Any
    params: dict[str, Any]


def preload(config: Any) -> Loaded:
    """Read every partition into memory exactly as a worker reads it (not timed)."""
    from manymodels.data import discover_partitions, read_partition

    started = time.perf_counter()
    data = config.data
    columns = [*data.entity_cols, data.time_col, data.target_col, *data.exog_cols]
    partitions = discover_partitions(data.path, data.partition_by)
    frames = [(p.key_dict, read_partition(p, columns)) for p in partitions]
    source, params = template_of(config)
    say(f"preloaded {len(frames)} entities ({time.perf_counter() - started:.1f} s)")
    return Loaded(frames, fit_spec(config, source, params), config, source, params)


def template_of(config: Any) -> tuple[Any, dict[str, Any]]:
    """The job's template source and its validated parameters (defaults filled in)."""
    from manymodels.templates import load_template, resolve_template

    source = resolve_template(config.model.template)
    return source, load_template(source).validate_params(config.model.params)


def fit_spec(config: Any, source: Any = None, params: dict[str, Any] | None = None) -> Any:
    """The :class:`manymodels.fitting.FitSpec` a job's workers build from its config (the same
    backtest windows, candidates and fallback; ``source`` and ``params`` are not needed)."""
    from manymodels.candidates import plan_models
    from manymodels.tasks.entities import fit_spec as job_fit_spec

    return job_fit_spec(config, plan_models(config.model))


def fit_all(frames: Iterable[tuple[dict[str, str], Any]], spec: Any) -> tuple[int, int]:
    """Fit, score and refit each entity with :func:`manymodels.fitting.fit_entity`.

    Returns:
        How many entities were fitted and how many failed (too short, and the like).
    """
    from manymodels.fitting import fit_entity

    ok = failed = 0
    for keys, frame in frames:
        try:
            fit_entity(frame, keys, spec)
            ok += 1
        except Exception:  # a bad entity fails alone, as in a job
            failed += 1
    return ok, failed


@dataclass
class LoopTime:
    seconds: float
    ok: int
    failed: int

    @property
    def floor(self) -> float:
        """The 2-core floor: perfect parallelism of the same work, nothing else."""
        return self.seconds / N_WORKERS


def sequential_loop(loaded: Loaded) -> LoopTime:
    """The plain fit-only loop in this process, BLAS/OpenMP at one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        started = time.perf_counter()
        ok, failed = fit_all(loaded.frames, loaded.spec)
        seconds = time.perf_counter() - started
    say(f"sequential fit loop: {ok} ok, {failed} failed in {seconds:.1f} s")
    return LoopTime(seconds, ok, failed)


def _fit_chunk(chunk: list[tuple[dict[str, str], Any]], config: Any, source: Any,
               params: dict[str, Any]) -> tuple[int, int]:  # fmt: skip
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fit_all(chunk, fit_spec(config, source, params))


def _warm_up() -> int:
    import sklearn.ensemble  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    import manymodels.fitting  # noqa: F401

    return os.getpid()


def joblib_loop(loaded: Loaded, n_jobs: int = N_WORKERS) -> LoopTime:
    """The same fits over a 2-process joblib (loky) pool, data sent from memory.

    The pool is started and warmed (imports done) before the clock starts; the frames are
    pickled to the workers inside the timed part, in chunks of about 1/16 of a worker's share.
    """
    from joblib import Parallel, delayed

    frames = loaded.frames
    size = max(1, math.ceil(len(frames) / (16 * n_jobs)))
    chunks = [frames[start : start + size] for start in range(0, len(frames), size)]
    with Parallel(n_jobs=n_jobs, backend="loky") as parallel:
        parallel(delayed(_warm_up)() for _ in range(4 * n_jobs))
        started = time.perf_counter()
        counts = parallel(
            delayed(_fit_chunk)(chunk, loaded.config, loaded.template_source, loaded.params)
            for chunk in chunks
        )
        seconds = time.perf_counter() - started
    ok, failed = sum(c[0] for c in counts), sum(c[1] for c in counts)
    say(f"joblib {n_jobs}-process loop: {ok} ok, {failed} failed in {seconds:.1f} s")
    return LoopTime(seconds, ok, failed)


# --- manymodels jobs ---------------------------------------------------------------------


@dataclass
class RegistryCounts:
    """What the MLflow store holds after a job, counted in its SQLite file."""

    registered_models: int
    model_versions: int

    def registered_per_entity(self, trained: int) -> bool:
        return trained > 1 and self.model_versions >= trained


def registry_counts(work_dir: Path) -> RegistryCounts:
    """Count registered models and versions directly in the embedded store's SQLite file."""
    database = Path(work_dir) / "mlflow.db"
    if not database.exists():
        return RegistryCounts(0, 0)
    with sqlite3.connect(database) as connection:
        models = connection.execute("SELECT COUNT(*) FROM registered_models").fetchone()[0]
        versions = connection.execute("SELECT COUNT(*) FROM model_versions").fetchone()[0]
    return RegistryCounts(int(models), int(versions))


@dataclass
class JobTime:
    """A timed manymodels job."""

    seconds: float
    trained: int = 0
    failed: int = 0
    counts: RegistryCounts | None = None
    error: str | None = None
    peak_rss: int | None = None
    memory: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def timed_train(config: Any) -> JobTime:
    """``manymodels.train`` end to end (cluster start, validation, tracking, registration)."""
    import manymodels

    started = time.perf_counter()
    try:
        result = manymodels.train(config)
    except Exception as exc:  # reported in the table, not raised: the other rows still count
        seconds = time.perf_counter() - started
        say(f"train failed after {seconds:.1f} s: {type(exc).__name__}: {exc}")
        return JobTime(seconds, error=f"{type(exc).__name__}: {exc}",
                       counts=registry_counts(Path(config.work_dir)))  # fmt: skip
    seconds = time.perf_counter() - started
    counts = registry_counts(Path(config.work_dir))
    say(f"manymodels train: {result.trained} ok, {result.failed} failed in {seconds:.1f} s; "
        f"registry holds {counts.registered_models} models, {counts.model_versions} versions")  # fmt: skip
    return JobTime(seconds, result.trained, result.failed, counts)


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far.

    On Linux this is ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process's
    own address space. ``getrusage(RUSAGE_SELF).ru_maxrss`` is the fallback elsewhere; on Linux
    it is wrong for a child started with fork/vfork + exec (as ``subprocess`` does), because the
    kernel carries the parent's peak over the exec: a 2 GiB parent makes every child report
    2 GiB. See :func:`ru_maxrss_bytes`.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return ru_maxrss_bytes()


def ru_maxrss_bytes() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in bytes (Linux reports KiB, macOS bytes)."""
    import sys

    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


def registration_note(mode: str, job: JobTime) -> str:
    """What the registry shows about the registration mode a job was given."""
    if not job.ok:
        return f"registration: {mode} -> the job failed: {job.error}"
    counts = job.counts or RegistryCounts(0, 0)
    seen = (f"registry holds {counts.registered_models} registered model(s) with "
            f"{counts.model_versions} version(s) for {job.trained} trained entities")  # fmt: skip
    if mode == "per_job" and counts.registered_per_entity(job.trained):
        return (f"registration: per_job was accepted but the job still registered per entity "
                f"({seen}); per_job mode is not in place yet")  # fmt: skip
    return f"registration: {mode} -> {seen}"


def per_job_in_place(job: JobTime) -> bool:
    """Whether a ``per_job`` job really registered one version for the whole job."""
    return job.ok and job.counts is not None and not job.counts.registered_per_entity(job.trained)


@dataclass
class FitWorkload:
    """The measurements of a fit workload (W1, W2): the baselines and one job per mode."""

    entities: int
    loop: LoopTime
    joblib: LoopTime | None
    jobs: dict[str, tuple[Any, JobTime]]


def measure_fit_workload(root: Path, name: str, n_entities: int, n_weeks: int,
                         params: dict[str, Any], modes: Sequence[str],
                         with_joblib: bool = True) -> FitWorkload:  # fmt: skip
    """Time the sequential loop, the joblib loop and ``manymodels train`` in each mode.

    Each job gets its own MLflow store (``root/<name>-<mode>``), so none sees another's models.
    """
    data = make_dataset(root, f"data-{n_entities}x{n_weeks}", n_entities, n_weeks)
    configs = {mode: make_config(config_dict(data, root / f"{name}-{mode}", params, mode))
               for mode in modes}  # fmt: skip
    loaded = preload(configs[modes[0]])
    loop = sequential_loop(loaded)
    parallel = joblib_loop(loaded) if with_joblib else None
    del loaded
    jobs = {}
    for mode, config in configs.items():
        say(f"{name}: manymodels train, registration {mode}, {n_entities} entities ...")
        jobs[mode] = (config, timed_train(config))
    return FitWorkload(n_entities, loop, parallel, jobs)


def job_extra(job: JobTime) -> dict[str, Any]:
    counts = job.counts or RegistryCounts(0, 0)
    return {"trained": job.trained, "failed": job.failed, "error": job.error,
            "registered_models": counts.registered_models,
            "model_versions": counts.model_versions, "peak_rss_bytes": job.peak_rss,
            **job.memory}  # fmt: skip


def joblib_row(label: str, workload: FitWorkload, reference: float) -> Row:
    run = workload.joblib
    assert run is not None
    return Row(
        workload=f"ctx: {label} joblib 2-process loop",
        entities=workload.entities, floor_s=workload.loop.floor, seconds=run.seconds,
        rate=run.ok / run.seconds, reference=f"joblib {reference:.2f}x",
        extra={"ok": run.ok, "failed": run.failed},
    )  # fmt: skip


# --- formatting helpers ------------------------------------------------------------------


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def fmt_rate(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    return text if unit == "models/s" else f"{text} {unit}"


def fmt_gib(value: int | float | None) -> str:
    return "-" if value is None else f"{value / GIB:.2f} GiB"
