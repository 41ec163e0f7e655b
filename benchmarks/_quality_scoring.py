"""Scoring forecasts against observed values: MASE per series and interval coverage.

MASE here is the mean absolute error over a window divided by the series' in-sample mean
absolute seasonal difference, computed on the values observed before the window's cutoff. Only
observed lag-``m`` pairs count (a missing week is never differenced against a filled-in one);
the lag is 1 when the history spans fewer than two seasons. A series whose scale is zero or
undefined is skipped. The panel's figure is the mean over series (of the mean over windows, for
a backtest). Coverage is pooled over every scored value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

LEVELS = (80, 95)


@dataclass
class Score:
    """One model's scores on one set of windows.

    Attributes:
        mase: mean over series of the series' mean MASE over the windows (None: nothing scored).
        coverage: per level, the share of scored values inside the interval (absent: no
            intervals).
        series: how many series were scored.
        values: how many observed values were scored.
        unmatched: observed values that the model gave no forecast for (failed series, ...).
    """

    mase: float | None
    coverage: dict[int, float]
    series: int
    values: int
    unmatched: int = 0


def mase_scales(train: pd.DataFrame, keys: list[str], season: int,
                cutoffs: pd.DataFrame | None = None) -> pd.DataFrame:  # fmt: skip
    """Each series' MASE denominator from its observed values up to each cutoff.

    Args:
        train: observed rows (keys, ``period``, ``y``).
        keys: the key columns.
        season: the seasonal lag; 1 is used for a history shorter than two seasons.
        cutoffs: rows of keys and ``cutoff``; by default one cutoff per series, its last period.

    Returns:
        A frame of keys, ``cutoff`` and ``scale`` (NaN where no lag pair was observed).
    """
    import numpy as np
    import pandas as pd

    if cutoffs is None:
        cutoffs = train.groupby(keys, as_index=False)["period"].max()
        cutoffs = cutoffs.rename(columns={"period": "cutoff"})
    wanted = cutoffs.groupby(keys, sort=False)["cutoff"].agg(list)
    rows = []
    for key, group in train.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        if key not in wanted.index and (len(key) > 1 or key[0] not in wanted.index):
            continue
        periods = group["period"].to_numpy()
        values = pd.Series(group["y"].to_numpy(dtype=float), index=periods)
        for cutoff in wanted.loc[key if len(key) > 1 else key[0]]:
            seen = values[values.index <= cutoff]
            span = int(seen.index.max() - seen.index.min() + 1) if len(seen) else 0
            lag = season if span >= 2 * season else 1
            lagged = seen.reindex(seen.index - lag).to_numpy()
            diffs = np.abs(seen.to_numpy() - lagged)
            diffs = diffs[~np.isnan(diffs)]
            rows.append((*key, cutoff, float(diffs.mean()) if len(diffs) else math.nan))
    return pd.DataFrame(rows, columns=[*keys, "cutoff", "scale"])


def score(forecasts: pd.DataFrame, actual: pd.DataFrame, scales: pd.DataFrame,
          keys: list[str]) -> Score:  # fmt: skip
    """Score forecasts on the observed values they cover.

    Args:
        forecasts: keys, ``period``, ``cutoff``, ``prediction`` and optionally ``lo-80``,
            ``hi-80``, ``lo-95``, ``hi-95``.
        actual: observed rows to score (keys, ``period``, ``y``), each belonging to one window.
        scales: keys, ``cutoff``, ``scale`` from :func:`mase_scales`.
        keys: the key columns.
    """
    import numpy as np

    joined = actual[[*keys, "period", "y"]].merge(forecasts, on=[*keys, "period"], how="left")
    unmatched = int(joined["prediction"].isna().sum())
    joined = joined.dropna(subset=["prediction"])
    if joined.empty:
        return Score(None, {}, 0, 0, unmatched)
    joined = joined.merge(scales, on=[*keys, "cutoff"], how="left")
    joined["error"] = (joined["y"] - joined["prediction"]).abs()
    per_window = joined.groupby([*keys, "cutoff"]).agg(mae=("error", "mean"),
                                                       scale=("scale", "first"))  # fmt: skip
    usable = per_window[np.isfinite(per_window["scale"]) & (per_window["scale"] > 0)]
    per_series = (usable["mae"] / usable["scale"]).groupby(level=list(range(len(keys)))).mean()
    coverage = {}
    for level in LEVELS:
        lo, hi = f"lo-{level}", f"hi-{level}"
        if lo in joined and hi in joined and joined[lo].notna().any():
            inside = (joined["y"] >= joined[lo]) & (joined["y"] <= joined[hi])
            coverage[level] = float(inside[joined[lo].notna()].mean())
    mase = float(per_series.mean()) if len(per_series) else None
    return Score(mase, coverage, int(len(per_series)), int(len(joined)), unmatched)
