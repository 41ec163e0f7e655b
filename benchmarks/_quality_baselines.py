"""The statsforecast baselines: Naive, SeasonalNaive, AutoETS and AutoARIMA per series.

statsforecast needs a regular series, so the observed values before the final window are put
on the series' period grid and gaps are filled by linear interpolation (what manymodels does by
default); only observed values are ever scored. ``ds`` is the integer period (``freq=1``),
which keeps weekly, monthly and quarterly panels alike.

Each model is fitted once per series on all the data before the final window, in this process
(``n_jobs=1``), and timed with ``time.process_time``; one series is fitted first, untimed, so
that compilation and imports are not counted. The backtest is statsforecast's
``cross_validation`` with three windows of ``horizon`` steps, ``step_size=horizon``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from _quality_scoring import LEVELS, Score, mase_scales, score

if TYPE_CHECKING:
    import pandas as pd

    from _quality_panels import Split

WINDOWS = 3
ROWS = ("naive", "seasonal naive", "statsforecast AutoETS", "statsforecast AutoARIMA")


@dataclass
class BaselineResult:
    """One baseline's scores on a panel."""

    name: str
    backtest: Score
    final: Score
    seconds_per_series: float | None
    extra: dict[str, Any] = field(default_factory=dict)


def _models(season: int) -> dict[str, Any]:
    from statsforecast.models import AutoARIMA, AutoETS, Naive, SeasonalNaive

    return {
        "naive": Naive(),
        "seasonal naive": SeasonalNaive(season_length=season),
        "statsforecast AutoETS": AutoETS(season_length=season),
        "statsforecast AutoARIMA": AutoARIMA(season_length=season),
    }


def regular_frame(split: Split) -> tuple[pd.DataFrame, dict[str, tuple[str, ...]]]:
    """The pre-final data on each series' period grid (``unique_id``, ``ds``, ``y``)."""
    import pandas as pd

    keys = split.panel.keys
    parts, ids = [], {}
    for key, group in split.train.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        uid = "|".join(key)
        ids[uid] = key
        values = group.set_index("period")["y"]
        grid = pd.RangeIndex(int(values.index.min()), int(values.index.max()) + 1)
        filled = values.reindex(grid).interpolate(limit_area="inside")
        parts.append(pd.DataFrame({"unique_id": uid, "ds": grid, "y": filled.to_numpy()}))
    return pd.concat(parts, ignore_index=True), ids


def _keyed(frame: pd.DataFrame, ids: dict[str, tuple[str, ...]], keys: list[str],
           alias: str) -> pd.DataFrame:  # fmt: skip
    """statsforecast's output for one model, renamed to the scoring columns."""
    import pandas as pd

    renamed = {alias: "prediction", **{f"{alias}-{side}-{level}": f"{side}-{level}"
                                       for level in LEVELS for side in ("lo", "hi")}}  # fmt: skip
    out = frame.rename(columns={**renamed, "ds": "period"})
    key_frame = pd.DataFrame([ids[u] for u in out["unique_id"]], columns=keys, index=out.index)
    columns = ["period", *[c for c in renamed.values() if c in out]]
    if "cutoff" in out:
        columns.append("cutoff")
    return pd.concat([key_frame, out[columns]], axis=1)


def run_baselines(split: Split, cv_jobs: int = 2) -> list[BaselineResult]:
    """Fit, forecast and score every baseline on the final window and the backtest."""
    from statsforecast import StatsForecast

    from _common import say

    panel, keys = split.panel, split.panel.keys
    frame, ids = regular_frame(split)
    last = frame.groupby("unique_id")["ds"].max()
    # A series whose last observation is before the cutoff needs more steps to reach its end.
    steps = panel.horizon + int(split.cutoff - last.min())
    final_scales = mase_scales(split.train, keys, panel.season)
    test = split.test.copy()
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv_models = list(_models(panel.season).values())
        started = time.perf_counter()
        cv = StatsForecast(models=cv_models, freq=1, n_jobs=cv_jobs).cross_validation(
            df=frame, h=panel.horizon, n_windows=WINDOWS, step_size=panel.horizon,
            level=list(LEVELS))  # fmt: skip
        say(f"{panel.name}: statsforecast backtest, {len(ids)} series, "
            f"{time.perf_counter() - started:.1f} s")  # fmt: skip
        observed = _observed_in_backtest(cv, split, ids)
        cutoffs = observed[[*keys, "cutoff"]].drop_duplicates()
        cv_scales = mase_scales(split.train, keys, panel.season, cutoffs)
        for name, model in _models(panel.season).items():
            forecast, seconds = _timed_forecast(model, frame, steps)
            predicted = _keyed(forecast, ids, keys, model.alias)
            predicted = predicted.merge(final_scales[[*keys, "cutoff"]], on=keys)
            backtest = _keyed(cv, ids, keys, model.alias)
            results.append(BaselineResult(
                name,
                score(backtest, observed, cv_scales, keys),
                score(predicted, test, final_scales, keys),
                seconds / len(ids),
            ))  # fmt: skip
            say(f"{panel.name}: {name} fitted on {len(ids)} series in {seconds:.1f} s CPU")
    return results


def _timed_forecast(model: Any, frame: pd.DataFrame, steps: int) -> tuple[pd.DataFrame, float]:
    from statsforecast import StatsForecast

    first = frame["unique_id"].iloc[0]
    warm = frame[frame["unique_id"] == first]
    StatsForecast(models=[model], freq=1, n_jobs=1).forecast(df=warm, h=steps, level=list(LEVELS))
    started = time.process_time()
    forecast = StatsForecast(models=[model], freq=1, n_jobs=1).forecast(
        df=frame, h=steps, level=list(LEVELS))  # fmt: skip
    return forecast, time.process_time() - started


def _observed_in_backtest(cv: pd.DataFrame, split: Split,
                          ids: dict[str, tuple[str, ...]]) -> pd.DataFrame:  # fmt: skip
    """The backtest's windows restricted to values that were observed, not interpolated."""
    import pandas as pd

    keys = split.panel.keys
    windows = cv[["unique_id", "ds", "cutoff"]].rename(columns={"ds": "period"})
    key_frame = pd.DataFrame([ids[u] for u in windows["unique_id"]], columns=keys,
                             index=windows.index)  # fmt: skip
    windows = pd.concat([key_frame, windows[["period", "cutoff"]]], axis=1)
    return windows.merge(split.train[[*keys, "period", "y"]], on=[*keys, "period"])
