"""Where a task puts the models it trains, and how models are found again.

Two layouts, one per ``tracking.registration`` mode:

* ``per_entity``: each entity's model is its own MLflow model folder,
  ``<artifact_dir>/<entity slug>/`` in the job run's artifacts;
* ``per_job``: a task pickles all its entities' models into one shard,
  ``bundle/data/bundle/shards/<name>.pkl``, inside the job's single bundle model.

A model's *location* is a folder URI, or ``<shard URI>#<entity slug>`` for a shard member.
Into a local artifact store a task writes in place, each folder or shard appearing whole (by a
rename); into a remote one it writes locally and uploads once, one artifact call per batch.
Only the upload needs MLflow on the worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import cloudpickle

from manymodels.entity_model import EntityModel

if TYPE_CHECKING:
    from manymodels.flavor import ModelFiles

__all__ = ["BUNDLE_DIR", "SHARDS_DIR", "ModelLoader", "EntityFolders", "Shard", "open_sink"]

BUNDLE_DIR = "bundle"
BUNDLE_DATA = "bundle"
SHARDS_DIR = f"{BUNDLE_DIR}/data/{BUNDLE_DATA}/shards"


class EntityFolders:
    """Saves each model as its own MLflow model folder.

    Into a local artifact store, folders are written beside their final place and renamed into
    it, each whole or not at all; into a remote one, they are staged locally and uploaded in
    one artifact call per batch.
    """

    carries_champions = False

    def __init__(
        self, artifact_uri: str, artifact_dir: str, files: ModelFiles,
        tracking_uri: str | None = None,
    ) -> None:  # fmt: skip
        from manymodels.flavor import ModelWriter

        self.artifact_uri, self.artifact_dir = artifact_uri, artifact_dir
        self.tracking_uri = tracking_uri
        local_root = _local_path(artifact_uri)
        self._final = os.path.join(local_root, artifact_dir) if local_root is not None else None
        if self._final is not None:
            # On the same filesystem as the final folders, so that moving one is a rename.
            self._staging = os.path.join(self._final, f".partial-{uuid.uuid4().hex}")
            os.makedirs(self._staging)
        else:
            self._staging = tempfile.mkdtemp(prefix="manymodels-")
        self._writer = ModelWriter(files)
        self._slugs: list[str] = []

    def add(self, slug: str, model: EntityModel) -> str:
        """Save one model; returns its path relative to the run's artifact root."""
        self._writer.save(model, os.path.join(self._staging, slug))
        self._slugs.append(slug)
        return f"{self.artifact_dir}/{slug}"

    def upload(self) -> None:
        """Put everything saved so far in place: renamed locally, or one artifact call."""
        if not self._slugs:
            return
        if self._final is None:
            from manymodels.tracking import upload_dir

            upload_dir(self.artifact_uri, self._staging, self.artifact_dir, self.tracking_uri)
            return
        for slug in self._slugs:
            _move_into_place(os.path.join(self._staging, slug), os.path.join(self._final, slug))

    def close(self) -> None:
        shutil.rmtree(self._staging, ignore_errors=True)


def _move_into_place(folder: str, final: str) -> None:
    """Rename ``folder`` to ``final``, replacing what a repeated task put there before."""
    try:
        os.rename(folder, final)
    except OSError:
        if not os.path.isdir(final):
            raise
        # A folder is not renamed over a non-empty one: the earlier copy goes aside first.
        retired = f"{folder}.old"
        os.rename(final, retired)
        os.rename(folder, final)
        shutil.rmtree(retired, ignore_errors=True)


class Shard:
    """Collects a batch's models into one pickled shard of the job bundle."""

    carries_champions = True

    def __init__(self, artifact_uri: str, file_name: str, tracking_uri: str | None = None) -> None:
        self.artifact_uri, self.file_name = artifact_uri, file_name
        self.tracking_uri = tracking_uri
        self._models: dict[str, EntityModel] = {}

    def add(self, slug: str, model: EntityModel) -> str:
        """Add one model; returns its location relative to the run's artifact root."""
        self._models[slug] = model
        return f"{SHARDS_DIR}/{self.file_name}#{slug}"

    def upload(self) -> None:
        if not self._models:
            return
        local_root = _local_path(self.artifact_uri)
        if local_root is not None:
            # A local artifact store needs no MLflow round trip (nor MLflow imported on the
            # worker): the shard is written in place, whole or not at all.
            _write_atomically(os.path.join(local_root, SHARDS_DIR, self.file_name), self._models)
            return
        from manymodels.tracking import upload_dir

        with tempfile.TemporaryDirectory(prefix="manymodels-") as staging:
            _write_atomically(os.path.join(staging, self.file_name), self._models)
            upload_dir(self.artifact_uri, staging, SHARDS_DIR, self.tracking_uri)

    def close(self) -> None:
        self._models.clear()


def open_sink(
    registration: str, artifact_uri: str, artifact_dir: str, files: ModelFiles,
    batch_key: str, tracking_uri: str | None = None,
) -> EntityFolders | Shard:  # fmt: skip
    """The model sink of one task for the configured registration mode.

    ``batch_key`` identifies the task's partitions, so a repeated task writes the same shard
    file again rather than a second one.
    """
    if registration == "per_job":
        session = artifact_dir.rsplit("/", 1)[-1]
        digest = hashlib.sha256(batch_key.encode("utf-8")).hexdigest()[:16]
        return Shard(artifact_uri, f"{session}-{digest}.pkl", tracking_uri)
    return EntityFolders(artifact_uri, artifact_dir, files, tracking_uri)


class ModelLoader:
    """Loads models by location, reading each shard or remote folder once per task."""

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self._shards: dict[str, Mapping[str, EntityModel]] = {}

    def load(self, location: str) -> EntityModel:
        """The :class:`EntityModel` at a location (folder URI, or ``shard-uri#member``)."""
        uri, _, member = location.partition("#")
        if member:
            if uri not in self._shards:
                with open(_local_file(uri, self.tracking_uri), "rb") as handle:
                    self._shards[uri] = cloudpickle.load(handle)
            return self._shards[uri][member]
        from manymodels.flavor import load_entity_model

        return load_entity_model(_local_file(uri, self.tracking_uri))


def _local_file(uri: str, tracking_uri: str | None = None) -> str:
    """A local path for an artifact URI, downloading it first when it is remote."""
    local = _local_path(uri)
    if local is not None:
        return local
    if Path(uri).exists():
        return uri
    import mlflow

    return mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri)


def _local_path(uri: str) -> str | None:
    """The local path of a ``file:`` URI or an absolute path; None for anything remote."""
    if uri.startswith("file://"):
        return unquote(urlparse(uri).path)
    return uri if os.path.isabs(uri) else None


def _write_atomically(path: str, models: Mapping[str, EntityModel]) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    # A unique name opened with open() (not mkstemp) keeps the umask's permissions, so a
    # tracking server running as another user can still read the shard.
    partial = os.path.join(folder, f".partial-{uuid.uuid4().hex}")
    try:
        with open(partial, "xb") as stream:
            cloudpickle.dump(dict(models), stream)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def load_members(path: str) -> dict[str, Any]:
    """Unpickle a whole shard file (used by the bundle's pyfunc loader)."""
    with open(path, "rb") as handle:
        return cloudpickle.load(handle)
