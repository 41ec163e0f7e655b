"""Where a task puts the models it trains: one layout per ``tracking.registration`` mode.

* ``per_entity``: each entity's model is its own MLflow model folder,
  ``<artifact_dir>/<entity slug>/`` in the job run's artifacts;
* ``per_job``: a task pickles all its entities' models into one shard of the job bundle
  (see :mod:`manymodels.artifacts.bundle`).

Into a local artifact store a task writes in place, each folder or shard appearing whole (by a
rename); into a remote one it writes locally and uploads once, one artifact call per batch.
Only the upload needs MLflow on the worker.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from typing import TYPE_CHECKING

from manymodels.artifacts.bundle import SHARDS_DIR, copy_shard, split_location, write_shard
from manymodels.artifacts.locations import local_file, local_path, upload_dir
from manymodels.entity_model import EntityModel

if TYPE_CHECKING:
    from manymodels.artifacts.model_files import ModelFiles

__all__ = ["EntityFolders", "Shard", "open_sink"]


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
        from manymodels.artifacts.entity_folder import ModelWriter

        self.artifact_uri, self.artifact_dir = artifact_uri, artifact_dir
        self.tracking_uri = tracking_uri
        local_root = local_path(artifact_uri)
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
    """Collects a batch's models into one pickled shard of the job bundle, or copies shards of
    an earlier bundle whole (see :meth:`copy`)."""

    carries_champions = True

    def __init__(self, artifact_uri: str, file_name: str, tracking_uri: str | None = None) -> None:
        self.artifact_uri, self.file_name = artifact_uri, file_name
        self.tracking_uri = tracking_uri
        self._models: dict[str, EntityModel] = {}
        self.copies: dict[str, str] = {}  # an earlier bundle's shard URI: its copy's file name

    def add(self, slug: str, model: EntityModel) -> str:
        """Add one model; returns its location relative to the run's artifact root."""
        if self.copies:
            raise ValueError("a task that copies shards of an earlier bundle writes no other")
        self._models[slug] = model
        return f"{SHARDS_DIR}/{self.file_name}#{slug}"

    def copy(self, shard_uri: str) -> None:
        """Copy a shard of an earlier bundle byte for byte, for a batch whose entities all keep
        the champions that the shard holds: nothing is unpickled or pickled again. Members of
        it that the new manifest does not name are never read."""
        stem = self.file_name.removesuffix(".pkl")
        digest = hashlib.sha256(shard_uri.encode("utf-8")).hexdigest()[:12]
        self.copies[shard_uri] = f"{stem}-{digest}.pkl"

    def copied(self, location: str) -> str | None:
        """Where the model at an earlier bundle's ``location`` is in this task's copies,
        relative to the run's artifact root; None when its shard is not copied."""
        shard_uri, member = split_location(location)
        name = self.copies.get(shard_uri)
        return None if name is None else f"{SHARDS_DIR}/{name}#{member}"

    def upload(self) -> None:
        if not self._models and not self.copies:
            return
        local_root = local_path(self.artifact_uri)
        if local_root is not None:
            # A local artifact store needs no MLflow round trip (nor MLflow imported on the
            # worker): each shard is written in place, whole or not at all.
            self._write(os.path.join(local_root, SHARDS_DIR))
            return
        with tempfile.TemporaryDirectory(prefix="manymodels-") as staging:
            self._write(staging)
            upload_dir(self.artifact_uri, staging, SHARDS_DIR, self.tracking_uri)

    def _write(self, folder: str) -> None:
        if self._models:
            write_shard(os.path.join(folder, self.file_name), self._models)
        for shard_uri, name in self.copies.items():
            copy_shard(local_file(shard_uri, self.tracking_uri), os.path.join(folder, name))

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
