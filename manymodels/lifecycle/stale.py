"""Entities whose champion is old, or whose data changed since it was trained.

The age is the champion version's registration time. A data change is found by comparing the
champion's ``manymodels.data_fingerprint`` tag with the fingerprint of the entity's rows now;
that reads every entity's rows on the cluster (as the read step of a training job does, about
as long as reading the dataset once), so it is asked for with ``changed=True``.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd

from manymodels import lineage
from manymodels.config import Config
from manymodels.errors import ManyModelsError
from manymodels.lifecycle.catalog import open_catalog

__all__ = ["current_fingerprints", "parse_age", "stale_models"]

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class AgeError(ManyModelsError, ValueError):
    """An age that cannot be read, such as ``--older-than 30x``."""


def parse_age(text: str) -> timedelta:
    """``30d`` (also ``s``, ``m`` for minutes, ``h``, ``w``) as a duration.

    Raises:
        AgeError: not a number followed by one of those units.
    """
    match = _AGE.match(text)
    if not match:
        raise AgeError(
            f"--older-than '{text}': expected a number and a unit (s, m, h, d or w), e.g. 30d."
        )
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def stale_models(
    config: Config,
    older_than: str | timedelta | None = None,
    changed: bool = False,
    now: datetime | None = None,
) -> pd.DataFrame:
    """Entities whose champion is older than ``older_than``, or (``changed``) whose data
    changed since their champion was trained.

    Args:
        config: the job configuration whose registry and data to read.
        older_than: an age such as ``"30d"``.
        changed: compare each champion's data fingerprint with the data now (reads every
            entity's rows on the cluster).
        now: the time ages are counted to (default: now).

    Returns:
        Keys, ``model_name``, ``champion``, ``registered``, ``age_days`` and ``reason``
        (``older than 30d``, ``data changed``, ``no data``: the entity has no rows any more,
        ``data unreadable``).

    Raises:
        ManyModelsError: neither ``older_than`` nor ``changed`` given, or a malformed age.
    """
    if older_than is None and not changed:
        raise AgeError("give --older-than AGE (e.g. 30d), --changed, or both.")
    age = parse_age(older_than) if isinstance(older_than, str) else older_than
    now = now or datetime.now(UTC)
    catalog = open_catalog(config)
    current = current_fingerprints(config) if changed else {}
    rows = []
    for entity in sorted(catalog.entities.values(), key=lambda e: e.name):
        champion = entity.champion
        if champion is None:
            continue
        reasons = []
        if age is not None and now - champion.created > age:
            reasons.append(f"older than {older_than}")
        if changed:
            recorded = champion.tags.get(lineage.DATA_FINGERPRINT, "")
            if entity.name not in current:
                reasons.append("no data")
            elif current[entity.name] is None:
                reasons.append("data unreadable")
            elif current[entity.name] != recorded:
                reasons.append("data changed")
        if reasons:
            rows.append({**entity.keys, "model_name": entity.name, "champion": champion.number,
                         "registered": champion.created.isoformat(timespec="seconds"),
                         "age_days": round((now - champion.created).total_seconds() / 86400, 2),
                         "reason": ", ".join(reasons)})  # fmt: skip
    columns = [*catalog.entity_cols, "model_name", "champion", "registered", "age_days", "reason"]
    return pd.DataFrame(rows, columns=columns)


def current_fingerprints(config: Config) -> dict[str, str | None]:
    """Every entity's data fingerprint now, computed on the config's cluster, by model name."""
    from manymodels.engine import cluster_in_background, map_batches, worker_count
    from manymodels.inputs import validate_inputs
    from manymodels.mainguard import require_main_guard
    from manymodels.planning import plan_batches
    from manymodels.tasks.fingerprints import fingerprint_batch

    require_main_guard(config.compute.scheduler is None, "manymodels stale_models(changed=True)")
    inputs = validate_inputs(config, needs_template=False)
    found: dict[str, str | None] = {}
    with cluster_in_background(config.compute) as pending:
        client = pending.client()
        batches = plan_batches(inputs.partitions, worker_count(client), config.compute.batch_size)
        name = f"fingerprints-{uuid.uuid4().hex[:8]}"
        for batch, outcome in map_batches(client, fingerprint_batch, batches, config, name=name):
            if isinstance(outcome, BaseException):
                raise ManyModelsError(
                    f"could not read partitions {[p.keys for p in batch][:3]} to fingerprint "
                    f"them ({type(outcome).__name__}: {outcome})."
                ) from outcome
            found.update(outcome)
    return found
