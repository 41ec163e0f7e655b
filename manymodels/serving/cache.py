"""The entity models loaded so far, at most ``serve.cache_size``, least recently used first out.

Models are keyed by their location, which differs from one version to the next: a promoted
version is loaded as a new entry, and the old one ages out. Two requests that miss on the same
model at once may both load it; the second copy simply replaces the first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from manymodels.entity_model import EntityModel

__all__ = ["ModelCache"]


class ModelCache:
    """A thread-safe LRU cache of loaded entity models.

    Args:
        load: loads the model at a location.
        size: the most models kept loaded.
    """

    def __init__(self, load: Callable[[str], EntityModel], size: int) -> None:
        self.load = load
        self.size = size
        self.hits = 0
        self.misses = 0
        self._models: OrderedDict[str, EntityModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, location: str) -> tuple[EntityModel, bool]:
        """The model at ``location``, and whether it was already loaded.

        Raises:
            Exception: whatever loading the model raised.
        """
        with self._lock:
            model = self._models.get(location)
            if model is not None:
                self._models.move_to_end(location)
                self.hits += 1
                return model, True
            self.misses += 1
        # Loaded outside the lock: a slow load must not hold up requests for cached models.
        model = self.load(location)
        with self._lock:
            self._models[location] = model
            self._models.move_to_end(location)
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model, False

    def __len__(self) -> int:
        return len(self._models)
