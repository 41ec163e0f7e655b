"""The ``manymodels`` command line.

Every command reports a mistake of the user's (config, data, template, registry) as one line on
stderr and exits with status 2; a job whose failures exceed the budget exits with 1. Only an
unexpected error shows a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from manymodels.errors import JobError, ManyModelsError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _config_options(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option(
        "--set", "overrides", multiple=True, metavar="KEY=VALUE",
        help="Override a config key, e.g. --set horizon=12 --set compute.n_workers=4.",
    )(function)  # fmt: skip
    function = click.option(
        "-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
        help="The YAML job configuration.",
    )(function)  # fmt: skip
    return function


def _quiet_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-q", "--quiet", is_flag=True, help="No progress bar.")(function)


def _friendly(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the package's own errors into one line on stderr and an exit status."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _terminate_as_interrupt()
        try:
            return function(*args, **kwargs)
        except JobError as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(1)
        except ManyModelsError as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: run the same command again to resume the job.", err=True)
            sys.exit(130)
        except Exception as exc:
            from manymodels.environment import environment_problem

            problem = environment_problem(exc)
            if problem is None:
                raise  # a bug: its traceback is the useful part
            click.echo(f"error: {_one_line(problem)}", err=True)
            sys.exit(2)

    return wrapper


def _terminate_as_interrupt() -> None:
    """Let SIGTERM (``kill``, a scheduler's time limit) stop a job as Ctrl-C does: its run is
    marked KILLED and its staging folder removed, instead of the process vanishing."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        signal.signal(signal.SIGTERM, interrupt)


def _one_line(exc: BaseException) -> str:
    from manymodels.secrets import scrub

    return " ".join(scrub(str(exc)).split())


def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*CloudPickle.*")
    for name in ("mlflow", "alembic", "distributed", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="manymodels")
def main() -> None:
    """Train, track and serve one forecasting model per entity, on Dask and MLflow.

    Start with 'manymodels demo', then copy configs/own-data.yaml for your data.
    """
    _quiet_libraries()


@main.command(context_settings=CONTEXT)
@_config_options
@click.option("--resume", metavar="JOB_ID", help="Resume this unfinished job.")
@click.option(
    "--fresh", is_flag=True, help="Start a new job even if one of this config is unfinished."
)
@click.option("--promote", is_flag=True, help="Make every new version the champion.")
@_quiet_option
@_friendly
def train(config_path: str, overrides: tuple[str, ...], resume: str | None, fresh: bool,
          promote: bool, quiet: bool) -> None:  # fmt: skip
    """Train and register one model per entity.

    An unfinished job of the same config (its driver killed) is resumed automatically.
    """
    from manymodels.config import load_config
    from manymodels.jobs.budget import require_within_budget
    from manymodels.jobs.training import train as train_job
    from manymodels.report import is_interactive, print_train_summary

    config = load_config(config_path, list(overrides))
    result = train_job(config, resume=resume, fresh=fresh, promote=promote,
                       progress=not quiet and is_interactive())  # fmt: skip
    print_train_summary(result)
    require_within_budget(result, config)


@main.command(context_settings=CONTEXT)
@_config_options
@click.option(
    "--force", is_flag=True, help="Retrain entities whose data and template are unchanged."
)
@click.option(
    "--new-versions", is_flag=True,
    help="With --force, register new versions even where data, code and params equal the "
    "champion's (by default they are compared only).",
)  # fmt: skip
@click.option("--resume", metavar="JOB_ID", help="Resume this unfinished job.")
@click.option(
    "--fresh", is_flag=True, help="Start a new job even if one of this config is unfinished."
)
@_quiet_option
@_friendly
def retrain(config_path: str, overrides: tuple[str, ...], force: bool, new_versions: bool,
            resume: str | None, fresh: bool, quiet: bool) -> None:  # fmt: skip
    """Train challengers; promote those that beat the champion on the same holdout."""
    from manymodels.config import load_config
    from manymodels.jobs.budget import require_within_budget
    from manymodels.jobs.training import retrain as retrain_job
    from manymodels.report import is_interactive, print_train_summary

    config = load_config(config_path, list(overrides))
    if new_versions and not force:
        raise click.UsageError("--new-versions needs --force (unchanged entities are skipped).")
    result = retrain_job(config, resume=resume, fresh=fresh, force=force,
                         new_versions=new_versions,
                         progress=not quiet and is_interactive())  # fmt: skip
    print_train_summary(result)
    require_within_budget(result, config)


@main.command(context_settings=CONTEXT)
@_config_options
@click.option(
    "--alias", help="Forecast with the versions that carry this alias (default: champion)."
)
@click.option(
    "--version", "version", type=click.IntRange(min=1), help="Forecast with this version number."
)
@click.option(
    "--output", type=click.Path(file_okay=False), help="Output folder (default: forecast.output)."
)
@_quiet_option
@_friendly
def forecast(config_path: str, overrides: tuple[str, ...], alias: str | None, version: int | None,
             output: str | None, quiet: bool) -> None:  # fmt: skip
    """Forecast every entity with its registered model into partitioned Parquet.

    The output folder is replaced only when the failures are within the budget, and only when
    manymodels wrote it (or it is new or empty).
    """
    from manymodels.config import load_config
    from manymodels.jobs.forecasting import forecast as forecast_job
    from manymodels.report import is_interactive, print_forecast_summary

    if alias and version:
        raise click.UsageError("give --alias or --version, not both")
    config = load_config(config_path, list(overrides))
    result = forecast_job(config, alias=alias, version=version, output=output,
                          progress=not quiet and is_interactive())  # fmt: skip
    print_forecast_summary(result)


@main.command(context_settings=CONTEXT)
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.option(
    "--partition-by", required=True, help="Comma-separated partition columns, e.g. store,brand."
)
@click.option(
    "--output", required=True, type=click.Path(file_okay=False),
    help="The folder to write: new, empty, or an earlier output of manymodels.",
)  # fmt: skip
@_friendly
def prepare(input_path: str, partition_by: str, output: str) -> None:
    """Partition a flat CSV or Parquet file into hive-style Parquet (store=1/brand=x/)."""
    from manymodels.prepare import prepare as prepare_data

    columns = [column.strip() for column in partition_by.split(",") if column.strip()]
    if not columns:
        raise click.BadParameter("name at least one column", param_hint="--partition-by")
    count = prepare_data(input_path, columns, output)
    click.echo(f"wrote {count} partitions to {output}")


@main.command(context_settings=CONTEXT)
@_config_options
@click.option("--alias", help="Serve the versions with this alias (forecast.alias, champion).")
@click.option("--host", help="Address to listen on (serve.host, 127.0.0.1).")
@click.option("--port", type=int, help="TCP port to listen on (serve.port, 8000).")
@click.option("--cache-size", type=int, help="Models kept loaded (serve.cache_size, 256).")
@_friendly
def serve(config_path: str, overrides: tuple[str, ...], alias: str | None, host: str | None,
          port: int | None, cache_size: int | None) -> None:  # fmt: skip
    """Serve every entity's forecasts over HTTP: POST /forecast, GET /health, GET /entities.

    Models load on first use into a cache of the most recently used; a promotion is served
    within serve.refresh_seconds, without a restart. See the README's Serving section.
    """
    from manymodels.config import load_config
    from manymodels.serving import serve as run_server

    # As config overrides, so that the options are validated like the config's own keys.
    options = {"forecast.alias": alias, "serve.host": host, "serve.port": port,
               "serve.cache_size": cache_size}  # fmt: skip
    chosen = [f"{key}={value}" for key, value in options.items() if value is not None]
    run_server(load_config(config_path, [*overrides, *chosen]))


@main.command("new-template", context_settings=CONTEXT)
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
@_friendly
def new_template(path: str, force: bool) -> None:
    """Write a starter training template to PATH, to edit and use as model.template."""
    from manymodels.templates import starter_template_text

    target = Path(path)
    if target.exists() and not force:
        raise ManyModelsError(f"{path} exists; pass --force to overwrite it.")
    _write_creating_folders(target, starter_template_text())
    click.echo(f"wrote {path}; to use it, set 'model: {{template: {target.resolve()}}}' in your "
               "config (a relative path there is read from the config file's folder)")  # fmt: skip


def _write_creating_folders(target: Path, text: str) -> None:
    """Write a new file, creating its missing folders, as a user naming a new path expects."""
    blocker = next((folder for folder in target.parents if folder.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ManyModelsError(
            f"{target}: {blocker} is a file, not a folder. Hint: choose another path."
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ManyModelsError(f"{target}: cannot write it ({exc.strerror}).") from None


@main.command(context_settings=CONTEXT)
@_config_options
@_friendly
def validate(config_path: str, overrides: tuple[str, ...]) -> None:
    """Check a config, its template and its data without training anything.

    Every problem found is listed, one line each; a valid config prints where a job of it
    reads and writes.
    """
    from manymodels.validation import validate_config

    found = validate_config(config_path, list(overrides))
    for problem in found.problems:
        click.echo(f"error: {_one_line(ManyModelsError(problem))}", err=True)
    if not found.ok:
        sys.exit(2)
    click.echo(f"{config_path}: ok ({len(found.partitions)} partitions, {found.template})")
    for what, where in found.locations():
        click.echo(f"  {what + ':':<19}{_one_line(ManyModelsError(where))}")


@main.command(context_settings=CONTEXT)
@_config_options
@click.option("--job", "job_id", metavar="JOB_ID", help="The job to report on (default: the newest).")
@click.option(
    "--output", default="report.html", show_default=True, type=click.Path(dir_okay=False),
    help="The HTML file to write.",
)  # fmt: skip
@_friendly
def report(config_path: str, overrides: tuple[str, ...], job_id: str | None, output: str) -> None:
    """Write the HTML report of a training job: summary, metric distributions, failures, and
    plots of the worst and a sample of the best entities. One file, no network needed."""
    from manymodels.config import load_config
    from manymodels.exploration.html_report import write_report

    config = load_config(config_path, list(overrides))
    path = write_report(config, job_id=job_id, output=output)
    click.echo(f"wrote {path}")


@main.command(context_settings=CONTEXT)
@click.option("--workdir", default="manymodels-demo", show_default=True,
              type=click.Path(file_okay=False), help="Where data, config, MLflow store and forecasts go.")  # fmt: skip
@click.option("--entities", default=500, show_default=True, type=click.IntRange(min=3),
              help="Number of store x brand series.")  # fmt: skip
@click.option("--weeks", default=156, show_default=True, type=click.IntRange(min=30),
              help="Weeks of history.")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed of the data.")
@click.option("--force", is_flag=True,
              help="Use a non-empty workdir that no earlier demo made; its config.yaml is "
                   "overwritten (folders that manymodels did not write are never replaced).")  # fmt: skip
@_quiet_option
@_friendly
def demo(workdir: str, entities: int, weeks: int, seed: int, force: bool, quiet: bool) -> None:
    """Generate OJ-style sales data, train a model per entity, and forecast them all.

    The workdir must be new, empty, or one an earlier demo made (rerunning there is fine).
    """
    from manymodels.demo import run_demo

    run_demo(os.path.abspath(workdir), entities, weeks, seed, progress=not quiet, force=force)


# Defined in its own module, with the options and error handling above.
from manymodels.lifecycle.cli import models_group  # noqa: E402

main.add_command(models_group(CONTEXT, _config_options, _friendly))

if __name__ == "__main__":
    main()
