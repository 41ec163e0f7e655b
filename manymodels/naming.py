"""Deterministic, readable, collision-free names for entities.

An entity is identified by its key values, e.g. ``{"store": "12", "brand": "tropicana"}``.
Registered model names and artifact folders are derived from them by an injective encoding:
letters, digits and ``-`` pass through, every other character becomes ``_XX`` (its UTF-8 bytes in
hex), pairs are joined with ``.`` and keys from values with ``=``. Because the encoding never
emits ``.``, ``=``, ``/`` or ``~`` by itself, two different entities can never share a name and no
key value can climb out of its folder. Names too long for a registry are cut and end in ``~`` and
a hash of the full name. The true values stay in tags.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

__all__ = ["entity_slug", "model_name", "encode_value", "MAX_NAME_LENGTH"]

MAX_NAME_LENGTH = 200
_SAFE = re.compile(r"[A-Za-z0-9-]")


def encode_value(text: str) -> str:
    """Encode one key or value so that it is safe in a file name and a registry name."""
    return "".join(char if _SAFE.fullmatch(char) else _escape(char) for char in text)


def entity_slug(keys: Mapping[str, object]) -> str:
    """The folder name of one entity's artifacts, e.g. ``store=12.brand=tropicana``.

    Args:
        keys: the entity's key columns and values, in the configured order.
    """
    slug = ".".join(f"{encode_value(str(k))}={encode_value(str(v))}" for k, v in keys.items())
    return _fit(slug, MAX_NAME_LENGTH - 40)


def model_name(prefix: str, keys: Mapping[str, object]) -> str:
    """The registered model name of one entity, e.g. ``mm.store=12.brand=tropicana``.

    Args:
        prefix: ``tracking.model_prefix`` from the config.
        keys: the entity's key columns and values, in the configured order.
    """
    return _fit(f"{prefix}.{entity_slug(keys)}", MAX_NAME_LENGTH)


def _escape(char: str) -> str:
    return "".join(f"_{byte:02X}" for byte in char.encode("utf-8"))


def _fit(name: str, limit: int) -> str:
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    return f"{name[: limit - len(digest) - 1]}~{digest}"
