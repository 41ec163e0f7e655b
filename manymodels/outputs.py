"""Publishing an output folder whole, and never over what manymodels did not write.

Jobs write into a staging folder (:func:`staging_path`) and swap it in by renames
(:func:`replace_dir`), so a reader never sees half an output. A folder is replaced only when it
is absent, empty, or carries the :data:`OUTPUT_MARKER` file that every published output gets,
and never when it overlaps what the job reads (:func:`check_output`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import fsspec

from manymodels.errors import ConfigError, DataError

__all__ = [
    "OUTPUT_MARKER",
    "STAGING_MARKER",
    "check_output",
    "remove_dir",
    "replace_dir",
    "staging_path",
    "staging_open",
    "start_staging",
    "write_while_open",
]

OUTPUT_MARKER = ".manymodels-output"
"""The file that marks a folder as an output of manymodels, which it may replace."""

STAGING_MARKER = ".manymodels-staging"
"""The file in a staging folder that names the process writing it (host and process id)."""

_MARKER_TEXT = (
    "manymodels wrote this folder and replaces it as a whole when it writes here again.\n"
    "Delete this file to keep manymodels from replacing the folder.\n"
)


def check_output(path: str, what: str, inputs: Mapping[str, str] | None = None) -> None:
    """Fail unless an output of manymodels may be written to ``path``, replacing what is there.

    It may when ``path`` is absent, an empty folder, or a folder that manymodels wrote (it holds
    the :data:`OUTPUT_MARKER` file), and when it neither is, holds nor lies inside an input.
    Call it before a job does anything, so that a wrong path writes and deletes nothing.

    Args:
        path: the output folder (a local path or an fsspec URL).
        what: how errors name it, e.g. ``forecast.output``.
        inputs: what the job reads, by the name errors give it, e.g. ``{"data.path": path}``.

    Raises:
        ConfigError: ``path`` overlaps an input, or holds something that manymodels did not write.
    """
    for name, source in (inputs or {}).items():
        relation = _overlap(path, source)
        if relation:
            raise ConfigError(
                f"{what}: {path} {relation} {name} {source}; replacing it would delete or corrupt "
                f"that input. Hint: choose another output folder, apart from {source}."
            )
    _check_replaceable(path, what)


def replace_dir(staging: str, final: str) -> None:
    """Publish the folder ``staging`` as ``final``, replacing an earlier output of manymodels.

    ``staging`` gets the :data:`OUTPUT_MARKER` file, then two renames swap it in (on object
    stores, copies): ``final`` is missing only between them. When the second fails, the earlier
    ``final`` is put back and the error propagates; ``staging`` is left to the caller. Two jobs
    publishing to the same local folder at once take turns; the later output wins whole.

    Raises:
        DataError: ``staging`` is not a folder (nothing to publish); ``final`` is left as it was.
        ConfigError: ``final`` holds something that manymodels did not write (see
            :func:`check_output`); nothing is moved.
    """
    fs, final_path = fsspec.core.url_to_fs(final)
    _, staged = fsspec.core.url_to_fs(staging)
    if not fs.isdir(staged):
        raise DataError(
            f"{staging}: the folder to publish as {final} does not exist; {final} was left as it was."
        )
    with _publishing_lock(final):
        _check_replaceable(final, "output")
        fs.pipe_file(posixpath.join(staged, OUTPUT_MARKER), _MARKER_TEXT.encode())
        if fs.exists(posixpath.join(staged, STAGING_MARKER)):
            fs.rm(posixpath.join(staged, STAGING_MARKER))
        retired = _retire(fs, final_path)
        try:
            fs.mv(staged, final_path, recursive=True)
        except BaseException as exc:
            _restore(fs, retired, final_path, exc)
            raise
    if retired is not None:
        _discard(fs, retired)


def _publishing_lock(final: str) -> contextlib.AbstractContextManager[object]:
    """A lock per local output folder, kept in the user's own lock folder rather than beside
    the output; remote outputs (object stores have no such locks) go without."""
    protocol, location = _location(final)
    if protocol != "file":
        return contextlib.nullcontext()
    from filelock import FileLock

    digest = hashlib.sha256(str(location).encode("utf-8")).hexdigest()[:16]
    return FileLock(str(lock_folder() / f"{digest}.lock"), timeout=600)


def lock_folder() -> Path:
    """This user's folder for lock files: ``locks`` in the manymodels cache folder.

    Never a folder shared by every user: one that another user created first cannot be
    written. Without a usable home folder, a folder of the user's own in the temporary folder.

    Raises:
        DataError: neither folder can be made, or the temporary one belongs to another user.
    """
    cache = os.environ.get("MANYMODELS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "manymodels"
    )
    folder = Path(cache) / "locks"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder
    except OSError:
        pass
    uid = os.getuid() if hasattr(os, "getuid") else 0
    fallback = Path(tempfile.gettempdir()) / f"manymodels-locks-{uid}"
    try:
        fallback.mkdir(exist_ok=True, mode=0o700)
        owner = fallback.stat().st_uid
    except OSError as exc:
        raise DataError(
            f"cannot create a folder for lock files, neither {folder} nor {fallback} ({exc}). "
            "Hint: set MANYMODELS_CACHE_DIR to a folder you can write."
        ) from None
    if hasattr(os, "getuid") and owner != uid:
        raise DataError(
            f"{fallback}: this lock folder belongs to another user. Hint: set "
            "MANYMODELS_CACHE_DIR to a folder of your own."
        )
    return fallback


def _check_replaceable(path: str, what: str) -> None:
    fs, local = fsspec.core.url_to_fs(path)
    if not fs.exists(local):
        return
    if not fs.isdir(local):
        raise ConfigError(
            f"{what}: {path} is a file, and writing the output folder there would delete it. "
            "Hint: remove it yourself, or choose another folder."
        )
    if fs.ls(local) and not fs.exists(posixpath.join(local, OUTPUT_MARKER)):
        raise ConfigError(
            f"{what}: {path} is a folder that manymodels did not write (it has no "
            f"{OUTPUT_MARKER} file), and replacing it would delete what it holds. Hint: remove "
            "it yourself, or choose another folder."
        )


def _overlap(path: str, other: str) -> str | None:
    """How ``path`` overlaps ``other``, in words, or None when they are apart."""
    (protocol, mine), (other_protocol, theirs) = _location(path), _location(other)
    if protocol != other_protocol:
        return None
    if mine == theirs:
        return "is"
    if theirs in mine.parents:
        return "is inside"
    if mine in theirs.parents:
        return "contains"
    return None


def _location(path: str) -> tuple[str, PurePath]:
    # Parsed, not opened: opening a remote filesystem may need a driver or credentials that a
    # mere comparison should not. Local paths are resolved, so that a symlink cannot hide one.
    protocol, sep, rest = path.partition("://")
    if not sep or protocol == "file":
        return "file", Path(os.path.realpath(rest if sep else path))
    return protocol, PurePosixPath(posixpath.normpath("/" + rest))


def _retire(fs: Any, final_path: str) -> str | None:
    """Move the earlier output aside, to a sibling name; None when there was none."""
    if not fs.exists(final_path):
        return None
    retired = f"{final_path.rstrip('/')}.old-{uuid.uuid4().hex[:8]}"
    fs.mv(final_path, retired, recursive=True)
    return retired


def _restore(fs: Any, retired: str | None, final_path: str, exc: BaseException) -> None:
    """Undo a failed swap: whatever is at ``final_path`` now is a partial copy of the new output
    (a move across filesystems copies, then deletes), so it goes, and the earlier output returns."""
    try:
        if fs.exists(final_path):
            fs.rm(final_path, recursive=True)
        if retired is not None:
            fs.mv(retired, final_path, recursive=True)
    except OSError as failed:
        raise DataError(
            f"{final_path}: publishing the new output failed ({exc}), and so did putting the "
            f"previous one back ({failed}); the previous output is at {retired}."
        ) from exc


def _discard(fs: Any, retired: str) -> None:
    # The new output is in place: failing now would report a published output as a failure,
    # and a leftover copy of the old one loses nothing.
    with contextlib.suppress(OSError):
        fs.rm(retired, recursive=True)


def staging_path(final: str) -> str:
    """A fresh sibling of ``final`` to write into before :func:`replace_dir`."""
    parent, name = posixpath.split(final.rstrip("/"))
    return posixpath.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:8]}")


def start_staging(final: str) -> str:
    """A new staging folder for ``final``, marked as this process's.

    Staging folders that a killed job on this machine left beside ``final`` are removed first;
    those of a process still running, or of another machine, are left alone.
    """
    remove_stale_staging(final)
    staging = staging_path(final)
    fs, local = fsspec.core.url_to_fs(staging)
    fs.makedirs(local, exist_ok=True)
    owner = {"host": socket.gethostname(), "pid": os.getpid()}
    fs.pipe_file(posixpath.join(local, STAGING_MARKER), json.dumps(owner).encode())
    return staging


def staging_open(staging: str) -> bool:
    """Whether the job writing into ``staging`` still runs (it has not removed the folder)."""
    fs, local = fsspec.core.url_to_fs(staging)
    return bool(fs.exists(posixpath.join(local, STAGING_MARKER)))


def write_while_open(staging: str, write: Callable[[], object]) -> bool:
    """Call ``write`` (which writes into ``staging``) only while the job owning it runs.

    A task can outlive its job: a stopped job removes its staging folder while a task on a shared
    cluster is still writing, and the write would bring the folder back for good. So the writer
    looks again afterwards, and if the job ended meanwhile it removes the folder itself: whoever
    writes last also cleans up last.

    Returns:
        Whether the write stands.
    """
    if not staging_open(staging):
        return False
    write()
    if staging_open(staging):
        return True
    remove_dir(staging)
    return False


def remove_stale_staging(final: str) -> list[str]:
    """Remove the staging folders of ``final`` whose process, on this machine, is gone.

    Returns:
        The folders removed.
    """
    fs, local = fsspec.core.url_to_fs(final)
    parent, name = posixpath.split(local.rstrip("/"))
    try:
        siblings = fs.ls(parent, detail=False)
    except OSError:
        return []
    removed = []
    for sibling in siblings:
        if posixpath.basename(sibling).startswith(f".{name}.tmp-") and _abandoned(fs, sibling):
            with contextlib.suppress(OSError):
                fs.rm(sibling, recursive=True)
                removed.append(sibling)
    return removed


def _abandoned(fs: Any, staging: str) -> bool:
    try:
        owner = json.loads(fs.cat_file(posixpath.join(staging, STAGING_MARKER)))
        host, pid = owner["host"], int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not ours to judge: no readable owner
    if host != socket.gethostname() or os.name == "nt":  # Windows has no signal 0 to probe with
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, and another user's
        return False
    return False


def remove_dir(path: str, attempts: int = 3) -> None:
    """Remove a folder (a staging folder after a failure) if it exists.

    A late task may be writing into it meanwhile (see :func:`write_while_open`), so a removal
    that trips over files appearing or vanishing under it is tried again.
    """
    fs, local = fsspec.core.url_to_fs(path)
    for attempt in range(attempts):
        try:
            if fs.exists(local):
                fs.rm(local, recursive=True)
            return
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)
