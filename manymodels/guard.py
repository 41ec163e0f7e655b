"""Per-entity limits: a time limit, retries of transient errors, and failure records.

The time limit interrupts the entity's thread with an asynchronous exception, which Python
delivers between bytecodes: a template stuck in a Python loop stops at once, one blocked inside
a single native call (a long ``time.sleep``, one huge BLAS call) stops when that call returns.
"""

from __future__ import annotations

import ctypes
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["EntityTimeout", "Failure", "TRANSIENT_ERRORS", "call_with_limits", "failure_from"]

T = TypeVar("T")

# I/O and network errors may pass; a ValueError from the data will not.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, ConnectionError, TimeoutError)


class EntityTimeout(BaseException):
    """Raised inside an entity's thread when it exceeds ``failures.entity_timeout``.

    A ``BaseException`` so that a template's own ``except Exception`` cannot swallow it.
    """


@dataclass(frozen=True)
class Failure:
    """A readable record of why one entity failed."""

    stage: str
    error_type: str
    message: str
    traceback: str


def failure_from(stage: str, exc: BaseException) -> Failure:
    """Describe an exception as a :class:`Failure` of ``stage`` (read, train, save, ...)."""
    message = str(exc) or type(exc).__name__
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=8))
    return Failure(stage, type(exc).__name__, message, trace[-4000:])


def call_with_limits(
    function: Callable[[], T],
    timeout: float | None = None,
    retries: int = 0,
    backoff: float = 0.5,
) -> T:
    """Call ``function``, retrying transient errors and enforcing a time limit.

    Args:
        function: the work for one entity.
        timeout: seconds for each attempt; None for no limit.
        retries: further attempts after a transient error (see ``TRANSIENT_ERRORS``).
        backoff: seconds before the first retry, doubled before each next one.

    Raises:
        EntityTimeout: an attempt ran out of time (never retried).
        Exception: the last error, once retries are spent or at once for a non-transient one.
    """
    attempt = 0
    while True:
        try:
            return _call_with_timeout(function, timeout)
        except TRANSIENT_ERRORS:
            if attempt >= retries:
                raise
            time.sleep(backoff * 2**attempt)
            attempt += 1


def _call_with_timeout(function: Callable[[], T], timeout: float | None) -> T:
    if timeout is None:
        return function()
    thread_id = threading.get_ident()
    lock = threading.Lock()
    state = {"finished": False, "fired": False}

    def interrupt() -> None:
        with lock:
            if not state["finished"]:
                state["fired"] = True
                _raise_in_thread(thread_id, EntityTimeout)

    timer = threading.Timer(timeout, interrupt)
    timer.daemon = True
    timer.start()
    try:
        return function()
    except EntityTimeout:
        raise EntityTimeout(f"exceeded failures.entity_timeout of {timeout:g} s") from None
    finally:
        with lock:
            state["finished"] = True
            if state["fired"]:
                # The interrupt may still be pending if the work finished at the same moment.
                _raise_in_thread(thread_id, None)
        timer.cancel()


def _raise_in_thread(thread_id: int, exception: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None
    )
