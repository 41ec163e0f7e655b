"""A cached empty MLflow SQLite schema, so that a new embedded store starts in milliseconds.

Creating an MLflow SQLite store runs every one of MLflow's Alembic migrations, about a second
of CPU, on every new work directory. The first store a given MLflow version creates is copied
(its default experiment removed, so that MLflow recreates it with the new store's artifact
root) into ``$MANYMODELS_CACHE_DIR`` (default ``~/.cache/manymodels``); later stores start as a
copy of it, which MLflow then checks against its schema as it would any existing database.

The cache is only ever a shortcut: a cache file that is not an intact MLflow schema is dropped
and the store is created by MLflow as usual.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import uuid
from pathlib import Path

__all__ = ["cache_path", "forget", "remember", "seed"]


def cache_path() -> Path:
    """The cached schema for the installed MLflow version."""
    from importlib.metadata import version

    root = os.environ.get("MANYMODELS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "manymodels"
    )
    return Path(root) / f"mlflow-{version('mlflow')}-schema.db"


def seed(database: Path) -> bool:
    """Start a database that does not exist yet as a copy of the cached schema.

    Returns:
        Whether the database was seeded (False: no cache, or the database exists).
    """
    cached = cache_path()
    if database.exists() or not cached.is_file():
        return False
    if not _is_schema(cached):
        forget()
        return False
    try:
        _copy_atomically(cached, database)
    except OSError:
        return False
    return True


def remember(database: Path) -> None:
    """Cache the schema of a database MLflow has just created (nothing else in it yet)."""
    cached = cache_path()
    if cached.exists():
        return
    partial = cached.with_name(f".partial-{uuid.uuid4().hex}")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with (
            contextlib.closing(sqlite3.connect(database)) as source,
            contextlib.closing(sqlite3.connect(partial)) as copy,
        ):
            source.backup(copy)
            copy.execute("DELETE FROM experiments")
            copy.commit()
        os.replace(partial, cached)
    except (OSError, sqlite3.Error):
        pass  # without a cache, the next store is created the slow way
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()


def forget() -> None:
    """Drop the cached schema."""
    with contextlib.suppress(OSError):
        cache_path().unlink()


def _is_schema(path: Path) -> bool:
    """Whether a file is an intact SQLite database with MLflow's tables (a truncated or
    foreign file is not: it is dropped, and the next store is created the slow way)."""
    try:
        read_only = f"{path.resolve().as_uri()}?mode=ro"  # quoted: '#' or '?' in a path is fine
        with contextlib.closing(sqlite3.connect(read_only, uri=True)) as db:
            if db.execute("PRAGMA quick_check").fetchone() != ("ok",):
                return False
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {"alembic_version", "experiments", "registered_models"} <= {n for (n,) in rows}
    except sqlite3.Error:
        return False


def _copy_atomically(source: Path, target: Path) -> None:
    partial = target.with_name(f".partial-{uuid.uuid4().hex}")
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
