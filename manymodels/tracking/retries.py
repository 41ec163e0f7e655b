"""Retrying a registry write that failed for a reason worth another try."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["retry"]

T = TypeVar("T")


def retry(
    action: Callable[[], T], worth_retrying: Callable[[Exception], bool], attempts: int = 5,
    backoff: float = 0.2,
) -> T:  # fmt: skip
    """Run ``action``, again after an error that ``worth_retrying`` accepts, with exponential
    backoff (``backoff``, twice that, ...); the last attempt's error is raised.

    Example:
        >>> retry(lambda: "done", lambda exc: False)
        'done'
    """
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:
            if not worth_retrying(exc) or attempt == attempts - 1:
                raise
            time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")
