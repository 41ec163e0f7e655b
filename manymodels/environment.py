"""Problems of the machine rather than of the job: a full disk, a read-only file, a database
that refuses the password, a tracking server that stopped answering.

They surface from deep inside pandas, SQLite, SQLAlchemy or MLflow's HTTP client, wrapped a
few times over. :func:`environment_problem` looks through the wrapping for the cause and says it
in one sentence with the fix, so that the CLI prints one line instead of a long traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

from manymodels.errors import ManyModelsError

__all__ = ["EnvironmentProblem", "environment_problem"]


class EnvironmentProblem(ManyModelsError, OSError):
    """The disk, a file's permissions, the database or the tracking server stopped the job."""


_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_RERUN = "then run the same command again: the job resumes where it stopped."
# Fragments of the messages that databases and HTTP clients give, lower-cased, and what to say.
_MESSAGES = (
    ("database or disk is full", "the disk of the tracking database is full. Hint: free space, "
     + _RERUN),
    ("attempt to write a readonly database", "the tracking database is read-only. Hint: make "
     "mlflow.db and its folder writable (or set work_dir to a writable folder), " + _RERUN),
    ("password authentication failed", "the tracking database refused the user name or "
     "password in tracking.uri. Hint: fix them in tracking.uri."),
    ("max retries exceeded", "the MLflow tracking server stopped answering. Hint: bring it back, "
     + _RERUN),
    ("connection refused", "the tracking store refused the connection. Hint: check that it runs, "
     + _RERUN),
)  # fmt: skip


def environment_problem(exc: BaseException) -> EnvironmentProblem | None:
    """One sentence for an error that the environment caused, or None for any other error.

    Args:
        exc: an exception as it reached the top of a command, however wrapped.

    Returns:
        The problem, saying what is at fault and the fix, or None.

    Example:
        >>> str(environment_problem(OSError(28, "No space left on device", "/data/x")))[:40]
        'no space left on the device of /data/x. '
        >>> environment_problem(ValueError("a bug")) is None
        True
    """
    for cause in _chain(exc):
        if isinstance(cause, EnvironmentProblem):
            return cause
        if isinstance(cause, OSError) and cause.errno in _FULL + _READ_ONLY:
            return _from_os_error(cause)
    for cause in _chain(exc):
        text = str(cause).lower()
        for fragment, sentence in _MESSAGES:
            if fragment in text:
                return EnvironmentProblem(f"{sentence} ({_first_line(cause)})")
    return None


def _from_os_error(exc: OSError) -> EnvironmentProblem:
    where = f" of {exc.filename}" if exc.filename else ""
    if exc.errno in _FULL:
        return EnvironmentProblem(
            f"no space left on the device{where}. Hint: free space (or set work_dir and "
            f"forecast.output on another disk), {_RERUN}"
        )
    return EnvironmentProblem(
        f"cannot write{' ' + str(exc.filename) if exc.filename else ''}: "
        f"{exc.strerror or 'permission denied'}. Hint: make it writable (or set work_dir to a "
        f"writable folder), {_RERUN}"
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and its causes, outermost first, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first if len(first) <= 200 else first[:197] + "..."
