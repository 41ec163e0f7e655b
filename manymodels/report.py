"""What users see: progress bars and end-of-job summaries."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from manymodels.intervals import level_label

if TYPE_CHECKING:
    from manymodels.jobs.results import ForecastResult, TrainResult

__all__ = [
    "announce_dashboard",
    "dashboard_link",
    "progress_bar",
    "print_train_summary",
    "print_forecast_summary",
    "champion_line",
]

console = Console(stderr=True, highlight=False)
stdout = Console(highlight=False, soft_wrap=True)


class _Bar:
    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress, self._task = progress, task
        self.ok = self.failed = 0

    def advance(self, partitions: int, ok: int, failed: int) -> None:
        self.ok += ok
        self.failed += failed
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=partitions, description=self._describe())

    def _describe(self) -> str:
        failed = f", [red]{self.failed} failed[/red]" if self.failed else ""
        return f"{self.ok} ok{failed}"


@contextlib.contextmanager
def progress_bar(label: str, total: int, enabled: bool) -> Iterator[_Bar]:
    """A progress bar over ``total`` partitions (silent when not ``enabled``)."""
    if not enabled:
        yield _Bar(None, None)
        return
    progress = Progress(
        TextColumn(f"[bold]{label}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("partitions"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=False,
    )
    with progress:
        yield _Bar(progress, progress.add_task("", total=total))


def dashboard_link(client: Any) -> str | None:
    """The Dask dashboard address of a cluster this process started, when it serves one.

    A cluster reached by address is left out: its owner knows its dashboard. Without bokeh,
    Dask serves no dashboard, and the scheduler lists no such service.
    """
    if getattr(client, "cluster", None) is None:
        return None
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:  # noqa: BLE001 - a link is a courtesy; the job must not depend on it
        return None
    return str(client.dashboard_link) if "dashboard" in services else None


def announce_dashboard(client: Any, enabled: bool) -> None:
    """Print the local cluster's dashboard link on stderr, beside the progress bar."""
    link = dashboard_link(client) if enabled else None
    if link:
        console.print(f"[dim]Dask dashboard: {link}[/dim]")


def _fmt(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:,.3f}"


def print_train_summary(result: TrainResult) -> None:
    """A short summary of a training or retraining job, on stdout."""
    out = stdout
    if result.kind == "retrain" and result.total and result.skipped == result.total:
        out.print(f"[bold]retrain {result.job_id}[/bold]: nothing changed, all {result.total} "
                  f"entities skipped ({result.skipped_unread} without reading their data) in "
                  f"{result.seconds:.1f} s (run {result.run_id})")  # fmt: skip
        return
    out.print(f"[bold]{result.kind} {result.job_id}[/bold] finished in {result.seconds:.1f} s")
    if result.resumed_with is not None:
        out.print(f"  resumed an unfinished job: {result.resumed_with} entities were already done")
    out.print(
        f"  entities: {result.trained} trained, {result.failed} failed"
        + (f", {result.skipped} unchanged (skipped)" if result.skipped else "")
        + f" of {result.total}"
    )
    means = result.mean_metrics()
    if means:
        out.print(
            "  mean backtest metrics: " + ", ".join(f"{k} {_fmt(v)}" for k, v in means.items())
        )
    _print_selection(out, result)
    line = champion_line(result)
    if line:
        out.print(f"  {line}")
    if result.failed:
        out.print("  failures by error:")
        for line in result.failure_digest(limit=5):
            out.print(f"    {line}")
    out.print(f"  MLflow: {result.tracking_uri}  (run {result.run_id})")
    if result.ui_hint:
        out.print(f"  open the UI: {result.ui_hint}")


def champion_line(result: TrainResult) -> str:
    """How many of the job's new versions became champion, how many did not, and why, e.g.
    ``12 new versions; 1 became champion (first version), 11 did not: champion kept, ...``."""
    if result.registration == "per_job":
        if result.kind != "retrain":
            return ""
        moved, first = len(result.promoted), len(result.first_champions)
        return (f"champion moved for {moved} entities; {result.trained - moved - first} "
                "challengers kept the old champion"
                + (f"; {first} new entities got their first champion" if first else ""))  # fmt: skip
    counts = result.champion_counts()
    if not counts["new"]:
        return ""
    why = [f"{counts['first']} first version"] if counts["first"] else []
    if counts["promoted"]:
        won = "beat the champion on the same backtest" if result.kind == "retrain" else "--promote"
        why.append(f"{counts['promoted']} {won}")
    became = counts["first"] + counts["promoted"]
    line = f"{counts['new']} new versions; {became} became champion" + (
        f" ({', '.join(why)})" if why else ""
    )
    if counts["kept"]:
        kept = ("the champion scored as well or better (alias challenger)"
                if result.kind == "retrain" else "champion kept")  # fmt: skip
        line += (f", {counts['kept']} did not: {kept}; promote with "
                 f"'manymodels models promote --job {result.job_id}'")  # fmt: skip
    return line


def _print_panel(out: Console, result: TrainResult) -> None:
    """The job's prior and interval calibration, and whose they were."""
    in_job = f" in job {result.panel_from}" if result.panel_from else ""
    if result.prior:
        weights = sorted(result.prior.items(), key=lambda item: item[1])
        out.print(f"  candidates weighed by the panel's prior{in_job} (model.prior): "
                  + ", ".join(f"{name} x{factor:.2f}" for name, factor in weights))  # fmt: skip
    if any(factor > 1 for factor in result.calibration.values()):
        out.print(f"  intervals widened by how they held on the panel's last backtest "
                  f"window{in_job} (evaluation.calibrate): "
                  + ", ".join(f"x{factor:.2f} at {level_label(level)}%"
                              for level, factor in sorted(result.calibration.items())))  # fmt: skip


def _print_selection(out: Console, result: TrainResult) -> None:
    summary = result.selection_summary()
    if "beats_seasonal_naive" in summary:
        out.print(
            f"  beats seasonal naive for {summary['beats_seasonal_naive']} of "
            f"{summary['scored_against_seasonal_naive']} entities on the backtest "
            f"(mean {result.metric} skill {_fmt(summary[f'mean_skill_{result.metric}'])})"
        )
    winners = result.winners()
    if len(winners) > 1 or (winners and "fallback" in result.entities):
        out.print("  chosen models: " + ", ".join(f"{name} {n}" for name, n in winners.items()))
    _print_panel(out, result)
    if summary.get("fewer_windows"):
        out.print(f"  {summary['fewer_windows']} entities were too short for "
                  f"{result.windows} backtest windows and were scored on fewer (column "
                  "windows of entity_results)")  # fmt: skip
    if summary.get("fallbacks"):
        out.print(f"  {summary['fallbacks']} entities were too short for every candidate and got "
                  "the fallback template (tagged manymodels.fallback)")  # fmt: skip
    if summary.get("heavily_filled"):
        out.print(f"  [yellow]warning:[/yellow] {summary['heavily_filled']} entities have more "
                  "than 20% of their target values filled in (column filled_share of "
                  "entity_results); see data.fill_missing")  # fmt: skip


def print_forecast_summary(result: ForecastResult) -> None:
    """A short summary of a forecasting job, on stdout."""
    out = stdout
    out.print(f"[bold]forecast {result.job_id}[/bold] finished in {result.seconds:.1f} s")
    out.print(
        f"  entities: {result.forecast} forecast, {result.failed} failed"
        + (f", {result.without_model} without a model" if result.without_model else "")
        + f" of {result.total}"
    )
    out.print(f"  {result.rows} rows written to {result.output}")
    if result.carried_forward:
        out.print(f"  [yellow]note:[/yellow] {result.carried_forward} entities had exogenous "
                  "values carried forward into forecast periods that lacked them "
                  "(data.future_exog: carry_forward)")  # fmt: skip
    if result.failed:
        for line in result.failure_digest(limit=5):
            out.print(f"    {line}")
        out.print(f"  failed: {_some_names(result.failures_named())}")


def _some_names(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    more = len(names) - limit
    return f"{shown} and {more} more (see failures.csv in the run)" if more > 0 else shown


def is_interactive() -> bool:
    """Whether stderr is a terminal (progress bars are drawn only there by default)."""
    return sys.stderr.isatty()
