"""Tasks whose worker process died, and why, in words.

One entity can end the process it runs in: it calls ``sys.exit``, raises ``KeyboardInterrupt``,
calls ``os._exit``, crashes native code (a segfault), or outgrows the worker's memory limit.
Without care, that takes its whole batch with it. :func:`run_guarded` keeps the first two from
ending the process at all; the engine retries the batch of a task that was lost in smaller
batches, and describes the death of a batch of one with :func:`describe_death`.

Nothing here imports Dask: the engine hands in what the cluster reported.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from manymodels.errors import ManyModelsError

__all__ = [
    "EXIT_TOPIC",
    "MEMORY_TOPIC",
    "UNKNOWN_DEATH",
    "WorkerCrash",
    "blame",
    "describe_death",
    "run_guarded",
]

T = TypeVar("T")

# Event topics on the scheduler: Dask's own record of a restart for memory, and ours of every
# worker process exit (see engine.ReportExits).
MEMORY_TOPIC = "worker-restart-memory"
EXIT_TOPIC = "manymodels-worker-exit"


class WorkerCrash(ManyModelsError, RuntimeError):
    """A task ended its worker process, or tried to: the failure of the entity that did it."""


def run_guarded(function: Callable[..., T], *args: Any) -> T:
    """Call ``function(*args)``; turn an exit it asks for into an exception.

    ``SystemExit`` and ``KeyboardInterrupt`` raised inside a Dask task end the worker process
    and every task on it; as a :class:`WorkerCrash` they fail only this task, whose batch the
    engine then splits to find the entity that raised them.

    Raises:
        WorkerCrash: the function called ``sys.exit`` or raised ``KeyboardInterrupt``.
    """
    try:
        return function(*args)
    except SystemExit as exc:
        raise WorkerCrash(
            f"the template called sys.exit({exc.code!r}), which would end its worker process. "
            "Hint: raise an exception instead, which fails only this entity."
        ) from None
    except KeyboardInterrupt:
        raise WorkerCrash(
            "the template raised KeyboardInterrupt, which would end its worker process. Hint: "
            "raise an exception instead, which fails only this entity."
        ) from None


# When the cluster did not say why (a worker without a nanny, a lost connection).
UNKNOWN_DEATH = "its worker process died while running it (the cluster reported no exit code)"


def describe_death(worker: str, events: Mapping[str, Iterable[Mapping[str, Any]]]) -> str | None:
    """Say why the worker process at address ``worker`` died, from the scheduler's events.

    Args:
        worker: the address of the worker the task last ran on.
        events: event messages by topic (:data:`MEMORY_TOPIC`, :data:`EXIT_TOPIC`).

    Returns:
        One sentence, or None when no event concerns that worker.
    """
    for event in events.get(MEMORY_TOPIC, ()):
        if event.get("worker") == worker:
            return (
                "its worker process went over the worker's memory limit and was restarted. "
                "Hint: raise compute.memory_limit, or use fewer threads per worker."
            )
    for event in events.get(EXIT_TOPIC, ()):
        if event.get("worker") == worker:
            return f"its worker process {_exit_in_words(event.get('exitcode'))}"
    return None


def _exit_in_words(exitcode: Any) -> str:
    if not isinstance(exitcode, int):
        return "died (no exit code was reported)"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        return f"was killed by signal {-exitcode} ({name}), e.g. a crash in native code"
    return f"exited with status {exitcode} (os._exit, or a crash in native code)"


def blame(exc: BaseException, keys: Mapping[str, str]) -> BaseException:
    """Name the partition whose task ended its process in the crash's message.

    Args:
        exc: what a task of one partition ended with; returned as it is unless a crash.
        keys: that partition's key values.
    """
    if not isinstance(exc, WorkerCrash):
        return exc
    where = "/".join(f"{column}={value}" for column, value in keys.items())
    return WorkerCrash(f"{where}: {exc}")
