"""The manymodels side of the quality benchmark: ``auto`` and each candidate alone.

For a panel, the data before the final window is written as hive-partitioned Parquet (with
the covariates of the next ``horizon`` periods as rows without a target, for panels that have
covariates), then each configuration runs ``manymodels.train`` and ``manymodels.forecast`` as a
user would, on a local cluster of two single-threaded workers. The forecasts are read back and
scored on the final window like the baselines; the backtest column is each job's own recorded
backtest MASE (for ``auto``, that of the winner per entity).

By default every job runs on one cluster of two single-threaded worker processes that the
benchmark starts once (``compute.scheduler``), so that some thirty jobs do not each pay for
starting workers and importing libraries; ``--own-clusters`` gives each job its own, as a
user's first run has. CPU time is the driver's ``time.process_time`` plus the CPU time of the
worker processes (children of this process), read from ``psutil`` every half second while
the job runs (the last reading counts, so at most half a second per process is missed).
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _quality_scoring import LEVELS, Score, mase_scales, score

if TYPE_CHECKING:
    import pandas as pd
    from _quality_panels import Split

N_WORKERS = 2
WINDOWS = 3

# The planned default set, used only when manymodels does not publish its own.
PLANNED_CANDIDATES: tuple[dict[str, Any], ...] = (
    {"template": "naive"},
    {"template": "seasonal_naive"},
    {"template": "auto_ets"},
    {"template": "theta"},
    {"template": "auto_arima"},
    {"name": "lags", "template": "sklearn_lags",
     "params": {"estimator": "ridge", "lags": "season", "fourier_terms": 0, "scale": True}},
)  # fmt: skip


@dataclass
class JobRun:
    """One manymodels configuration on one panel: its scores and its cost.

    Attributes:
        name: ``auto`` or the candidate's name.
        backtest_mase: the backtest MASE scored here from the job's backtest table (for
            ``auto``, each entity's winner's predictions), like the baselines'.
        recorded_backtest_mase: mean over entities of the MASE the job recorded.
        final: scores on the final window.
        cpu_seconds: train's CPU time (driver and cluster processes).
        wall_seconds: train's wall time.
        entities: entities trained; ``failed`` those that failed.
        winners: for ``auto``, how many entities each candidate won.
        candidate_backtest: for ``auto``, each candidate's mean backtest MASE as recorded.
        fit_seconds_per_entity: CPU seconds per entity of the fitting alone (backtest, choice,
            refit), measured in this process on ``fit_timed_entities`` entities.
        calibration: for ``auto``, the factor that widened its intervals at each level.
        error: why the job could not run, if it could not.
    """

    name: str
    backtest_mase: float | None = None
    final: Score | None = None
    cpu_seconds: float | None = None
    wall_seconds: float | None = None
    forecast_seconds: float | None = None
    entities: int = 0
    failed: int = 0
    winners: Counter[str] = field(default_factory=Counter)
    candidate_backtest: dict[str, float] = field(default_factory=dict)
    first_failure: str | None = None
    recorded_backtest_mase: float | None = None
    fit_seconds_per_entity: float | None = None
    fit_timed_entities: int = 0
    fallbacks: int = 0
    calibration: dict[float, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def cpu_per_entity(self) -> float | None:
        if self.cpu_seconds is None or not self.entities:
            return None
        return self.cpu_seconds / self.entities


def default_candidates() -> list[dict[str, Any]]:
    """manymodels' default candidate set, or the planned one where it publishes none."""
    try:
        from manymodels.candidates import DEFAULT_CANDIDATES
    except ImportError:
        return [dict(c) for c in PLANNED_CANDIDATES]
    return [dict(c) for c in DEFAULT_CANDIDATES]


def candidate_label(candidate: dict[str, Any]) -> str:
    return str(candidate.get("name") or Path(candidate["template"]).stem)


# --- data and configs --------------------------------------------------------------------


def write_dataset(split: Split, path: Path) -> pd.DataFrame:
    """Write the pre-final data as hive Parquet, plus the next ``horizon`` periods' covariates.

    Returns:
        The rows written (with the key columns).
    """
    import pandas as pd

    from manymodels.data import write_partitioned

    panel, keys = split.panel, split.panel.keys
    columns = [*keys, "time", "y", *panel.exog]
    frame = split.train[columns]
    if panel.exog and panel.covariates is not None:
        last = split.train.groupby(keys, as_index=False)["period"].max()
        future = panel.covariates.merge(last.rename(columns={"period": "last"}), on=keys)
        ahead = future["period"] - future["last"]
        future = future[(ahead >= 1) & (ahead <= panel.horizon)].assign(y=float("nan"))
        frame = pd.concat([frame, future[columns]], ignore_index=True)
    if path.exists():
        shutil.rmtree(path)
    write_partitioned(frame, str(path), keys, "part")
    return frame


def config_dict(split: Split, data: Path, work_dir: Path, model: dict[str, Any],
                registration: str, scheduler: str | None = None) -> dict[str, Any]:  # fmt: skip
    """A job config for the panel: manymodels defaults except what the benchmark fixes.

    With ``scheduler`` the job runs on that cluster (started once for the whole benchmark),
    otherwise on its own local cluster of two single-threaded workers.
    """
    panel = split.panel
    compute = ({"scheduler": scheduler} if scheduler
               else {"n_workers": N_WORKERS, "threads_per_worker": 1})  # fmt: skip
    return {
        "horizon": panel.horizon,
        "data": {
            "path": str(data),
            "partition_by": list(panel.keys),
            "time_col": "time",
            "target_col": "y",
            "exog_cols": list(panel.exog),
            "freq": panel.freq,
        },
        "model": model,
        "evaluation": {"windows": WINDOWS, "step": panel.horizon, "season_length": panel.season},
        "compute": compute,
        "tracking": {"experiment": f"quality-{panel.name}", "model_prefix": "quality",
                     "registration": registration},  # fmt: skip
        "forecast": {"output": str(work_dir / "forecasts"), "levels": list(LEVELS)},
        "work_dir": str(work_dir),
    }


# --- running and scoring -----------------------------------------------------------------


class CpuMeter:
    """CPU seconds of this process and of its child processes while in use.

    Children that already run (a shared cluster's workers) count from their CPU time at the
    start; children started inside count from zero.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.seconds = 0.0
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> CpuMeter:
        self._sample()
        self._start = dict(self._seen)
        self._driver = time.process_time()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        children = sum(v - self._start.get(pid, 0.0) for pid, v in self._seen.items())
        self.seconds = time.process_time() - self._driver + children

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                times = child.cpu_times()
            except psutil.Error:
                continue
            self._seen[child.pid] = times.user + times.system


def run_job(split: Split, name: str, model: dict[str, Any], data: Path, root: Path,
            registration: str, scheduler: str | None = None, frame: pd.DataFrame | None = None,
            fit_timing: int = 0) -> JobRun:  # fmt: skip
    """Train and forecast one configuration; failures are recorded, not raised."""
    from _common import say

    import manymodels

    run = JobRun(name)
    work_dir = root / f"{split.panel.name}-{name}"
    if work_dir.exists():
        shutil.rmtree(work_dir)
    try:
        config = manymodels.config_from_dict(config_dict(split, data, work_dir, model,
                                                         registration, scheduler))  # fmt: skip
        started = time.perf_counter()
        with CpuMeter() as meter:
            trained = manymodels.train(config)
        run.wall_seconds = time.perf_counter() - started
        run.cpu_seconds = meter.seconds
        run.entities, run.failed = int(trained.trained), int(trained.failed)
        if run.failed:
            run.first_failure = _first_failure(trained.entities)
        if not run.entities:
            raise RuntimeError(f"train fitted no entity; first failure: {run.first_failure}")
        _read_selection(run, trained.entities)
        run.calibration = dict(getattr(trained, "calibration", {}))
        run.backtest_mase = score_backtest(split, work_dir, trained.run_id, trained.entities)
        started = time.perf_counter()
        manymodels.forecast(config)
        run.forecast_seconds = time.perf_counter() - started
        forecasts = read_forecasts(split, Path(config.forecast.output))
        scales = mase_scales(split.train, split.panel.keys, split.panel.season)
        forecasts = forecasts.merge(scales[[*split.panel.keys, "cutoff"]], on=split.panel.keys)
        run.final = score(forecasts, split.test, scales, split.panel.keys)
        if frame is not None and fit_timing:
            run.fit_seconds_per_entity, run.fit_timed_entities = fit_only(
                split, frame, config, fit_timing)  # fmt: skip
    except Exception as exc:  # recorded in the table; the other rows still count
        run.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        say(f"{split.panel.name}: manymodels {name} failed: {run.error}")
        (root / f"{split.panel.name}-{name}.traceback.txt").write_text(traceback.format_exc())
        return run
    say(f"{split.panel.name}: manymodels {name}: {run.entities} trained, {run.failed} failed, "
        f"train {run.wall_seconds:.1f} s wall, {run.cpu_seconds:.1f} s CPU; "
        f"forecast {run.forecast_seconds:.1f} s")  # fmt: skip
    return run


def _read_selection(run: JobRun, entities: pd.DataFrame) -> None:
    """The recorded backtest metric, winners and per-candidate metrics of a train job."""
    import pandas as pd

    ok = entities[entities["status"] != "failed"] if "status" in entities else entities
    for column in ("mase", "metric_mase", "backtest_mase", "holdout_mase"):
        if column in ok:
            run.recorded_backtest_mase = _mean(pd.to_numeric(ok[column], errors="coerce"))
            break
    if "winner" in ok:
        run.winners = Counter(ok["winner"].dropna().astype(str))
    if "fallback" in ok:
        run.fallbacks = int(ok["fallback"].eq(True).sum())
    for column in ok.columns:
        if column.startswith("mase_"):
            run.candidate_backtest[column[len("mase_"):]] = _mean(
                pd.to_numeric(ok[column], errors="coerce"))  # fmt: skip


def score_backtest(split: Split, work_dir: Path, run_id: str,
                   entities: pd.DataFrame) -> float | None:  # fmt: skip
    """The job's backtest table scored like the baselines' backtest (winners only for auto)."""
    import pandas as pd

    panel, keys = split.panel, split.panel.keys
    found = sorted(work_dir.glob(f"**/{run_id}/**/backtest.parquet")) or sorted(
        work_dir.glob("**/backtest.parquet"))  # fmt: skip
    if not found:
        return None
    table = pd.read_parquet(found[0])
    for key in keys:
        table[key] = table[key].astype(str)
    if "winner" in entities and table["candidate"].nunique() > 1:
        winners = entities[[*keys, "winner"]].dropna().astype(str)
        table = table.merge(winners, on=keys)
        table = table[table["candidate"] == table["winner"]]
    table["period"] = panel.periods(table["time"])
    table["cutoff"] = panel.periods(table["cutoff"])
    observed = table[[*keys, "period", "cutoff"]].drop_duplicates().merge(
        split.train[[*keys, "period", "y"]], on=[*keys, "period"])  # fmt: skip
    scales = mase_scales(split.train, keys, panel.season,
                         observed[[*keys, "cutoff"]].drop_duplicates())  # fmt: skip
    return score(table[[*keys, "period", "cutoff", "prediction"]], observed, scales, keys).mase


def fit_only(split: Split, frame: pd.DataFrame, config: Any, limit: int) -> tuple[float, int]:
    """CPU seconds per entity of manymodels' per-entity fitting alone, in this process.

    Backtest of every candidate, choice, refit and intervals, as a worker does it, without
    Dask, Parquet or MLflow; one entity is fitted first, untimed (imports, compilation).
    """
    from threadpoolctl import threadpool_limits

    from manymodels.candidates import plan_models
    from manymodels.fitting import fit_entity
    from manymodels.tasks.entities import fit_spec

    keys = split.panel.keys
    spec = fit_spec(config, plan_models(config.model))
    groups = [(dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
               group.drop(columns=keys)) for key, group in frame.groupby(keys, sort=True)]  # fmt: skip
    if len(groups) > limit:
        step = len(groups) / limit
        groups = [groups[int(i * step)] for i in range(limit)]
    with threadpool_limits(1):
        fit_entity(groups[0][1], groups[0][0], spec)
        started = time.process_time()
        for keys_of, rows in groups:
            # A failing entity costs what it cost, as in a job.
            with contextlib.suppress(Exception):
                fit_entity(rows, keys_of, spec)
        seconds = time.process_time() - started
    return seconds / len(groups), len(groups)


def _first_failure(entities: pd.DataFrame) -> str | None:
    if "error" not in entities:
        return None
    errors = entities["error"].dropna().astype(str)
    errors = errors[errors != ""]
    return errors.iloc[0].splitlines()[0][:300] if len(errors) else None


def _mean(values: pd.Series) -> float | None:
    import numpy as np

    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def read_forecasts(split: Split, output: Path) -> pd.DataFrame:
    """The forecast output as scoring columns: keys, ``period``, prediction and intervals."""
    import pyarrow.dataset as ds

    panel = split.panel
    table = ds.dataset(str(output), format="parquet", partitioning="hive").to_table()
    frame = table.to_pandas()
    for key in panel.keys:
        frame[key] = frame[key].astype(str)
    frame["period"] = panel.periods(frame["time"])
    columns = ["prediction", *[f"{side}-{level}" for level in LEVELS for side in ("lo", "hi")]]
    return frame[[*panel.keys, "period", *[c for c in columns if c in frame]]]


def run_panel(split: Split, root: Path, candidates: list[dict[str, Any]],
              registration: str = "per_entity", only: list[str] | None = None,
              fit_timing: int = 16, scheduler: str | None = None) -> list[JobRun]:  # fmt: skip
    """Every candidate alone, then ``auto`` with all of them, on one panel.

    ``auto``'s fitting alone is also timed in this process on up to ``fit_timing`` entities.
    """
    data = root / f"{split.panel.name}-data"
    frame = write_dataset(split, data)
    runs = []
    for candidate in candidates:
        label = candidate_label(candidate)
        if only is not None and label not in only:
            continue
        runs.append(run_job(split, label, {"template": "auto", "candidates": [candidate]},
                            data, root, registration, scheduler))  # fmt: skip
    if only is None or "auto" in only:
        runs.append(run_job(split, "auto", {"template": "auto", "candidates": candidates},
                            data, root, registration, scheduler, frame, fit_timing))  # fmt: skip
    return runs
