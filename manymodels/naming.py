"""Deterministic, readable, collision-free names for entities.

An entity is identified by its key values, e.g. ``{"user_id": "u043", "brand": "minute.maid"}``.
Registered model names and artifact folders are derived from them by an injective encoding:
letters, digits, ``_`` and ``-`` pass through, every other character becomes ``~XX`` (its UTF-8
bytes in upper-case hex; ``~`` itself is escaped), pairs are joined with ``.`` and keys from
values with ``=``: ``sales.user_id=u043.brand=minute~2Emaid``. Because the encoding never emits
``.``, ``=``, ``/`` or a bare ``~`` by itself, two different entities never share a name and no
key value can climb out of its folder. Names too long for a registry are cut and end in ``~~``
and a hash of the full name (``~~`` never appears in an uncut name). The true values stay in
tags.

Registries written before this encoding name models with :func:`legacy_model_name`, where only
letters, digits and ``-`` passed and ``_`` was the escape (``user_5Fid``);
:mod:`manymodels.lifecycle.renames` renames such models once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

__all__ = [
    "MAX_NAME_LENGTH",
    "encode_strict",
    "encode_value",
    "entity_slug",
    "legacy_model_name",
    "model_name",
]

MAX_NAME_LENGTH = 200
_SLUG_LIMIT = MAX_NAME_LENGTH - 40
_READABLE = re.compile(r"[A-Za-z0-9_-]")
_STRICT = re.compile(r"[A-Za-z0-9-]")


def encode_value(text: str) -> str:
    """Encode one key or value for a file name and a registry name: ``user_id`` stays,
    ``minute.maid`` becomes ``minute~2Emaid``."""
    return "".join(char if _READABLE.fullmatch(char) else _escape(char, "~") for char in text)


def encode_strict(text: str) -> str:
    """The older, stricter encoding: only letters, digits and ``-`` pass, every other
    character (``_`` too) becomes ``_XX``. Output folders of odd key values still use it, and
    :func:`legacy_model_name` recognises models registered under it."""
    return "".join(char if _STRICT.fullmatch(char) else _escape(char, "_") for char in text)


def entity_slug(keys: Mapping[str, object]) -> str:
    """The folder name of one entity's artifacts, e.g. ``store=12.brand=tropicana``.

    Args:
        keys: the entity's key columns and values, in the configured order.
    """
    slug = ".".join(f"{encode_value(str(k))}={encode_value(str(v))}" for k, v in keys.items())
    return _fit(slug, _SLUG_LIMIT, "~~")


def model_name(prefix: str, keys: Mapping[str, object]) -> str:
    """The registered model name of one entity, e.g. ``sales.user_id=u043``.

    Args:
        prefix: ``tracking.model_prefix`` from the config.
        keys: the entity's key columns and values, in the configured order.

    Example:
        >>> model_name("oj", {"store": "12", "brand": "minute.maid"})
        'oj.store=12.brand=minute~2Emaid'
    """
    return _fit(f"{prefix}.{entity_slug(keys)}", MAX_NAME_LENGTH, "~~")


def legacy_model_name(prefix: str, keys: Mapping[str, object]) -> str:
    """The name the entity's model had in a registry written before the readable names,
    e.g. ``sales.user_5Fid=u043``; equal to :func:`model_name` for plain keys and values.

    Args:
        prefix: ``tracking.model_prefix`` from the config.
        keys: the entity's key columns and values, in the configured order.
    """
    slug = ".".join(f"{encode_strict(str(k))}={encode_strict(str(v))}" for k, v in keys.items())
    return _fit(f"{prefix}.{_fit(slug, _SLUG_LIMIT, '~')}", MAX_NAME_LENGTH, "~")


def _escape(char: str, marker: str) -> str:
    return "".join(f"{marker}{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))


def _fit(name: str, limit: int, marker: str) -> str:
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{name[: limit - len(digest) - len(marker)]}{marker}{digest}"
