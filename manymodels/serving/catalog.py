"""Which model version serves each entity under an alias, kept fresh from the registry.

The whole alias is read in bulk (one registry read for every entity, as a forecast job does),
then again every ``serve.refresh_seconds`` on a background thread: a promotion (the alias moved
to another version) is served from the next refresh on, without a restart, and no request waits
for the registry. A refresh that fails keeps the entities known so far and is retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Catalog", "ServedModel"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """The registered model version that serves one entity.

    Attributes:
        name: the registered model's name.
        version: its version under the alias.
        location: where the model is stored (a folder URI, or ``shard-uri#member``).
        keys: the entity's key values by column.
    """

    name: str
    version: int
    location: str
    keys: Mapping[str, str]


# Reads the alias's models: {entity key values: ServedModel}.
Reader = Callable[[], dict[tuple[str, ...], ServedModel]]


class Catalog:
    """The entity-to-version table, refreshed in the background.

    Args:
        read: reads the table from the registry (may raise; the old table then stays).
        refresh_seconds: seconds between two reads.
    """

    def __init__(self, read: Reader, refresh_seconds: float) -> None:
        self.read = read
        self.refresh_seconds = refresh_seconds
        self.refreshed_at: float | None = None
        self.last_error: str | None = None
        self._table: dict[tuple[str, ...], ServedModel] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """Read the table once now; on failure keep the old one and remember why."""
        try:
            table = self.read()
        except Exception as exc:  # noqa: BLE001 - a registry hiccup must not stop serving
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning("could not refresh the served models: %s", self.last_error)
            return
        self._table, self.last_error = table, None  # one assignment: readers see old or new
        self.refreshed_at = time.time()

    def start(self) -> None:
        """Read the table now, then again every ``refresh_seconds`` until :meth:`stop`."""
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="manymodels-catalog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def lookup(self, keys: tuple[str, ...]) -> ServedModel | None:
        """The model version that serves the entity with these key values, if any."""
        return self._table.get(keys)

    def models(self) -> list[ServedModel]:
        """Every served entity's model version."""
        return list(self._table.values())

    def __len__(self) -> int:
        return len(self._table)

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()
