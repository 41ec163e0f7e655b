"""The manymodels source that a saved model carries, so that it loads without manymodels.

A saved model's pickle names manymodels' classes and functions (``EntityModel``, a template's
``predict``). Rather than pin a ``manymodels`` release that no package index has, every model
folder holds in ``code/`` (MLflow's ``code_paths``, which MLflow puts first on ``sys.path``
when it loads the model):

* ``manymodels_shipped/manymodels/``: the package modules that loading and forecasting reach,
  found by following the package's own imports from the loader modules and the built-in
  templates, once per process;
* a small loader module, the model's ``loader_module``, that hands over to
  ``manymodels.flavor`` (or ``manymodels.bundle``): from the installed manymodels where there
  is one, else from the shipped copy, which it appends to ``sys.path``.

The copy sits one folder down, so that MLflow's prepending never makes it hide an installed
manymodels (nor does it reach the processes that a loading process starts, such as Dask
workers). The libraries the shipped modules import give the model's pip requirements.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

__all__ = [
    "CODE_DIR",
    "ROOT_MODULES",
    "SHIPPED_DIR",
    "loader_code",
    "model_code",
    "runtime_imports",
    "third_party_imports",
]

# The folder inside a model that MLflow adds to ``sys.path`` (the MLmodel's ``code`` key), and
# the folder inside it that holds the copy of the package.
CODE_DIR = "code"
SHIPPED_DIR = "manymodels_shipped"
PACKAGE = "manymodels"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
# What a saved model names: the two loader modules, every built-in template's module (a model
# pickles its template's ``predict`` by reference), and the ensemble of ``model.combine``.
ROOT_MODULES = (
    "manymodels.flavor", "manymodels.bundle", "manymodels.ensembles",
    "manymodels.templates.sklearn_lags", "manymodels.templates.ets",
    "manymodels.templates.seasonal_naive", "manymodels.templates.naive",
    "manymodels.templates.auto_ets", "manymodels.templates.auto_arima",
    "manymodels.templates.theta", "manymodels.templates.croston",
)  # fmt: skip


_LOADER = '''"""The loader module that MLflow imports for this model: it hands over to {target},
from the installed manymodels where there is one, else from the copy of the manymodels modules
that the model carries ({shipped}/ beside this file), appended to sys.path so that it never
hides an installed manymodels. Written by manymodels.artifacts.model_code."""

import importlib
import importlib.util
import os
import sys

_SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "{shipped}")


def _load_pyfunc(data_path, model_config=None):
    if importlib.util.find_spec("manymodels") is None and _SHIPPED not in sys.path:
        sys.path.append(_SHIPPED)
    return importlib.import_module("{target}")._load_pyfunc(data_path)
'''


def loader_code(target: str) -> tuple[str, str]:
    """The loader module of models that ``target`` loads: its name and its source.

    Example:
        >>> loader_code("manymodels.flavor")[0]
        'manymodels_flavor_loader'
    """
    return f"{target.replace('.', '_')}_loader", _LOADER.format(target=target, shipped=SHIPPED_DIR)


@functools.lru_cache(maxsize=1)
def model_code() -> dict[str, str]:
    """The package sources a saved model needs: ``{path under code/: source text}``.

    Example:
        >>> "manymodels_shipped/manymodels/entity_model.py" in model_code()
        True
    """
    return {
        f"{SHIPPED_DIR}/{_relative(path)}": path.read_text(encoding="utf-8")
        for path in sorted(_module_files())
    }


@functools.lru_cache(maxsize=1)
def third_party_imports() -> frozenset[str]:
    """Top-level names of the libraries the shipped modules import (not the standard
    library), e.g. ``{"numpy", "pandas", "statsforecast", ...}``."""
    names: set[str] = set()
    for path in _module_files():
        names.update(name.split(".")[0] for name in runtime_imports(path))
    names.discard(PACKAGE)
    return frozenset(name for name in names if name not in sys.stdlib_module_names)


@functools.lru_cache(maxsize=1)
def _module_files() -> frozenset[Path]:
    """The files of the root modules and of every package module they import, with the
    ``__init__.py`` of each package on the way."""
    seen: set[Path] = set()
    pending = [_file_of(name) for name in ROOT_MODULES]
    while pending:
        path = pending.pop()
        if path is None or path in seen:
            continue
        seen.add(path)
        pending.extend(_file_of(name) for name in _package_imports(path))
        pending.extend(_parents(path))
    return frozenset(seen)


def _package_imports(path: Path) -> set[str]:
    """The package modules ``path`` imports, anywhere outside ``if TYPE_CHECKING:``; for
    ``from manymodels.x import y``, also ``manymodels.x.y`` when ``y`` is a module."""
    found = set()
    for name in runtime_imports(path, with_members=True):
        if name == PACKAGE or name.startswith(f"{PACKAGE}."):
            found.add(name)
    return found


def runtime_imports(path: Path, with_members: bool = False) -> set[str]:
    """Absolute module names ``path`` imports outside ``if TYPE_CHECKING:`` blocks; with
    ``with_members``, also ``module.name`` for each ``from module import name``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            if with_members:
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _file_of(module: str) -> Path | None:
    """The source file of a package module, or None for a name that is not a module."""
    parts = module.split(".")[1:]
    base = _PACKAGE_DIR.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _parents(path: Path) -> list[Path]:
    parents = []
    folder = path.parent
    while folder == _PACKAGE_DIR or _PACKAGE_DIR in folder.parents:
        parents.append(folder / "__init__.py")
        folder = folder.parent
    return parents


def _relative(path: Path) -> str:
    return path.relative_to(_PACKAGE_DIR.parent).as_posix()
