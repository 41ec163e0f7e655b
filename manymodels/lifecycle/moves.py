"""Moving ``champion`` by hand: promoting a version, rolling back to an earlier one, for one
entity or for every entity of a job.

Every move is planned and checked on a :class:`~manymodels.lifecycle.catalog.Catalog` first;
only a plan without a single bad request is applied, in one bulk alias write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from manymodels import lineage
from manymodels.config import Config
from manymodels.errors import RegistryError
from manymodels.lifecycle.catalog import Catalog, Entity, open_catalog
from manymodels.tracking.aliases import CHAMPION

__all__ = [
    "AliasMove",
    "plan_promotion",
    "plan_rollback",
    "previous_champion",
    "promote_models",
    "rollback_models",
]


@dataclass(frozen=True)
class AliasMove:
    """``champion`` of one entity's model moving from one version to another.

    Attributes:
        name: the registered model.
        keys: the entity's key values.
        old: the version that had the alias (None: none had it).
        new: the version that gets it.
    """

    name: str
    keys: Mapping[str, str]
    old: int | None
    new: int

    def describe(self) -> str:
        old = f"version {self.old}" if self.old is not None else "no champion"
        return f"{self.name}: champion {old} -> version {self.new}"


def promote_models(
    config: Config,
    keys: Mapping[str, str] | None = None,
    *,
    job_id: str | None = None,
    version: int | None = None,
    dry_run: bool = False,
) -> list[AliasMove]:
    """Make a version the champion: one entity's (its newest, or ``version``), or every
    version a job registered (``job_id``).

    Args:
        config: the job configuration whose registry to change.
        keys: the entity's key values; give these or ``job_id``.
        job_id: every version this job registered becomes its entity's champion.
        version: with ``keys``, the version to promote (default: the newest).
        dry_run: plan and check only; change nothing.

    Returns:
        The moves (made, or that would be made); entities already on that version are left out.

    Raises:
        RegistryError: unknown entity or job, a version that does not exist; nothing changed.
    """
    catalog = open_catalog(config)
    moves = plan_promotion(catalog, keys, job_id, version)
    return _apply(catalog, moves, dry_run)


def rollback_models(
    config: Config,
    keys: Mapping[str, str] | None = None,
    *,
    job_id: str | None = None,
    version: int | None = None,
    dry_run: bool = False,
) -> list[AliasMove]:
    """Move the champion back: one entity's to the version that was champion before it (or
    ``version``), or, for ``job_id``, that of every entity whose champion that job registered.

    The version that was champion when the current one was registered is recorded on it
    (``manymodels.champion_before``); for versions registered before that tag existed, or whose
    earlier champion was pruned, the newest earlier version (of another job) is taken.

    Entities of the job that have no earlier version keep their champion; a rollback where no
    entity can go back is an error.

    Args: as for :func:`promote_models`.

    Raises:
        RegistryError: unknown entity or job, nothing earlier to go back to, a version that
            does not exist; nothing changed.
    """
    catalog = open_catalog(config)
    moves = plan_rollback(catalog, keys, job_id, version)
    return _apply(catalog, moves, dry_run)


def plan_promotion(
    catalog: Catalog, keys: Mapping[str, str] | None, job_id: str | None, version: int | None
) -> list[AliasMove]:
    """The moves of a promotion, checked against the catalog."""
    _one_target(keys, job_id, version)
    if job_id is not None:
        registered = catalog.versions_of_job(job_id)
        if not registered:
            raise RegistryError(_no_job(catalog, job_id))
        moves = [_move(entity, chosen.number) for entity, chosen in registered]
    else:
        entity = catalog.find(keys or {})
        if version is None and not entity.versions:
            raise RegistryError(f"{entity.name} has no versions to promote.")
        number = version if version is not None else entity.versions[-1].number
        entity.require(number)
        moves = [_move(entity, number)]
    return [move for move in moves if move.old != move.new]


def plan_rollback(
    catalog: Catalog, keys: Mapping[str, str] | None, job_id: str | None, version: int | None
) -> list[AliasMove]:
    """The moves of a rollback, checked against the catalog."""
    _one_target(keys, job_id, version)
    if job_id is None:
        entity = catalog.find(keys or {})
        current = _champion_number(entity)
        if version is not None:
            entity.require(version)
            return [] if version == current else [_move(entity, version)]
        previous = previous_champion(entity, skip_job=None)
        if previous is None:
            raise RegistryError(
                f"{entity.name}: its champion is version {current}, the first it has; there is "
                "no earlier version to roll back to."
            )
        return [_move(entity, previous)]
    registered = catalog.versions_of_job(job_id)
    if not registered:
        raise RegistryError(_no_job(catalog, job_id))
    moves = []
    for entity, _ in registered:
        champion = entity.champion
        if champion is None or champion.job_id != job_id:
            continue
        previous = previous_champion(entity, skip_job=job_id)
        if previous is not None:
            moves.append(_move(entity, previous))
    if not moves:
        raise RegistryError(
            f"job {job_id}: none of its versions is a champion with an earlier version to go "
            "back to; nothing to roll back."
        )
    return moves


def previous_champion(entity: Entity, skip_job: str | None) -> int | None:
    """The version a rollback of the champion goes back to: the one that was champion when the
    current champion was registered (its ``manymodels.champion_before`` tag), when it still
    exists; else the newest earlier version (not registered by ``skip_job``); else None."""
    champion = entity.champion
    if champion is None:
        return None
    recorded = champion.tags.get(lineage.CHAMPION_BEFORE, "")
    before = int(recorded) if recorded.isdigit() else None
    if before is not None and before != champion.number and entity.version(before) is not None:
        return before
    earlier = [v.number for v in entity.versions
               if v.number < champion.number and (skip_job is None or v.job_id != skip_job)]  # fmt: skip
    return earlier[-1] if earlier else None


def _apply(catalog: Catalog, moves: list[AliasMove], dry_run: bool) -> list[AliasMove]:
    if moves and not dry_run:
        catalog.session.registry.set_aliases([(m.name, CHAMPION, m.new) for m in moves])
    return moves


def _move(entity: Entity, number: int) -> AliasMove:
    return AliasMove(entity.name, entity.keys, entity.aliases.get(CHAMPION), number)


def _one_target(keys: Mapping[str, str] | None, job_id: str | None, version: int | None) -> None:
    if (not keys) == (job_id is None):
        raise RegistryError("give an entity's KEY=VALUE pairs or --job JOB_ID (one of them).")
    if job_id is not None and version is not None:
        raise RegistryError("--version goes with one entity's KEY=VALUE pairs, not with --job.")


def _champion_number(entity: Entity) -> int:
    number = entity.aliases.get(CHAMPION)
    if number is None:
        raise RegistryError(
            f"{entity.name} has no champion to roll back. Hint: 'manymodels models promote' "
            "gives it one."
        )
    return number


def _no_job(catalog: Catalog, job_id: str) -> str:
    return (
        f"job {job_id} registered no version of a model named '{catalog.prefix}.*'. Hint: the "
        "job ids are in 'manymodels models list' (column job_id) and in the MLflow runs."
    )
