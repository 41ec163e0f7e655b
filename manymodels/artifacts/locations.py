"""Artifact URIs as local paths: which are local, downloading the remote ones, uploading.

Only a remote artifact store needs MLflow (imported when it is first reached); a local one is
read and written as plain files.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

__all__ = ["local_file", "local_path", "upload_dir"]


def local_path(uri: str) -> str | None:
    """The local path of a ``file:`` URI or an absolute path; None for anything remote."""
    if uri.startswith("file://"):
        return unquote(urlparse(uri).path)
    return uri if os.path.isabs(uri) else None


def local_file(uri: str, tracking_uri: str | None = None) -> str:
    """A local path for an artifact URI, downloading it first when it is remote."""
    local = local_path(uri)
    if local is not None:
        return local
    if Path(uri).exists():
        return uri
    import mlflow

    return mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri)


def upload_dir(
    artifact_uri: str, local_dir: str, artifact_path: str, tracking_uri: str | None = None
) -> None:
    """Copy a local folder into a run's artifacts (one call per batch, not per model).

    ``tracking_uri`` resolves ``mlflow-artifacts:`` URIs, which a server proxies; a worker
    process is told it explicitly rather than relying on its environment.
    """
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)
    repository.log_artifacts(local_dir, artifact_path)
