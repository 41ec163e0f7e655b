"""Entity key values on their way out: their types, their folder names, and their limits.

Key values travel as strings (folder names, registry tags). An output gives each key column
its type back, and writes it so that ``pandas.read_parquet`` returns every value exactly:

- the type is an integer when the data declares one (a column inside the files) or, for a
  partition column, when every value is an integer written the canonical way (``12``, ``-3``;
  not ``012``, ``-0`` or ``١٢``), as a hive reader would type it; otherwise a string;
- a hive folder ``brand=tropicana`` holds the values it gives back unchanged; other values
  (numbers written another way, empty or null values, very long values, names that differ
  only in case) stay inside the files, under folders named ``brand~<encoded>~<hash>``, which
  hive readers skip.

Null key values travel as :data:`NULL_KEY`, the hive name of a null partition.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from manymodels.errors import EntityError
from manymodels.naming import encode_strict

__all__ = [
    "KeyType",
    "MAX_KEYS_TEXT",
    "NULL_KEY",
    "check_keys",
    "folder_name",
    "key_text",
    "key_types",
    "key_values",
]

NULL_KEY = "__HIVE_DEFAULT_PARTITION__"
# The registry keeps an entity's keys as JSON in one tag value, a VARCHAR(5000) in MLflow's
# database schema.
MAX_KEYS_TEXT = 5000
# Filesystems take 255 bytes per name; room is left for the column name.
_MAX_SEGMENT_BYTES = 200
_INT = re.compile(r"-?(0|[1-9][0-9]*)", re.ASCII)
_NUMBER = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*", re.ASCII)
_INT32 = 2**31


@dataclass(frozen=True)
class KeyType:
    """How an output holds one key column.

    Attributes:
        integer: the values are integers (else strings).
        in_files: the values are kept inside the files, not in hive folder names.
    """

    integer: bool = False
    in_files: bool = False


def key_text(value: Any) -> str:
    """A key value as the string it travels as (:data:`NULL_KEY` for a null)."""
    if value is None:
        return NULL_KEY
    try:
        if pd.isna(value):
            return NULL_KEY
    except (TypeError, ValueError):  # not a scalar pandas can judge: a value like any other
        pass
    return str(value)


def key_types(
    values: Mapping[str, Iterable[str]], integers: Mapping[str, bool] | None = None
) -> dict[str, KeyType]:
    """How an output holds each key column, given every value it takes.

    Args:
        values: every value of each key column, as strings.
        integers: for the columns whose type the data files declare (columns inside the
            files), whether it is an integer; others are typed from their values, as a hive
            reader would.
    """
    return {
        column: _column_type(set(column_values), (integers or {}).get(column))
        for column, column_values in values.items()
    }


def _column_type(values: set[str], declared: bool | None) -> KeyType:
    present = values - {NULL_KEY}
    canonical = all(_INT.fullmatch(value) and len(value) < 19 for value in present)
    integer = canonical if declared is None else declared and canonical
    if NULL_KEY in values:  # a hive reader cannot combine a null folder with others
        return KeyType(integer, in_files=True)
    if integer:
        return KeyType(True, in_files=not all(abs(int(value)) < _INT32 for value in present))
    folded = {value.casefold() for value in present}
    in_files = (
        all(_NUMBER.fullmatch(value) for value in present)  # a hive reader would make numbers
        or len(folded) < len(present)
        or not all(_folder_safe(value) for value in present)
    )
    return KeyType(False, in_files)


def _folder_safe(value: str) -> bool:
    # Windows drops trailing dots and spaces from names; spaces are quoted, dots are not.
    quoted = urllib.parse.quote(value, safe="")
    return bool(value) and not value.endswith(".") and len(quoted) <= _MAX_SEGMENT_BYTES


def folder_name(column: str, value: Any, kind: KeyType) -> str:
    """The folder of one key value in an output: ``column=value``, or an encoded name."""
    text = key_text(value)
    if not kind.in_files:
        return f"{_quote(column)}={_quote(text)}"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{encode_strict(column)[:40]}~{encode_strict(text)[:60]}~{digest}"


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def key_values(texts: list[str], kind: KeyType) -> list[Any]:
    """Key values as an output column holds them: integers or strings, None for a null."""
    if kind.integer:
        return [None if text == NULL_KEY else int(text) for text in texts]
    return [None if text == NULL_KEY else text for text in texts]


def check_keys(keys: Mapping[str, str]) -> None:
    """Check that the registry can hold an entity's keys.

    Raises:
        EntityError: the keys, as the registry stores them, are too long.
    """
    length = len(json.dumps(dict(keys)))
    if length > MAX_KEYS_TEXT:
        longest = max(keys, key=lambda column: len(keys[column]))
        raise EntityError(
            f"key values too long for the model registry: {length} characters as JSON, more "
            f"than {MAX_KEYS_TEXT} (the longest is '{longest}', {len(keys[longest])} "
            "characters). Hint: give this entity a shorter key, such as an id."
        )
