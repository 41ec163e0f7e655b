"""The pure rules behind ``manymodels models``: the --where grammar, sorting, ages, which
models the older naming left behind, and where a rollback goes. (The commands themselves, on a
real registry, are in test_models_cli.py.)"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from manymodels import lineage
from manymodels.lifecycle.catalog import Entity, Version, parse_keys
from manymodels.lifecycle.filters import (
    Condition,
    FilterError,
    apply_conditions,
    parse_condition,
    sort_rows,
)
from manymodels.lifecycle.moves import previous_champion
from manymodels.lifecycle.renames import legacy_renames
from manymodels.lifecycle.stale import AgeError, parse_age
from manymodels.naming import legacy_model_name, model_name
from manymodels.tracking.registry_types import ModelRecord

ROWS = pd.DataFrame(
    {
        "model_name": ["a", "b", "c", "d"],
        "mase": [1.5, 0.3, math.nan, 1.2],
        "winner": ["theta", "naive", "theta", None],
        "job_id": ["1e5", "2", "3", "4"],
    }
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mase > 1.2", Condition("mase", ">", 1.2)),
        ("mase>=1", Condition("mase", ">=", 1.0)),
        ("winner = theta", Condition("winner", "=", "theta")),
        ("winner != 'auto ets'", Condition("winner", "!=", "auto ets")),
        ("margin.runner_up < -0.1", Condition("margin.runner_up", "<", -0.1)),
        ("coverage.80 == 0.8", Condition("coverage.80", "==", 0.8)),
    ],
)
def test_conditions_parse(text, expected):
    assert parse_condition(text) == expected


@pytest.mark.parametrize(
    "text", ["mase", "mase >", "> 1", "1mase > 1", "mase ~ 1", "mase => 1", "__import__('os')"]
)
def test_malformed_conditions_are_refused(text):
    with pytest.raises(FilterError, match="--where"):
        parse_condition(text)


def test_conditions_are_anded_and_a_missing_value_never_matches():
    kept = apply_conditions(ROWS, [parse_condition("mase > 1"), parse_condition("winner = theta")])
    assert list(kept["model_name"]) == ["a"]
    assert list(apply_conditions(ROWS, [parse_condition("mase != 0.3")])["model_name"]) == [
        "a",
        "d",
    ]


def test_a_text_column_compares_as_text_even_when_it_looks_like_numbers():
    kept = apply_conditions(ROWS, [parse_condition("winner = naive")])
    assert list(kept["model_name"]) == ["b"]
    with pytest.raises(FilterError, match="mase holds numbers and 'high' is not one"):
        apply_conditions(ROWS, [parse_condition("mase > high")])


def test_unknown_fields_suggest_the_nearest():
    with pytest.raises(FilterError, match="did you mean 'mase'"):
        apply_conditions(ROWS, [parse_condition("masse > 1")])
    with pytest.raises(FilterError, match="--sort 'masse'"):
        sort_rows(ROWS, ["-masse"])


def test_sort_descending_with_missing_values_last():
    assert list(sort_rows(ROWS, ["-mase"])["model_name"]) == ["a", "d", "b", "c"]
    assert list(sort_rows(ROWS, ["mase"])["model_name"]) == ["b", "d", "a", "c"]
    assert list(sort_rows(ROWS, ["winner", "-mase"])["model_name"]) == ["b", "a", "c", "d"]


@pytest.mark.parametrize(
    ("text", "age"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2)),
     ("90m", timedelta(minutes=90)), ("1.5d", timedelta(hours=36)), ("0s", timedelta(0))],
)  # fmt: skip
def test_ages_parse(text, age):
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["30", "d", "30x", "-1d", "30 days"])
def test_malformed_ages_are_refused(text):
    with pytest.raises(AgeError, match="expected a number and a unit"):
        parse_age(text)


def test_keys_are_given_in_any_order_and_all_of_them():
    assert parse_keys(["brand=a=b", "store=1"], ["store", "brand"]) == {
        "store": "1",
        "brand": "a=b",
    }
    with pytest.raises(Exception, match="key brand is missing"):
        parse_keys(["store=1"], ["store", "brand"])
    with pytest.raises(Exception, match="'shop=1' names no entity key"):
        parse_keys(["shop=1", "brand=a"], ["store", "brand"])


def _record(name: str, keys: dict[str, str]) -> ModelRecord:
    return ModelRecord(name, {"champion": 1}, {lineage.ENTITY_KEYS: json.dumps(keys)})


def test_only_models_named_the_older_way_are_renamed():
    plain = {"store": "1", "brand": "tropicana"}
    escaped = {"user_id": "u.1"}
    taken = {"user_id": "u_2"}
    models = {
        model_name("mm", plain): _record(model_name("mm", plain), plain),
        legacy_model_name("mm", escaped): _record(legacy_model_name("mm", escaped), escaped),
        # Both names exist: left for a person to decide.
        legacy_model_name("mm", taken): _record(legacy_model_name("mm", taken), taken),
        model_name("mm", taken): _record(model_name("mm", taken), taken),
        "mm.bundle": ModelRecord("mm.bundle", {}, {lineage.ENTITY_KEYS: "{}"}),
    }
    assert legacy_renames(models, "mm") == [("mm.user_5Fid=u_2E1", "mm.user_id=u~2E1")]


def _entity(*versions: tuple[int, str, dict[str, str]], champion: int) -> Entity:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    return Entity("mm.k=1", {"k": "1"}, {"champion": champion},
                  [Version(n, job, created, tags, None) for n, job, tags in versions])  # fmt: skip


def test_rollback_goes_to_the_recorded_champion_before():
    before = {lineage.CHAMPION_BEFORE: "1"}
    entity = _entity((1, "a", {}), (2, "b", before), (3, "c", before), champion=3)
    assert previous_champion(entity, skip_job=None) == 1  # not 2, a challenger that lost


def test_rollback_without_a_record_goes_to_the_newest_earlier_version_of_another_job():
    entity = _entity((1, "a", {}), (2, "b", {}), (3, "b", {}), champion=3)
    assert previous_champion(entity, skip_job="b") == 1
    assert previous_champion(entity, skip_job=None) == 2
    pruned = _entity((2, "b", {}), (3, "c", {lineage.CHAMPION_BEFORE: "1"}), champion=3)
    assert previous_champion(pruned, skip_job=None) == 2
    assert previous_champion(_entity((1, "a", {}), champion=1), skip_job=None) is None
