"""A deterministic synthetic panel in the spirit of the "OJ Sales Simulated" dataset.

Weekly orange-juice sales per store and brand, with a trend, yearly seasonality, price
elasticity, promotional deals and multiplicative noise. A share of series start late (short)
and a share sell only now and then (intermittent), as real retail panels do.

Example:
    >>> from manymodels.datasets import oj_sales
    >>> frame = oj_sales(n_entities=6, n_weeks=20, seed=1)
    >>> sorted(frame.columns)
    ['brand', 'deal', 'price', 'sales', 'store', 'week']
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

from manymodels.data import write_partitioned
from manymodels.outputs import check_output, replace_dir, staging_path

__all__ = ["BRANDS", "oj_sales", "write_oj_sales"]

BRANDS = ("dominicks", "minute.maid", "tropicana")
_BASE_PRICE = {"dominicks": 1.9, "minute.maid": 2.5, "tropicana": 3.0}


def oj_sales(
    n_entities: int = 500,
    n_weeks: int = 156,
    seed: int = 0,
    short_share: float = 0.06,
    intermittent_share: float = 0.05,
    too_short_share: float = 0.0,
    future_weeks: int = 0,
    start: str = "2021-01-03",
) -> pd.DataFrame:
    """Generate the panel as one long frame.

    Args:
        n_entities: number of store x brand series (brands cycle within each store).
        n_weeks: weeks of history of a full-length series.
        seed: the random seed; the same arguments always give the same frame.
        short_share: share of series that start late and hold 20 to 50% of the weeks.
        intermittent_share: share of low-volume series with many zero weeks.
        too_short_share: share of series with only 6 weeks, too short to model (for showing
            failure isolation).
        future_weeks: weeks after the history with known price and deal but no sales, as a
            retailer's promotion plan would give.
        start: the first week (a Sunday).

    Returns:
        Columns ``store`` (int), ``brand`` (str), ``week`` (timestamp), ``sales`` (float,
        missing in future weeks), ``price`` (float) and ``deal`` (0 or 1).
    """
    rng = np.random.default_rng(seed)
    stores = np.arange(n_entities) // len(BRANDS) + 1
    brands = np.array([BRANDS[i % len(BRANDS)] for i in range(n_entities)])
    total_weeks = n_weeks + future_weeks
    weeks = pd.date_range(start, periods=total_weeks, freq="W-SUN")
    t = np.arange(total_weeks)[np.newaxis, :]

    base_price = np.array([_BASE_PRICE[b] for b in brands])[:, np.newaxis]
    deal = (rng.random((n_entities, total_weeks)) < 0.15).astype(np.int8)
    price_noise = 1 + 0.03 * rng.standard_normal((n_entities, total_weeks))
    price = np.round(base_price * price_noise * np.where(deal == 1, 0.8, 1.0), 2)

    level = np.exp(rng.normal(np.log(9000), 0.5, (n_entities, 1)))
    trend = 1 + rng.normal(0, 0.0015, (n_entities, 1)) * t
    phase = rng.uniform(0, 2 * np.pi, (n_entities, 1))
    amplitude = rng.uniform(0.08, 0.25, (n_entities, 1))
    season = 1 + amplitude * np.sin(2 * np.pi * t / 52.18 + phase)
    elasticity = rng.uniform(-2.8, -1.6, (n_entities, 1))
    response = (price / base_price) ** elasticity * np.where(deal == 1, 1.15, 1.0)
    noise = np.exp(rng.normal(0, 0.08, (n_entities, total_weeks)))
    sales = np.maximum(level * trend * season * response * noise, 0.0)

    kind = rng.random(n_entities)
    intermittent = kind < intermittent_share
    sales[intermittent] = rng.poisson(3.0, (int(intermittent.sum()), total_weeks)) * (
        rng.random((int(intermittent.sum()), total_weeks)) < 0.35
    )
    first_week = np.zeros(n_entities, dtype=int)
    short = (kind >= intermittent_share) & (kind < intermittent_share + short_share)
    first_week[short] = n_weeks - (rng.uniform(0.2, 0.5, int(short.sum())) * n_weeks).astype(int)
    too_short = (kind >= 1 - too_short_share) if too_short_share else np.zeros(n_entities, bool)
    first_week[too_short] = max(n_weeks - 6, 0)

    sales = np.round(sales, 0)
    sales[:, n_weeks:] = np.nan
    keep = t >= first_week[:, np.newaxis]
    rows, cols = np.nonzero(keep)
    return pd.DataFrame(
        {
            "store": stores[rows],
            "brand": brands[rows],
            "week": weeks[cols],
            "sales": sales[rows, cols],
            "price": price[rows, cols],
            "deal": deal[rows, cols],
        }
    )


def write_oj_sales(path: str, **kwargs: object) -> str:
    """Generate the panel and write it as hive-partitioned Parquet (``store=1/brand=x/``).

    Args:
        path: the folder to create; replaced as a whole when manymodels wrote it.
        **kwargs: passed to :func:`oj_sales`.

    Returns:
        ``path``.

    Raises:
        ConfigError: ``path`` holds something manymodels did not write.
    """
    check_output(path, "path")
    frame = oj_sales(**kwargs)  # type: ignore[arg-type]
    staging = staging_path(path)
    try:
        write_partitioned(frame, staging, ["store", "brand"], basename="part")
        replace_dir(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
