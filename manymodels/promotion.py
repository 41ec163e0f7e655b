"""When a challenger replaces the champion: the same rule for every registration mode."""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["challenger_wins"]


def challenger_wins(
    challenger: Mapping[str, float],
    champion: Mapping[str, float],
    metric: str,
    min_improvement: float,
) -> bool:
    """Whether a challenger beats the champion on the same holdout by the required margin.

    Falls back to MAE where ``metric`` is undefined for either (MASE of a constant series);
    a champion that could not be scored always loses.

    Args:
        challenger: the challenger's holdout metrics.
        champion: the champion's metrics on the same holdout (empty if it could not be scored).
        metric: the deciding metric, lower is better.
        min_improvement: the relative improvement required, e.g. 0.02 for 2%.
    """
    if not champion:
        return True
    new, old = challenger.get(metric, math.nan), champion.get(metric, math.nan)
    if not (math.isfinite(new) and math.isfinite(old)):
        new, old = challenger.get("mae", math.nan), champion.get("mae", math.nan)
    if not math.isfinite(new):
        return False
    if not math.isfinite(old):
        return True
    return new < old * (1.0 - min_improvement) if old > 0 else new < old
