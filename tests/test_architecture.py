"""The layering the README describes, enforced on the source: who may import what, and who
may call MLflow's client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from manymodels.artifacts.model_code import runtime_imports

PACKAGE = Path(__file__).resolve().parent.parent / "manymodels"

# Modules allowed to import these libraries at run time (type-checking imports are free).
ALLOWED = {
    "distributed": {"engine"},
    "dask": {"engine"},
    "mlflow": {"tracking", "artifacts"},
}
# The only package that calls an MlflowClient's methods.
CLIENT_OWNER = "tracking"
# The pure core: no Dask, no MLflow, and none of the orchestration above it.
PURE = {"config", "naming", "metrics", "timeseries", "fitting", "entity_model", "promotion",
        "guard", "planning", "templates", "lineage"}  # fmt: skip
ORCHESTRATION = ("manymodels.jobs", "manymodels.cli", "manymodels.engine", "manymodels.tasks")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).with_suffix("")
        parts = [part for part in relative.parts if part != "__init__"]
        found[".".join(parts) or "__init__"] = path
    return found


def _runtime_imports(path: Path) -> set[str]:
    """Absolute names imported outside ``if TYPE_CHECKING:`` blocks."""
    return runtime_imports(path)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_heavy_libraries_stay_in_their_layer(module):
    imports = _runtime_imports(_modules()[module])
    top = module.split(".")[0]
    for library, owners in ALLOWED.items():
        used = {name for name in imports if name == library or name.startswith(f"{library}.")}
        if used:
            assert top in owners, (
                f"manymodels.{module} imports {sorted(used)}; only {sorted(owners)} may"
            )


@pytest.mark.parametrize("module", sorted(m for m in _modules() if m.split(".")[0] in PURE))
def test_pure_core_knows_no_orchestration(module):
    imports = _runtime_imports(_modules()[module])
    leaks = {name for name in imports if name.startswith(ORCHESTRATION)}
    assert not leaks, f"manymodels.{module} imports {sorted(leaks)}"


def _client_calls(source: str) -> list[str]:
    """Calls of an MlflowClient method on anything named like a client (``client``,
    ``session.client``, ``self.mlflow_client``), and a client reached through ``.client``
    without being called (handed on to code that calls it)."""
    from mlflow import MlflowClient

    methods = {name for name in dir(MlflowClient) if not name.startswith("_")}
    tree = ast.parse(source)
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "MlflowClient":
            found.append("MlflowClient")
        if not isinstance(node, ast.Attribute):
            continue
        receiver = ast.unparse(node.value)
        if id(node) in called and node.attr in methods and "client" in receiver.lower():
            found.append(f"{receiver}.{node.attr}()")
        elif node.attr == "client" and id(node) not in called:
            found.append(f"{receiver}.client")
    return found


@pytest.mark.parametrize(
    "module", sorted(m for m in _modules() if m.split(".")[0] != CLIENT_OWNER)
)
def test_only_tracking_calls_the_mlflow_client(module):
    source = _modules()[module].read_text(encoding="utf-8")
    assert not _client_calls(source), (
        f"manymodels.{module} uses MLflow's client: {_client_calls(source)}; "
        "go through manymodels.tracking"
    )


def test_the_client_check_catches_method_calls_not_only_imports():
    source = (
        "def finish(session, job, pending):\n"
        "    session.client.set_terminated(job.run_id, status='KILLED')\n"
        "    log(session.client, job)\n"
        "    pending.client().submit(job)\n"  # a Dask client: not MLflow's
    )
    assert set(_client_calls(source)) == {"session.client.set_terminated()", "session.client"}


def test_config_imports_only_its_errors():
    imports = _runtime_imports(_modules()["config"])
    assert {name for name in imports if name.startswith("manymodels")} == {"manymodels.errors"}


def test_loading_a_model_does_not_import_dask():
    import subprocess
    import sys

    code = ("import sys, manymodels.flavor, manymodels.bundle; "
            "print(any(m.split('.')[0] in ('distributed', 'dask') for m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_the_package_type_checks(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), "manymodels"],
        cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
