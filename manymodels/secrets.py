"""Keeping credentials out of everything manymodels writes or prints.

Credentials reach a job in the tracking URI (``https://user:password@host``), in
``data.storage_options`` and in environment variables. :func:`scrub` masks all of them in any
text before it is logged to MLflow, written to a ledger or printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MASK", "active_secrets", "remember", "remember_config", "scrub", "scrub_row"]

MASK = "***"

# Environment variables that commonly hold credentials for MLflow and object stores.
_SECRET_ENVIRONMENT = (
    "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY", "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET", "GOOGLE_APPLICATION_CREDENTIALS_JSON", "DATABRICKS_TOKEN",
    "PGPASSWORD",
)  # fmt: skip
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<secret>[^@/\s]+)@"
)
_MIN_SECRET_LENGTH = 4
# storage_options keys whose values are credentials (endpoints and flags are not).
_SECRET_KEY = re.compile(r"key|secret|token|password|credential|sas|connection|auth", re.I)
_known: set[str] = set()


def remember(values: Iterable[str]) -> None:
    """Treat these strings as secrets from now on (too short ones would mask ordinary text)."""
    _known.update(
        value for value in values if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH
    )


def remember_config(config: Any) -> None:
    """Remember the secrets a job configuration carries (URI passwords, storage options)."""
    values = []
    for uri in (config.tracking.uri, config.tracking.registry_uri):
        match = _URL_CREDENTIALS.search(uri or "")
        if match:
            values.append(match.group("secret"))
    values.extend(_string_values(config.data.storage_options))
    remember(values)


def scrub(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with URL passwords and every known secret replaced by ``***``.

    Args:
        text: what is about to be printed, logged or written.
        secrets: the secrets to mask, from :func:`active_secrets` (looked up when None).
    """
    if not text:
        return text
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:{MASK}@", text)
    for secret in active_secrets() if secrets is None else secrets:
        text = text.replace(secret, MASK)
    return text


def active_secrets() -> list[str]:
    """Every secret known now (remembered ones and the environment's), longest first."""
    found = _known | {os.environ[name] for name in _SECRET_ENVIRONMENT if os.environ.get(name)}
    return sorted((s for s in found if len(s) >= _MIN_SECRET_LENGTH), key=len, reverse=True)


def scrub_row(row: dict[str, Any]) -> dict[str, Any]:
    """A result row with every string value scrubbed."""
    secrets = active_secrets()
    return {key: scrub(value, secrets) if isinstance(value, str) else value
            for key, value in row.items()}  # fmt: skip


def _string_values(options: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for key, value in options.items():
        if isinstance(value, str) and _SECRET_KEY.search(str(key)):
            found.append(value)
        elif isinstance(value, Mapping):
            found.extend(_string_values(value))
    return found
