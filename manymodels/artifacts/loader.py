"""Loading saved entity models back by location, on a worker or the driver."""

from __future__ import annotations

from collections.abc import Mapping

from manymodels.artifacts.bundle import read_shard, split_location
from manymodels.artifacts.locations import local_file
from manymodels.entity_model import EntityModel

__all__ = ["ModelLoader"]


class ModelLoader:
    """Loads models by location, reading each shard or remote folder once per task.

    Args:
        tracking_uri: resolves ``mlflow-artifacts:`` locations, which a server proxies.
    """

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self._shards: dict[str, Mapping[str, EntityModel]] = {}

    def load(self, location: str) -> EntityModel:
        """The :class:`EntityModel` at a location (folder URI, or ``shard-uri#member``)."""
        uri, member = split_location(location)
        if member:
            if uri not in self._shards:
                self._shards[uri] = read_shard(local_file(uri, self.tracking_uri))
            return self._shards[uri][member]
        from manymodels.artifacts.entity_folder import load_entity_model

        return load_entity_model(local_file(uri, self.tracking_uri))
