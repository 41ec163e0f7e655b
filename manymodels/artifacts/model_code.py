"""The manymodels source that a saved model carries, so that it loads without manymodels.

A saved model's pickle names manymodels' classes and functions (``EntityModel``, a template's
``predict``), and its ``MLmodel`` names ``manymodels.flavor`` as the loader. Rather than pin a
``manymodels`` release that no package index has, every model folder holds, in ``code/``, the
package modules that loading and forecasting reach: MLflow puts that folder first on
``sys.path`` when it loads the model (its ``code_paths`` mechanism), so a fresh environment
built from the model's ``requirements.txt`` (published libraries only) can serve it.

Which modules those are is found by following the package's own imports from the loader
modules and the built-in templates, once per process; the libraries they import outside the
package give the model's pip requirements.
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

__all__ = ["CODE_DIR", "ROOT_MODULES", "model_code", "third_party_imports"]

# The folder inside a model that MLflow adds to ``sys.path`` (the MLmodel's ``code`` key).
CODE_DIR = "code"
PACKAGE = "manymodels"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
# What a saved model names: the two loader modules, and every built-in template's module
# (a model pickles its template's ``predict`` by reference).
ROOT_MODULES = (
    "manymodels.flavor", "manymodels.bundle",
    "manymodels.templates.sklearn_lags", "manymodels.templates.ets",
    "manymodels.templates.seasonal_naive", "manymodels.templates.naive",
    "manymodels.templates.auto_ets", "manymodels.templates.auto_arima",
    "manymodels.templates.theta", "manymodels.templates.croston",
)  # fmt: skip


@functools.lru_cache(maxsize=1)
def model_code() -> dict[str, str]:
    """The package sources a saved model needs: ``{path under code/: source text}``.

    Example:
        >>> "manymodels/entity_model.py" in model_code()
        True
    """
    return {_relative(path): path.read_text(encoding="utf-8") for path in sorted(_module_files())}


@functools.lru_cache(maxsize=1)
def third_party_imports() -> frozenset[str]:
    """Top-level names of the libraries the shipped modules import (not the standard
    library), e.g. ``{"numpy", "pandas", "statsforecast", ...}``."""
    names: set[str] = set()
    for path in _module_files():
        names.update(name.split(".")[0] for name in _imports(path))
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
    for name in _imports(path, with_members=True):
        if name == PACKAGE or name.startswith(f"{PACKAGE}."):
            found.add(name)
    return found


def _imports(path: Path, with_members: bool = False) -> set[str]:
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
