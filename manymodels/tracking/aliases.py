"""The registry aliases manymodels moves, and who gets ``champion`` when a version is created.

Both registry backends and the registrars apply :func:`takes_champion`; moving ``champion``
later (a retrain's winner, ``--promote``) is the registrars' decision.
"""

from __future__ import annotations

__all__ = ["CHALLENGER", "CHAMPION", "takes_champion"]

CHAMPION = "champion"
CHALLENGER = "challenger"


def takes_champion(version: int, model_existed: bool, had_champion: bool) -> bool:
    """Whether a newly created version gets ``champion`` as it is registered.

    Args:
        version: the new version's number.
        model_existed: the registered model existed before this version.
        had_champion: the model had a ``champion`` alias before this version.

    Returns:
        True for version 1, and for the first new version of a model whose champion alias
        was removed; a model that has a champion keeps it.

    Example:
        >>> takes_champion(1, False, False), takes_champion(4, True, False)
        (True, True)
        >>> takes_champion(4, True, True)
        False
    """
    return version == 1 or (model_existed and not had_champion)
