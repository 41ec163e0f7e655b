"""Run the manymodels benchmarks and print one table of ratios measured side by side.

Usage:
    python benchmarks/run_all.py                      # everything, full sizes
    python benchmarks/run_all.py --quick              # scaled-down smoke run
    python benchmarks/run_all.py --only W1,W4         # some workloads (W1 W2 W3 W4 CTX)
    python benchmarks/run_all.py --entities W1=500,W3=1000/10000,CTX=5

Every run generates its own data and MLflow stores under a temporary folder (removed at the
end unless ``--keep``), prints the table on stdout (progress goes to stderr) and writes the
rows to ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402, I001 - pins BLAS/OpenMP threads before anything imports numpy

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import asdict  # noqa: E402
from datetime import datetime, UTC  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from _common import Outcome, Row, fmt_rate, fmt_ratio, fmt_seconds, say  # noqa: E402

WORKLOADS = ("W1", "W2", "W3", "W4", "CTX")
FULL = {"W1": 2000, "W2": 1000, "W3": (10_000, 100_000), "W4": 2000, "CTX": 20}
QUICK = {"W1": 150, "W2": 40, "W3": (300, 3000), "W4": 150, "CTX": 2}
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    sizes = _sizes(args)
    root = Path(tempfile.mkdtemp(prefix="manymodels-bench-"))
    say(f"working in {root}; sizes {sizes}")
    started = time.perf_counter()
    load_before = os.getloadavg()
    git_before = _git_state()
    state: dict[str, Any] = {}
    outcomes: list[Outcome] = []
    try:
        for name in WORKLOADS:
            if name in args.only:
                outcomes.append(_run_one(name, root, sizes, state, args))
    finally:
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    rows = [row for outcome in outcomes for row in outcome.rows]
    notes = [note for outcome in outcomes for note in outcome.notes]
    elapsed = time.perf_counter() - started
    notes.append(f"load average before {_load(load_before)}, after {_load(os.getloadavg())}; "
                 f"total {elapsed / 60:.1f} min")  # fmt: skip
    print_table(rows, notes, quick=args.quick)
    _write_json(args.output, rows, notes, sizes, args, elapsed, git_before)
    return 0


def _run_one(name: str, root: Path, sizes: dict[str, Any], state: dict[str, Any],
             args: argparse.Namespace) -> Outcome:  # fmt: skip
    say(f"=== {name} ===")
    try:
        if name == "W1":
            import w1_cheap

            return w1_cheap.run(root, sizes["W1"], state)
        if name == "W2":
            import w2_real

            return w2_real.run(root, sizes["W2"], state)
        if name == "W3":
            import w3_scale

            return w3_scale.run(root, sizes["W3"], state, args.force_large)
        if name == "W4":
            import w4_forecast

            return w4_forecast.run(root, sizes["W4"], state)
        import context_tutorial

        return context_tutorial.run(root, sizes["CTX"], state, extrapolate_to=sizes["W1"])
    except Exception as exc:  # one broken workload must not hide the others' numbers
        traceback.print_exc()
        return Outcome([Row(f"{name}: harness error", 0, detail=type(exc).__name__, met=False)],
                       [f"{name}: harness error: {type(exc).__name__}: {exc}"])  # fmt: skip


def print_table(rows: list[Row], notes: list[str], quick: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    title = "manymodels benchmarks" + (" (--quick: scaled down, not comparable)" if quick else "")
    table = Table(title=title, title_justify="left", caption_justify="left",
                  caption="\n".join(f"- {note}" for note in notes))  # fmt: skip
    for header, justify in [("workload", "left"), ("entities", "right"),
                            ("baseline floor (s)", "right"), ("manymodels (s)", "right"),
                            ("ratio to floor", "right"), ("models/s", "right"),
                            ("target", "left"), ("met?", "left"), ("reference", "left")]:  # fmt: skip
        table.add_column(
            header,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=header in ("workload", "entities", "models/s"),
        )
    for row in rows:
        table.add_row(
            row.workload, row.entities_label or (f"{row.entities:,}" if row.entities else "-"),
            fmt_seconds(row.floor_s), fmt_seconds(row.seconds), fmt_ratio(row.ratio),
            fmt_rate(row.rate, row.rate_unit), row.target or "-", _met(row), row.reference or "-",
        )  # fmt: skip
    console.print(table)
    console.print(
        "floor: the sequential fit-only loop (same per-entity work, in memory, no tracking) / 2. "
        "ctx rows: the manymodels column holds the time of the system the row names.\n"
        "reference: measured elsewhere on a comparable 2-core machine (Spark: applyInPandas in "
        "local mode; tuned MLflow loop: one run and registration per entity)."
    )


def _met(row: Row) -> str:
    verdict = {True: "yes", False: "NO", None: "-"}[row.met]
    if row.detail:
        return f"{verdict} ({row.detail})" if row.met is not None else row.detail
    return verdict


def _write_json(path: Path, rows: list[Row], notes: list[str], sizes: dict[str, Any],
                args: argparse.Namespace, elapsed: float, git_before: dict[str, Any]) -> None:  # fmt: skip
    from importlib.metadata import version

    packages = ("manymodels", "mlflow", "dask", "distributed", "scikit-learn", "pandas", "numpy")
    document = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick, "only": sorted(args.only), "sizes": sizes,
        "seconds": round(elapsed, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "packages": {name: version(name) for name in packages}},
        # The package may change while a long run goes on: the state at both ends.
        "git": {"start": git_before, "end": _git_state()},
        "reference": _common.REFERENCE,
        "rows": [{**asdict(row), "ratio": row.ratio} for row in rows],
        "notes": notes,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    say(f"wrote {path}")


def _git_state() -> dict[str, Any]:
    """The commit measured, and whether the working tree had local changes (read-only git)."""
    import subprocess

    repo = Path(__file__).resolve().parent.parent

    def git(*command: str) -> str:
        done = subprocess.run(["git", "-C", str(repo), *command], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()
               if not line[3:].startswith("benchmarks/")]  # fmt: skip
    return {"commit": git("rev-parse", "HEAD") or None, "changed_files": changed}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help=f"comma-separated workloads out of {','.join(WORKLOADS)}")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="scaled-down smoke run")
    parser.add_argument("--entities", default="",
                        help="size overrides, e.g. W1=500,W2=100,W3=1000/10000,W4=500,CTX=5")  # fmt: skip
    parser.add_argument("--force-large", action="store_true",
                        help="run W3's large case even when per_job registration is not in place")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary data and stores")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file ({RESULTS})")
    args = parser.parse_args(argv)
    only = {part.strip().upper() for part in args.only.split(",") if part.strip()}
    unknown = only - set(WORKLOADS)
    if unknown:
        parser.error(f"--only: unknown workload {sorted(unknown)}; use {','.join(WORKLOADS)}")
    args.only = only
    return args


def _sizes(args: argparse.Namespace) -> dict[str, Any]:
    sizes = dict(QUICK if args.quick else FULL)
    for item in filter(None, (part.strip() for part in args.entities.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip().upper()
        try:
            if not sep or name not in WORKLOADS:
                raise ValueError
            if name == "W3":
                small, large = (int(v) for v in value.split("/"))
                sizes[name] = (small, large)
            else:
                sizes[name] = int(value)
        except ValueError:
            sys.exit(f"--entities: cannot read {item!r}; use e.g. W1=500 or W3=1000/10000")
    return sizes


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{value:.2f}" for value in values)


if __name__ == "__main__":
    sys.exit(main())
