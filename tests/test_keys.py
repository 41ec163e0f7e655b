"""Key values round-trip exactly, from ``prepare`` through ``train`` and ``forecast`` to
``pandas.read_parquet``, whatever their text, and the registry's limit fails one entity alone."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import manymodels
from manymodels.errors import EntityError
from manymodels.keys import NULL_KEY, KeyType, check_keys, folder_name, key_types
from manymodels.prepare import prepare

WEEKS = 12
_CANONICAL = re.compile(r"-?(0|[1-9][0-9]*)", re.ASCII)

# Values that look alike but are not the same key, besides anything hypothesis makes up.
LOOKALIKES = ["012", "12", "-0", "0", "١٢", "+12", "1e3", "a.", "A", " a", "", "x" * 250]
partition_values = st.one_of(
    st.sampled_from(LOOKALIKES[:-1]), st.text(min_size=1, max_size=12), st.none()
)
inner_values = st.one_of(st.sampled_from(LOOKALIKES), st.text(max_size=300), st.none())


def test_key_types_keep_lookalikes_apart():
    kinds = key_types({"a": ["012", "12"], "b": ["-0", "x"], "c": ["7", NULL_KEY], "d": ["x", "X"]})
    assert kinds == {
        "a": KeyType(integer=False, in_files=True),  # all numbers: a hive reader would merge them
        "b": KeyType(integer=False, in_files=False),
        "c": KeyType(integer=True, in_files=True),  # a null folder cannot join the others
        "d": KeyType(integer=False, in_files=True),  # one folder on a case-blind filesystem
    }
    assert key_types({"e": ["3000000000"]}) == {"e": KeyType(integer=True, in_files=True)}
    assert key_types({"f": ["1", "2"]}, {"f": False}) == {"f": KeyType(in_files=True)}


def test_folder_names_fit_every_filesystem():
    long = folder_name("brand", "é/" * 500, KeyType(in_files=True))
    assert len(long.encode()) < 120 and "/" not in long and "=" not in long
    assert folder_name("brand", "a", KeyType(in_files=True)) != folder_name(
        "brand", "A", KeyType(in_files=True)
    )
    assert folder_name("store", "12", KeyType(integer=True)) == "store=12"


def test_keys_too_long_for_the_registry_are_an_entity_error():
    check_keys({"k": "x" * 4000})
    with pytest.raises(EntityError, match=r"^key values too long for the model registry: 6009"):
        check_keys({"k": "x" * 6000})


def _series(keys: list[tuple[Any, Any]]) -> pa.Table:
    """Weekly rows for each (p, k) pair, as a flat table."""
    rows = len(keys) * WEEKS
    weeks = pd.date_range("2024-01-07", periods=WEEKS, freq="W-SUN")
    return pa.table({
        "p": [p for p, _ in keys for _ in range(WEEKS)],
        "k": pa.array([k for _, k in keys for _ in range(WEEKS)], type=pa.string()),
        "t": np.tile(weeks.to_numpy(), len(keys)),
        "y": np.arange(rows, dtype="float64") % 7 + 1.0,
    })  # fmt: skip


def _prepared(root: Path, keys: list[tuple[Any, Any]], scheduler: str, **failures: Any):
    """The config of a job on ``keys``'s series, partitioned by ``prepare`` under ``root``."""
    pq.write_table(_series(keys), root / "flat.parquet")
    prepare(str(root / "flat.parquet"), ["p"], str(root / "data"))
    return manymodels.config_from_dict({
        "horizon": 2,
        "data": {"path": str(root / "data"), "partition_by": ["p"], "id_cols": ["p", "k"],
                 "time_col": "t", "target_col": "y", "freq": "W-SUN"},
        "model": {"template": "seasonal_naive"},
        "evaluation": {"season_length": 2},
        "compute": {"scheduler": scheduler},
        "tracking": {"experiment": "keys", "model_prefix": "k"},
        "failures": failures,
        "work_dir": str(root / "work"),
        "forecast": {"output": str(root / "forecasts")},
    })  # fmt: skip


def _round_trip(keys: list[tuple[Any, Any]], scheduler: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as folder:
        config = _prepared(Path(folder), keys, scheduler)
        trained = manymodels.train(config)
        assert trained.failed == 0, trained.failures[["error"]].to_string()
        manymodels.forecast(config)
        return pd.read_parquet(config.forecast.output)


def test_a_key_too_long_for_the_registry_fails_alone(tmp_path, dask_scheduler):
    keys = [("a", "short"), ("a", "x" * 6000), ("b", "other")]
    config = _prepared(tmp_path, keys, dask_scheduler, max_share=0.5)
    trained = manymodels.train(config)

    assert (trained.trained, trained.failed) == (2, 1)
    failure = trained.failures.iloc[0]
    assert (failure["stage"], failure["error_type"]) == ("keys", "EntityError")
    assert failure["error"].startswith("key values too long for the model registry: 60")
    forecasts = manymodels.forecast(config)
    assert (forecasts.forecast, forecasts.failed) == (2, 1)
    output = pd.read_parquet(config.forecast.output)
    assert set(output["k"]) == {"short", "other"}


def _plain(value: Any) -> Any:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


@pytest.mark.slow
# A handful of examples keeps the suite fast; KEY_EXAMPLES=100 searches harder.
@settings(
    max_examples=int(os.environ.get("KEY_EXAMPLES", "6")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    st.one_of(
        st.lists(partition_values, min_size=1, max_size=3, unique=True),
        st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=3, unique=True),
    ),
    st.lists(inner_values, min_size=1, max_size=3, unique=True),
)
def test_keys_round_trip_from_prepare_to_the_forecast(dask_scheduler, parts, inners):
    keys = [(p, k) for p in parts for k in inners]
    output = _round_trip(keys, dask_scheduler)

    found = {
        (_plain(p), _plain(k))
        for p, k in zip(output["p"].astype(object), output["k"].astype(object), strict=True)
    }
    # Folder names do not say whether 12 was a number or a string: like a hive reader, the
    # forecast takes a partition column whose every value is a plain integer for integers.
    present = [p for p in parts if p is not None]
    integers = bool(present) and all(
        isinstance(p, int) or (_CANONICAL.fullmatch(p) and len(p) < 19) for p in present
    )
    expected = {(int(p) if integers and p is not None else p, k) for p, k in keys}
    assert found == expected
    for p, k in found:
        assert p is None or isinstance(p, int | np.integer if integers else str)
        assert k is None or isinstance(k, str)
    assert len(output) == 2 * len(keys)
