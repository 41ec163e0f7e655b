"""What the registry holds, as tables: every entity's champion (``models list``) and one
entity's versions with their backtests (``models show``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from manymodels import lineage
from manymodels.config import Config
from manymodels.jobs.backtests import ARTIFACT as BACKTEST_ARTIFACT
from manymodels.lifecycle.catalog import Catalog, Entity, Version, open_catalog
from manymodels.lifecycle.filters import apply_conditions, parse_condition, sort_rows
from manymodels.tracking.run_reads import read_table

__all__ = ["ModelDetails", "entity_rows", "list_models", "show_model", "version_fields"]

_METRIC_PREFIX = lineage.metric_tag("")
# Tags that hold numbers; the others stay text even when they look like one (a hex digest).
_NUMERIC_TAGS = (_METRIC_PREFIX, lineage.coverage_tag(""), f"{lineage.TAG_PREFIX}margin.",
                 lineage.OBSERVATIONS, lineage.BACKTEST_WINDOWS, lineage.FIT_SECONDS)  # fmt: skip


def list_models(
    config: Config,
    where: Sequence[str] = (),
    sort: Sequence[str] = (),
    limit: int | None = None,
) -> pd.DataFrame:
    """One row per entity model: keys, name, champion version, version count, when the
    champion was registered and its age, and the champion's tags (metrics such as ``mase``,
    ``winner``, ``template``, ``job_id``, ...).

    Args:
        config: the job configuration whose registry to read.
        where: conditions that must all hold, e.g. ``["mase > 1.2", "winner = theta"]``.
        sort: fields to sort by, ``-`` first for descending, e.g. ``["-mase"]``.
        limit: at most this many rows.

    Raises:
        FilterError: a malformed condition or an unknown field (checked before any read).

    Example:
        >>> worst = list_models(config, where=["mase > 1"], sort=["-mase"], limit=10)  # doctest: +SKIP
    """
    conditions = [parse_condition(text) for text in where]
    rows = entity_rows(open_catalog(config))
    if rows.empty:  # no model yet: no field to check a condition against, nothing to list
        return rows
    rows = sort_rows(apply_conditions(rows, conditions), sort)
    return (rows.head(limit) if limit is not None else rows).reset_index(drop=True)


def entity_rows(catalog: Catalog, now: datetime | None = None) -> pd.DataFrame:
    """The list table of a catalog (one row per entity, sorted by name)."""
    now = now or datetime.now(UTC)
    records = [_entity_row(entity, catalog.entity_cols, now)
               for entity in sorted(catalog.entities.values(), key=lambda e: e.name)]  # fmt: skip
    columns = [*catalog.entity_cols, "model_name", "champion", "versions", "registered",
               "age_days"]  # fmt: skip
    frame = pd.DataFrame(records)
    return frame if len(frame) else pd.DataFrame(columns=columns)


def version_fields(version: Version, entity_cols: Sequence[str]) -> dict[str, Any]:
    """A version's tags by short name: ``manymodels.metric.mase`` becomes ``mase``,
    ``manymodels.winner`` becomes ``winner``; metrics as numbers. Key tags are left out."""
    fields: dict[str, Any] = {}
    for tag, value in version.tags.items():
        if tag in entity_cols:
            continue
        short = tag.removeprefix(_METRIC_PREFIX).removeprefix(lineage.TAG_PREFIX)
        fields[short] = _number(value) if tag.startswith(_NUMERIC_TAGS) else value
    return fields


def _entity_row(entity: Entity, entity_cols: Sequence[str], now: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {**entity.keys, "model_name": entity.name}
    champion = entity.champion
    row.update(champion=champion.number if champion else None, versions=len(entity.versions))
    if champion is not None:
        row.update(registered=champion.created.isoformat(timespec="seconds"),
                   age_days=round((now - champion.created).total_seconds() / 86400, 2))  # fmt: skip
        row.update(version_fields(champion, entity_cols))
    return row


@dataclass
class ModelDetails:
    """One entity's model: everything ``models show`` prints.

    Attributes:
        name: the registered model's name.
        keys: the entity's key values.
        aliases: alias to version number.
        versions: one row per version: number, aliases, registered, and its tags (metrics,
            lineage) by short name.
        backtests: each version's backtest predictions (every candidate, every window) from its
            job's ``backtest.parquet``, with a ``version`` column; empty when no job kept one.
    """

    name: str
    keys: dict[str, str]
    aliases: dict[str, int]
    versions: pd.DataFrame
    backtests: pd.DataFrame


def show_model(config: Config, keys: Mapping[str, str]) -> ModelDetails:
    """Versions, aliases, metrics, lineage and backtests of one entity's model.

    Args:
        config: the job configuration whose registry to read.
        keys: every key column's value, e.g. ``{"store": "12", "brand": "tropicana"}``.

    Raises:
        RegistryError: no model is registered for these keys.
    """
    catalog = open_catalog(config)
    entity = catalog.find({col: str(keys.get(col, "")) for col in catalog.entity_cols})
    rows = []
    for version in entity.versions:
        row = {"version": version.number, "aliases": ",".join(entity.aliases_of(version.number)),
               "registered": version.created.isoformat(timespec="seconds")}  # fmt: skip
        row.update(version_fields(version, catalog.entity_cols))
        rows.append(row)
    backtests = _backtests(catalog, entity)
    return ModelDetails(entity.name, entity.keys, dict(entity.aliases), pd.DataFrame(rows),
                        backtests)  # fmt: skip


def _backtests(catalog: Catalog, entity: Entity) -> pd.DataFrame:
    """Each version's rows of its job's backtest table (read once per job run)."""
    frames = []
    tables: dict[str, pd.DataFrame | None] = {}
    for version in entity.versions:
        if not version.run_id:
            continue
        if version.run_id not in tables:
            tables[version.run_id] = read_table(catalog.session, version.run_id, BACKTEST_ARTIFACT)
        table = tables[version.run_id]
        if table is None or table.empty:
            continue
        mine = pd.Series(True, index=table.index)
        for col, value in entity.keys.items():
            mine &= table[col].astype(str) == value
        frames.append(table[mine].assign(version=version.number))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value
