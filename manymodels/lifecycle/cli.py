"""``manymodels models``: list, show, promote, roll back, prune and find stale models.

Every command works on the registry of ``-c CONFIG``. A bad request (an unknown entity or job,
a version that does not exist, a malformed ``--where``) is one line on stderr with exit status
2, and nothing in the registry changes: requests are checked in full before anything is done.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import pandas as pd

    from manymodels.config import Config

__all__ = ["models_group"]

Decorator = Callable[[Callable[..., Any]], Any]

# The columns of the list's table on a terminal (csv and json have them all).
_TABLE_FIELDS = ("model_name", "champion", "versions", "age_days", "winner", "template", "mase",
                 "rmse", "job_id")  # fmt: skip


def models_group(
    context: dict[str, Any], config_options: Decorator, friendly: Decorator
) -> click.Group:
    """The ``models`` command group, built with the main command line's settings, its
    ``-c CONFIG``/``--set`` options and its error handling (handed in, so that this module never
    imports the main command line's module)."""

    @click.group(context_settings=context)
    def models() -> None:
        """Look after the registered models: list, show, promote, rollback, prune, stale."""

    def command(name: str | None = None) -> Decorator:
        def wrap(function: Callable[..., Any]) -> click.Command:
            return models.command(name, context_settings=context, help=function.__doc__)(
                config_options(friendly(function))
            )

        return wrap

    for name, function, options in _COMMANDS:
        # A fresh wrapper per group, so that the options land on it, not on the function.
        wrapped = functools.wraps(function)(functools.partial(function))
        for option in reversed(options):
            wrapped = option(wrapped)
        command(name)(wrapped)
    return models


def _load(config_path: str, overrides: Sequence[str]) -> Config:
    from manymodels.config import load_config

    return load_config(config_path, list(overrides))


_FORMAT = click.option(
    "--format", "output_format", type=click.Choice(["table", "csv", "json"]), default="table",
    show_default=True, help="How to print the rows.",
)  # fmt: skip
_DRY_RUN = click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
_VERSION = click.option("--version", "version", type=click.IntRange(min=1),
                        help="The version (with one entity's KEY=VALUE).")  # fmt: skip
_JOB = click.option("--job", "job_id", metavar="JOB_ID", help="Every entity of this training job.")
_ENTITY = click.argument("key_values", nargs=-1, metavar="[KEY=VALUE]...")


def list_command(config_path: str, overrides: tuple[str, ...], where: tuple[str, ...],
                 sort: tuple[str, ...], limit: int | None, output_format: str) -> None:  # fmt: skip
    """List every entity's model with its champion's metrics and tags."""
    from manymodels.lifecycle.listing import list_models

    rows = list_models(_load(config_path, overrides), where, sort, limit)
    _print_rows(rows, output_format, _TABLE_FIELDS)


def show_command(config_path: str, overrides: tuple[str, ...], key_values: tuple[str, ...],
                 output_format: str) -> None:  # fmt: skip
    """Show one entity's versions, aliases, metrics, lineage and backtests."""
    from manymodels.lifecycle.catalog import parse_keys
    from manymodels.lifecycle.listing import show_model

    config = _load(config_path, overrides)
    details = show_model(config, parse_keys(key_values, config.data.entity_cols))
    if output_format == "json":
        click.echo(json.dumps({
            "model_name": details.name, "keys": details.keys, "aliases": details.aliases,
            "versions": _records(details.versions), "backtests": _records(details.backtests),
        }, indent=2, default=str))  # fmt: skip
        return
    if output_format == "csv":
        click.echo(details.versions.to_csv(index=False), nl=False)
        return
    _show_table(details)


def promote_command(config_path: str, overrides: tuple[str, ...], key_values: tuple[str, ...],
                    job_id: str | None, version: int | None, dry_run: bool) -> None:  # fmt: skip
    """Make a version the champion: one entity's newest (or --version N), or every version
    that --job JOB_ID registered."""
    from manymodels.lifecycle.moves import promote_models

    config = _load(config_path, overrides)
    moves = promote_models(config, _keys(config, key_values), job_id=job_id, version=version,
                           dry_run=dry_run)  # fmt: skip
    _print_changes([move.describe() for move in moves], "moved champion of", "models", dry_run)


def rollback_command(config_path: str, overrides: tuple[str, ...], key_values: tuple[str, ...],
                     job_id: str | None, version: int | None, dry_run: bool) -> None:  # fmt: skip
    """Move the champion back: one entity's to the version before it (or --version N), or
    every entity whose champion --job JOB_ID registered to its version before that job."""
    from manymodels.lifecycle.moves import rollback_models

    config = _load(config_path, overrides)
    moves = rollback_models(config, _keys(config, key_values), job_id=job_id, version=version,
                            dry_run=dry_run)  # fmt: skip
    _print_changes([move.describe() for move in moves], "moved back champion of", "models",
                   dry_run)  # fmt: skip


def prune_command(config_path: str, overrides: tuple[str, ...], key_values: tuple[str, ...],
                  keep: int | None, version: int | None, dry_run: bool) -> None:  # fmt: skip
    """Delete old versions, never one with an alias (their artifacts stay in the jobs' runs)."""
    from manymodels.lifecycle.pruning import prune_models

    config = _load(config_path, overrides)
    deletions = prune_models(config, keep, _keys(config, key_values), version=version,
                             dry_run=dry_run)  # fmt: skip
    _print_changes([deletion.describe() for deletion in deletions], "deleted", "versions",
                   dry_run)  # fmt: skip


def stale_command(config_path: str, overrides: tuple[str, ...], older_than: str | None,
                  changed: bool, output_format: str) -> None:  # fmt: skip
    """List entities whose champion is older than --older-than AGE, or (--changed) whose data
    changed since it was trained (reads every entity's rows on the cluster)."""
    from manymodels.lifecycle.stale import stale_models

    rows = stale_models(_load(config_path, overrides), older_than, changed)
    _print_rows(rows, output_format, ["model_name", "champion", "registered", "age_days",
                                      "reason"])  # fmt: skip


_COMMANDS: list[tuple[str, Callable[..., Any], list[Decorator]]] = [
    ("list", list_command, [
        click.option("--where", multiple=True, metavar="CONDITION",
                     help="Keep rows where FIELD OP VALUE holds, e.g. 'mase > 1.2' "
                          "(repeat: all must hold)."),
        click.option("--sort", multiple=True, metavar="FIELD",
                     help="Sort by a field, '-FIELD' for descending, e.g. --sort -mase."),
        click.option("--limit", type=click.IntRange(min=1), help="Print at most N rows."),
        _FORMAT,
    ]),
    ("show", show_command, [
        click.argument("key_values", nargs=-1, required=True, metavar="KEY=VALUE..."), _FORMAT,
    ]),
    ("promote", promote_command, [_ENTITY, _JOB, _VERSION, _DRY_RUN]),
    ("rollback", rollback_command, [_ENTITY, _JOB, _VERSION, _DRY_RUN]),
    ("prune", prune_command, [
        _ENTITY,
        click.option("--keep", type=int,
                     help="Keep the N newest versions of each entity (and every aliased one)."),
        click.option("--version", "version", type=click.IntRange(min=1),
                     help="Delete this one version of the entity given by KEY=VALUE."),
        click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing."),
    ]),
    ("stale", stale_command, [
        click.option("--older-than", metavar="AGE",
                     help="Champions registered longer ago than AGE, e.g. 30d, 12h, 4w."),
        click.option("--changed", is_flag=True,
                     help="Entities whose data changed since their champion was trained."),
        _FORMAT,
    ]),
]  # fmt: skip


def _keys(config: Config, key_values: Sequence[str]) -> dict[str, str] | None:
    from manymodels.lifecycle.catalog import parse_keys

    return parse_keys(key_values, config.data.entity_cols) if key_values else None


def _print_changes(lines: list[str], verb: str, noun: str, dry_run: bool) -> None:
    for line in lines:
        click.echo(f"  {line}")
    if dry_run:
        click.echo(f"dry run: would have {verb} {len(lines)} {noun}; nothing changed")
    else:
        click.echo(f"{verb} {len(lines)} {noun}")


def _print_rows(rows: pd.DataFrame, output_format: str, table_fields: Sequence[str]) -> None:
    if output_format == "csv":
        click.echo(rows.to_csv(index=False), nl=False)
    elif output_format == "json":
        click.echo(json.dumps(_records(rows), indent=2, default=str))
    elif rows.empty:
        click.echo("0 models")
    else:
        shown = [field for field in dict.fromkeys(table_fields) if field in rows.columns]
        _rich_table(rows[shown], title=f"{len(rows)} models")


def _show_table(details: Any) -> None:
    stdout = _console()
    aliases = ", ".join(f"{alias} -> {n}" for alias, n in sorted(details.aliases.items()))
    stdout.print(f"[bold]{details.name}[/bold]  ({aliases or 'no aliases'})")
    fields = ["version", "aliases", "registered", "job_id", "winner", "template", "mase", "mae",
              "rmse", "coverage.80", "trained_until", "data_fingerprint"]  # fmt: skip
    versions = details.versions
    _rich_table(versions[[field for field in fields if field in versions]], title="versions")
    backtests = details.backtests
    if backtests.empty:
        stdout.print("no backtest recorded for these versions")
        return
    chosen = _winner_rows(backtests, versions)
    columns = [c for c in ("version", "window", "cutoff", "candidate", "actual", "prediction")
               if c in chosen]  # fmt: skip
    time_col = [c for c in chosen.columns if c not in {*columns, *details.keys}][:1]
    _rich_table(chosen[[*columns[:3], *time_col, *columns[3:]]],
                title="backtest of each version's chosen model (all candidates: --format json)")  # fmt: skip


def _winner_rows(backtests: pd.DataFrame, versions: pd.DataFrame) -> pd.DataFrame:
    """Each version's backtest rows of the candidate it registered (``winner``)."""
    if "candidate" not in backtests or "winner" not in versions:
        return backtests
    winners = dict(zip(versions["version"], versions["winner"], strict=True))
    mine = backtests["candidate"] == backtests["version"].map(winners)
    return backtests[mine] if mine.any() else backtests


def _rich_table(rows: pd.DataFrame, title: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in rows.columns:
        table.add_column(str(column), overflow="fold")
    for values in rows.itertuples(index=False):
        table.add_row(*(_cell(value) for value in values))
    _console().print(table)


def _console() -> Any:
    from rich.console import Console

    # Piped into a file or a pager, a table keeps its rows whole instead of folding to 80.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 220)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"
    return "" if value is None else str(value)


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    # Through pandas' own JSON: NaN becomes null and timestamps ISO text.
    return json.loads(rows.to_json(orient="records", date_format="iso")) if len(rows) else []
