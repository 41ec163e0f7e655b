"""A clear sentence, instead of pages of Dask tracebacks, for a script without a main guard.

A local Dask cluster starts its workers as new Python processes, which import the script that
started them again (the ``spawn`` start method). A script that calls a job at its top level
would then start the job again inside every worker, and Python stops that with a long chain of
errors. The driver can tell beforehand: the script has no ``if __name__ == "__main__":`` block.
"""

from __future__ import annotations

import ast
import os
import sys

from manymodels.errors import ManyModelsError

__all__ = ["require_main_guard"]


def require_main_guard(local_cluster: bool, call: str = "this job") -> None:
    """Refuse to start a local cluster from a script that lacks a main guard.

    Args:
        local_cluster: whether the job starts its own cluster (no ``compute.scheduler``).
        call: what the user called, for the message.

    Raises:
        ManyModelsError: the running script has no ``if __name__ == "__main__":`` block.
    """
    script = _main_script()
    if not local_cluster or script is None or _has_guard(script):
        return
    raise ManyModelsError(
        f"{os.path.basename(script)} calls {call} at its top level: put that call under "
        'if __name__ == "__main__":, because the local Dask cluster\'s worker processes import '
        "the script again."
    )


def _main_script() -> str | None:
    """The file of the script Python was started with; None in notebooks and ``python -c``."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path if path and path.endswith(".py") and os.path.isfile(path) else None


def _has_guard(script: str) -> bool:
    try:
        with open(script, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return True  # unreadable: assume the best rather than refuse a working script
    return any(isinstance(node, ast.If) and _is_main_test(node.test) for node in tree.body)


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"``, either way round."""
    if not isinstance(test, ast.Compare) or len(test.comparators) != 1:
        return False
    sides = [test.left, test.comparators[0]]
    names = [side.id for side in sides if isinstance(side, ast.Name)]
    texts = [side.value for side in sides if isinstance(side, ast.Constant)]
    return names == ["__name__"] and texts == ["__main__"]
