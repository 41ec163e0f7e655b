"""Incremental retraining: how much of a training job a scheduled retrain costs.

Trains N entities (default 2,000), then times a retrain with nothing changed and a retrain with
the files of 1% of the entities rewritten with revised sales, and prints each time beside its
ratio to the training time, in one run. Targets: a no-change retrain at most 10% of training
time, a 1%-changed retrain at most 15%.

    python benchmarks/retrain.py [--entities 2000] [--weeks 156] [--registration per_entity]
                                 [--model ridge|gradient_boosting] [--rounds 1]

On a shared machine one round's ratios move with the load (the training they are divided by
moves as much as the retrain): ``--rounds N`` repeats the three steps N times on the same store
(each round's training registers new versions) and prints each round and the median ratios.

A retrain's fixed costs (validation, starting the local cluster, the job's report) do not
shrink with the number of entities or the cost of a fit: the cheaper the model, the worse the
ratios (ridge fits about 20 entities a second here; gradient boosting is W2's model).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

# Importing _common pins BLAS/OpenMP threads; nothing above imports numpy.
from _common import (
    GRADIENT_BOOSTING,
    RIDGE,
    config_dict,
    fmt_ratio,
    fmt_seconds,
    make_config,
    make_dataset,
    say,
)

TARGETS = {"no change": 0.10, "1% changed": 0.15}
MODELS = {"ridge": RIDGE, "gradient_boosting": GRADIENT_BOOSTING}
CHANGED_SHARE = 0.01


def main() -> None:
    args = _arguments()
    root = Path(args.root or tempfile.mkdtemp(prefix="manymodels-retrain-bench-"))
    data = make_dataset(root, f"data-{args.entities}x{args.weeks}", args.entities, args.weeks)
    work = root / f"work-{args.registration}-{args.model}"
    config = make_config(config_dict(data, work, MODELS[args.model], args.registration))
    rounds = []
    for number in range(1, args.rounds + 1):
        say(f"round {number} of {args.rounds}")
        rows = [_timed("train", config)]
        rows.append(_timed("no change", config))
        changed = _revise_files(data, CHANGED_SHARE)
        say(f"rewrote the files of {changed} entities with revised sales")
        rows.append(_timed("1% changed", config))
        rounds.append(rows)
    for rows in rounds:
        _print_table(rows, args)
    if len(rounds) > 1:
        _print_medians(rounds)
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=2000)
    parser.add_argument("--weeks", type=int, default=156)
    parser.add_argument("--registration", choices=["per_entity", "per_job"], default="per_entity")
    parser.add_argument("--model", choices=sorted(MODELS), default="ridge")
    parser.add_argument("--root", help="keep the data and the store here (default: a temp dir)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the three steps")
    return parser.parse_args()


def _timed(step: str, config: Any) -> dict[str, Any]:
    import manymodels

    say(f"{step} ...")
    started = time.perf_counter()
    result = manymodels.train(config) if step == "train" else manymodels.retrain(config)
    seconds = time.perf_counter() - started
    say(f"{step}: {result.trained} trained, {result.skipped} skipped "
        f"({result.skipped_unread} unread), {result.failed} failed in {seconds:.1f} s")  # fmt: skip
    return {"step": step, "seconds": seconds, "trained": result.trained,
            "skipped": result.skipped, "unread": result.skipped_unread}  # fmt: skip


def _revise_files(data: Path, share: float) -> int:
    """Rewrite every ``1/share``-th partition's file with its last observed sale raised (by
    10% plus one: a sale of zero changes too)."""
    import pandas as pd

    files = sorted(data.glob("*/*/*.parquet"))
    step = max(1, round(1 / share))
    for path in files[::step]:
        frame = pd.read_parquet(path)
        last = frame["sales"].last_valid_index()
        frame.loc[last, "sales"] = frame.loc[last, "sales"] * 1.1 + 1.0
        frame.to_parquet(path, index=False)
    return len(files[::step])


def _print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    train = rows[0]["seconds"]
    print(f"\nretrain benchmark: {args.entities} entities x {args.weeks} weeks, {args.model}, "
          f"{args.registration}, 2 single-threaded workers")  # fmt: skip
    print(f"{'step':<12} {'seconds':>9} {'/ train':>8} {'target':>8} {'met':>4} "
          f"{'trained':>8} {'skipped':>8} {'unread':>7}")  # fmt: skip
    for row in rows:
        target = TARGETS.get(row["step"])
        ratio = row["seconds"] / train if train else None
        met = "" if target is None else ("yes" if ratio is not None and ratio <= target else "no")
        print(f"{row['step']:<12} {fmt_seconds(row['seconds']):>9} {fmt_ratio(ratio):>8} "
              f"{'' if target is None else f'<= {target:.2f}':>8} {met:>4} "
              f"{row['trained']:>8} {row['skipped']:>8} {row['unread']:>7}")  # fmt: skip


def _print_medians(rounds: list[list[dict[str, Any]]]) -> None:
    print(f"\nmedian over {len(rounds)} rounds")
    for step, target in TARGETS.items():
        ratios = sorted(
            row["seconds"] / rows[0]["seconds"] for rows in rounds for row in rows
            if row["step"] == step
        )  # fmt: skip
        median = statistics.median(ratios)
        spread = f"{fmt_ratio(ratios[0])}-{fmt_ratio(ratios[-1])}"
        met = "yes" if median <= target else "no"
        print(f"{step:<12} {fmt_ratio(median):>8} (rounds {spread})  <= {target:.2f} {met:>4}")


if __name__ == "__main__":
    main()
