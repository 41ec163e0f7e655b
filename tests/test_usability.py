"""The stumbles a new user met: validate, the own-data template, cut hints, the command table,
scripts without a main guard, progress bars and the dashboard link."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import click
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from manymodels.cli import main
from manymodels.config import Config, load_config
from manymodels.jobs.results import _failure_digest
from manymodels.mainguard import _has_guard
from tests.conftest import base_config

REPO = Path(__file__).resolve().parents[1]
OWN_DATA = REPO / "configs" / "own-data.yaml"


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    found = []
    for name, field in model.model_fields.items():
        if name == "source":
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.extend(_keys(annotation, f"{prefix}{name}."))
        else:
            found.append(f"{prefix}{name}")
    return found


def test_own_data_config_shows_every_key() -> None:
    text = OWN_DATA.read_text(encoding="utf-8")
    for key in _keys(Config):
        section, _, name = key.rpartition(".")
        if section:
            block = re.search(rf"^{section}:\n((?:[ #].*\n|\n)*)", text, re.MULTILINE)
            assert block, f"no section '{section}:'"
            assert re.search(rf"^\s*#?\s*{name}:", block.group(1), re.MULTILINE), key
        else:
            assert re.search(rf"^#?\s*{name}:", text, re.MULTILINE), key


def test_own_data_config_writes_beside_itself() -> None:
    config = load_config(OWN_DATA)
    folder = OWN_DATA.parent.resolve()
    for path in (config.data.path, config.forecast.output, config.work_dir):
        assert Path(path).resolve().is_relative_to(folder), path


def _write(folder: Path, raw: dict) -> Path:
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_validate_lists_every_problem_in_one_run(tmp_path: Path, oj_data: Path) -> None:
    raw = base_config(oj_data, tmp_path / "work", horizon=0, compute={"n_worker": 2})
    raw["data"]["target_colum"] = raw["data"].pop("target_col")
    out = CliRunner().invoke(main, ["validate", "-c", str(_write(tmp_path, raw))])

    lines = out.output.strip().splitlines()
    assert out.exit_code == 2 and all(line.startswith("error: ") for line in lines)
    joined = "\n".join(lines)
    for fragment in ("'data.target_colum'", "'compute.n_worker'", "'horizon'", "'data.target_col'"):
        assert fragment in joined
    assert not (tmp_path / "work").exists()


def test_validate_lists_problems_of_template_data_and_output(tmp_path: Path, oj_data: Path):
    raw = base_config(oj_data, tmp_path / "work")
    raw["data"]["target_col"] = "revenue"
    raw["model"] = {"template": "prophet"}
    raw["forecast"] = {"output": str(oj_data)}
    out = CliRunner().invoke(main, ["validate", "-c", str(_write(tmp_path, raw))])

    assert out.exit_code == 2
    assert len(out.output.strip().splitlines()) == 3
    for fragment in (
        "'prophet' is not a built-in",
        "'revenue' is not in the data",
        "forecast.output",
    ):
        assert fragment in out.output


def test_validate_prints_where_a_job_writes(tmp_path: Path, oj_data: Path) -> None:
    path = _write(tmp_path, base_config(oj_data, tmp_path / "work"))
    out = CliRunner().invoke(main, ["validate", "-c", str(path)])

    assert out.exit_code == 0, out.output
    assert "ok (12 partitions, template sklearn_lags)" in out.output
    work = tmp_path / "work"
    assert f"sqlite:///{work / 'mlflow.db'}" in out.output
    assert str(work / "jobs") in out.output and str(work / "forecasts") in out.output
    assert not work.exists()


def test_failure_digest_keeps_the_whole_hint() -> None:
    message = "series too short: " + " ".join(["needs more periods"] * 20) + ". Hint: fix it."
    table = pd.DataFrame(
        [{"status": "failed", "stage": "train", "error_type": "EntityError", "error": message}] * 2
    )
    assert _failure_digest(table, 5) == [f"2 x train/EntityError: {message}"]


def _readme_rows() -> dict[str, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    rows = re.findall(
        r"^\| `manymodels ([a-z][a-z-]*(?: [a-z][a-z-]*)?)([^`]*)` \|", text, re.MULTILINE
    )
    return {name: rest for name, rest in rows}


def _commands() -> dict[str, click.Command]:
    """Every command by the words that call it: a group's subcommands as ``group sub``."""
    found: dict[str, click.Command] = {}
    for name, command in main.commands.items():
        if isinstance(command, click.Group):
            found.update({f"{name} {sub}": each for sub, each in command.commands.items()})
        else:
            found[name] = command
    return found


def test_readme_command_table_matches_every_help() -> None:
    rows = _readme_rows()
    assert set(rows) == set(_commands())
    for name, command in _commands().items():
        flags = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", rows[name]))
        options = [param for param in command.params if param.param_type_name == "option"]
        documented = set()
        for option in options:
            if "--help" in option.opts:
                continue
            assert flags & set(option.opts), f"{name}: README lacks {option.opts}"
            documented |= set(option.opts) | set(option.secondary_opts)
        assert flags <= documented, f"{name}: README names {flags - documented}"


GUARDLESS = """
import manymodels
manymodels.train(manymodels.config_from_dict({config!r}))
"""


def test_a_script_without_main_guard_gets_one_sentence(tmp_path: Path, oj_data: Path) -> None:
    script = tmp_path / "job.py"
    raw = base_config(oj_data, tmp_path / "work", compute={"n_workers": 1})
    script.write_text(GUARDLESS.format(config=raw), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)  # fmt: skip

    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "job.py calls manymodels.train() at its top level" in last
    assert 'if __name__ == "__main__":' in last
    assert len(done.stderr.splitlines()) < 15 and not (tmp_path / "work").exists()


def test_a_guarded_script_passes(tmp_path: Path) -> None:
    script = tmp_path / "ok.py"
    script.write_text('import sys\n\nif "__main__" == __name__:\n    pass\n', encoding="utf-8")
    assert _has_guard(str(script))


def test_progress_bar_shows_the_time_left() -> None:
    from manymodels import report

    buffer = io.StringIO()
    original = report.console
    report.console = report.Console(file=buffer, force_terminal=True, width=120)
    try:
        with report.progress_bar("train", 4, enabled=True) as bar:
            bar.advance(2, 2, 0)
    finally:
        report.console = original
    assert "eta" in buffer.getvalue()


def test_dashboard_link_of_a_local_cluster_only(dask_scheduler: str) -> None:
    pytest.importorskip("bokeh", reason="Dask serves a dashboard only with bokeh")
    from distributed import Client, LocalCluster

    from manymodels.report import dashboard_link

    cluster = LocalCluster(n_workers=1, processes=False, dashboard_address=":0")
    with cluster, Client(cluster) as client:
        assert re.match(r"http://[\w.]+:\d+/status", dashboard_link(client) or "")
    with Client(dask_scheduler) as remote:
        assert dashboard_link(remote) is None


@pytest.mark.parametrize("progress", [True, False])
def test_a_local_cluster_draws_dashboard_pages_only_for_a_job_that_shows_progress(progress):
    # Setting the pages up costs the driver about 0.3 s; a quiet job (cron, -q) goes without.
    pytest.importorskip("bokeh", reason="Dask serves a dashboard only with bokeh")
    import urllib.error
    import urllib.request

    from manymodels.config import ComputeConfig
    from manymodels.engine import cluster_in_background

    with cluster_in_background(ComputeConfig(n_workers=1), dashboard=progress) as pending:
        client = pending.client()
        try:
            with urllib.request.urlopen(client.dashboard_link, timeout=10) as page:
                drawn = page.status == 200
        except urllib.error.HTTPError:
            drawn = False
    assert drawn is progress
