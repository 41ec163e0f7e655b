"""``--where`` and ``--sort`` for the model list: a small comparison grammar, never ``eval``.

A condition is ``FIELD OP VALUE``: FIELD a column of the list (a metric such as ``mase``, a
tag such as ``winner``, a key column), OP one of ``< <= > >= = == !=``, VALUE a number, a
quoted string or a bare word. Numbers compare as numbers, anything else as text; a missing
value never matches. Several conditions must all hold.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from manymodels.errors import ManyModelsError

__all__ = ["Condition", "FilterError", "apply_conditions", "parse_condition", "sort_rows"]


class FilterError(ManyModelsError, ValueError):
    """A ``--where`` or ``--sort`` that cannot be read or names no column."""


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt, "=": operator.eq,
}  # fmt: skip
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|==|!=|<|>|=)\s*(.*?)\s*$")
_QUOTED = re.compile(r"""^(['"])(.*)\1$""")


@dataclass(frozen=True)
class Condition:
    """One parsed ``FIELD OP VALUE``."""

    field: str
    op: str
    value: float | str

    def mask(self, column: pd.Series) -> pd.Series:
        """Which rows hold."""
        compare = _OPERATORS[self.op]
        if isinstance(self.value, float):
            numbers = pd.to_numeric(column, errors="coerce")
            return compare(numbers, self.value).fillna(False) & numbers.notna()
        text = column.astype("string")
        return compare(text, self.value).fillna(False) & column.notna()


def parse_condition(text: str) -> Condition:
    """Parse one ``--where``, e.g. ``"mase > 1.2"`` or ``"winner = auto_ets"``.

    Raises:
        FilterError: it is not ``FIELD OP VALUE``.
    """
    match = _CONDITION.match(text)
    if not match or not match.group(3):
        raise FilterError(
            f"--where '{text}': expected FIELD OP VALUE with OP one of < <= > >= = !=, e.g. "
            "--where 'mase > 1.2' or --where 'winner = theta'."
        )
    field, op, raw = match.groups()
    if raw[0] in "<>=!":
        raise FilterError(
            f"--where '{text}': '{op}{raw[0]}' is no operator; use one of < <= > >= = !=."
        )
    quoted = _QUOTED.match(raw)
    if quoted:
        return Condition(field, op, quoted.group(2))
    try:
        return Condition(field, op, float(raw))
    except ValueError:
        return Condition(field, op, raw)


def apply_conditions(rows: pd.DataFrame, conditions: Sequence[Condition]) -> pd.DataFrame:
    """The rows where every condition holds.

    Raises:
        FilterError: a condition names no column.
    """
    keep = pd.Series(True, index=rows.index)
    for condition in conditions:
        _require_column(rows, condition.field, "--where")
        column = rows[condition.field]
        if isinstance(condition.value, str) and _numeric(column):
            raise FilterError(
                f"--where '{condition.field} {condition.op} {condition.value}': "
                f"{condition.field} holds numbers and '{condition.value}' is not one."
            )
        keep &= condition.mask(column)
    return rows[keep]


def sort_rows(rows: pd.DataFrame, sort: Sequence[str]) -> pd.DataFrame:
    """Rows sorted by fields (``mase`` ascending, ``-mase`` descending); missing values last.

    Raises:
        FilterError: a field names no column.
    """
    if not sort:
        return rows
    fields = [item.removeprefix("-") for item in sort]
    for field in fields:
        _require_column(rows, field, "--sort")
    keys = {field: _sortable(rows[field]) for field in fields}
    ordered = pd.DataFrame(keys, index=rows.index).sort_values(
        fields, ascending=[not item.startswith("-") for item in sort], na_position="last",
        kind="stable",
    )  # fmt: skip
    return rows.loc[ordered.index]


def _sortable(column: pd.Series) -> pd.Series:
    return pd.to_numeric(column, errors="coerce") if _numeric(column) else column.astype("string")


def _numeric(column: pd.Series) -> bool:
    """Whether every value present is a number (a metric), not text that may hold digits."""
    present = column.dropna()
    return bool(len(present)) and bool(pd.to_numeric(present, errors="coerce").notna().all())


def _require_column(rows: pd.DataFrame, field: str, option: str) -> None:
    if field in rows.columns:
        return
    columns = [str(col) for col in rows.columns]
    close = difflib.get_close_matches(field, columns, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise FilterError(
        f"{option} '{field}': no such field. Hint: {hint}fields are {', '.join(columns)}."
    )
