"""The job bundle: one MLflow model holding every entity's model (``registration: per_job``).

For 100,000 entities, one registered model per entity costs more in registry writes than in
training. A bundle is one registered version per job, named ``<prefix>.bundle``: an MLflow
pyfunc model whose data folder holds a manifest (keys, model name, lineage, metrics, shard) and
the shards that tasks wrote, each a pickle of a batch's entity models (or, in a retrain, a copy
of an earlier bundle's shard whose champions it keeps; members it no longer names are left in
it unread). It loads with
``mlflow.pyfunc.load_model`` and forecasts any subset of entities: the input names entities by
their key columns (one row per entity forecasts the next ``horizon`` periods, or rows with the
time column forecast those periods).

Layout, inside the job run's artifacts::

    bundle/                      BUNDLE_DIR: the registered model's folder
      MLmodel, conda.yaml, ...
      data/bundle/               BUNDLE_DATA: what the loader is given
        manifest.parquet, bundle.json
        shards/<name>.pkl        SHARDS_DIR: written by the tasks

A shard member's *location* is ``<shard>#<entity slug>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import cloudpickle
import pandas as pd

from manymodels.artifacts.entity_folder import PyfuncEntityModel
from manymodels.artifacts.locations import local_file, upload_dir
from manymodels.artifacts.model_files import ModelFiles

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

__all__ = [
    "BUNDLE_DATA",
    "BUNDLE_DIR",
    "LOADER_MODULE",
    "MANIFEST",
    "SHARDS_DIR",
    "PyfuncBundle",
    "bundle_name",
    "copy_shard",
    "read_manifest",
    "read_shard",
    "split_location",
    "write_bundle",
    "write_shard",
]

# Named by bundles of earlier releases, and by the loader shipped inside newer ones: it never
# moves (see manymodels.flavor).
LOADER_MODULE = "manymodels.bundle"
BUNDLE_DIR = "bundle"
BUNDLE_DATA = "bundle"
SHARDS_DIR = f"{BUNDLE_DIR}/data/{BUNDLE_DATA}/shards"
MANIFEST = "manifest.parquet"
_SPEC = "bundle.json"
_DATA_PREFIX = f"{BUNDLE_DIR}/data/{BUNDLE_DATA}/"


def bundle_name(prefix: str) -> str:
    """The registered name of a job bundle (never an entity's name: those contain ``=``)."""
    return f"{prefix}.bundle"


def split_location(location: str) -> tuple[str, str]:
    """A model's location split into its shard and its member (``<shard>#<entity slug>``); the
    member is empty for the location of a model folder."""
    shard, _, member = location.partition("#")
    return shard, member


def write_shard(path: str, models: Mapping[str, Any]) -> None:
    """Pickle a batch's models into one shard file, which appears whole or not at all."""
    with _whole_file(path) as stream:
        cloudpickle.dump(dict(models), stream)


def copy_shard(source: str, path: str) -> None:
    """Copy an earlier bundle's shard file, which appears whole or not at all."""
    with _whole_file(path) as stream, open(source, "rb") as original:
        shutil.copyfileobj(original, stream)


@contextlib.contextmanager
def _whole_file(path: str) -> Iterator[BinaryIO]:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    # A unique name opened with open() (not mkstemp) keeps the umask's permissions, so a
    # tracking server running as another user can still read the shard.
    partial = os.path.join(folder, f".partial-{uuid.uuid4().hex}")
    try:
        with open(partial, "xb") as stream:
            yield stream
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def read_shard(path: str) -> dict[str, Any]:
    """Unpickle a whole shard file: ``{entity slug: EntityModel}``."""
    with open(path, "rb") as handle:
        return cloudpickle.load(handle)


def write_bundle(
    artifact_uri: str, manifest: pd.DataFrame, key_cols: list[str], pip_requirements: list[str],
    signature: ModelSignature | None = None,
) -> str:  # fmt: skip
    """Write the bundle's MLmodel and manifest beside the shards the tasks uploaded.

    Args:
        artifact_uri: the job run's artifact root.
        manifest: one row per entity, with ``location`` relative to the run's artifact root.
        key_cols: the entity key columns.
        pip_requirements: the saved model's requirements.
        signature: the bundle's signature (see :mod:`manymodels.artifacts.signature`).

    Returns:
        The bundle's artifact URI, to register as the version's source.
    """
    local = manifest.copy()
    local["location"] = [_relative(location) for location in local["location"]]
    with tempfile.TemporaryDirectory(prefix="manymodels-bundle-") as scratch:
        model_dir = Path(scratch) / "model"
        data = model_dir / "data" / BUNDLE_DATA
        data.mkdir(parents=True)
        local.to_parquet(data / MANIFEST, index=False)
        (data / _SPEC).write_text(json.dumps({"key_cols": key_cols}))
        files = ModelFiles.make(LOADER_MODULE, f"data/{BUNDLE_DATA}", pip_requirements, signature)
        files.write(model_dir)
        upload_dir(artifact_uri, str(model_dir), BUNDLE_DIR)
    return f"{artifact_uri}/{BUNDLE_DIR}"


def read_manifest(source: str) -> pd.DataFrame:
    """A registered bundle's manifest, with each ``location`` made absolute (``uri#member``)."""
    path = local_file(f"{source}/data/{BUNDLE_DATA}/{MANIFEST}")
    manifest = pd.read_parquet(path)
    base = f"{source}/data/{BUNDLE_DATA}/"
    manifest["location"] = [base + location for location in manifest["location"]]
    return manifest


def _relative(location: str) -> str:
    if not location.startswith(_DATA_PREFIX):
        raise ValueError(f"bundle member outside {SHARDS_DIR}: {location}")
    return location[len(_DATA_PREFIX) :]


class PyfuncBundle:
    """What ``mlflow.pyfunc.load_model`` returns for a job bundle."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.manifest = pd.read_parquet(os.path.join(data_dir, MANIFEST))
        spec = json.loads(Path(data_dir, _SPEC).read_text())
        self.key_cols: list[str] = spec["key_cols"]
        self._where = {
            tuple(str(row[col]) for col in self.key_cols): row["location"]
            for _, row in self.manifest.iterrows()
        }
        self._shards: dict[str, dict[str, Any]] = {}

    def entities(self) -> pd.DataFrame:
        """The key values of every entity the bundle holds."""
        return self.manifest[self.key_cols].copy()

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Forecast the entities named by the key columns of ``model_input``.

        Raises:
            KeyError: a key column is missing, or an entity is not in the bundle.
        """
        frame = pd.DataFrame(model_input)
        missing = [col for col in self.key_cols if col not in frame]
        if missing:
            raise KeyError(f"the input needs the key columns {self.key_cols}; missing {missing}")
        outputs = []
        for keys, rows in frame.groupby(self.key_cols, sort=False):
            keys = keys if isinstance(keys, tuple) else (keys,)
            entity = tuple(str(value) for value in keys)
            model = PyfuncEntityModel(self._model(entity))
            rest = rows.drop(columns=self.key_cols)
            # One row with nothing but keys asks for the next periods from the stored history.
            request = pd.DataFrame() if rest.dropna(axis=1, how="all").empty else rest
            predicted = model.predict(request, params)
            for col, value in reversed(list(zip(self.key_cols, entity, strict=True))):
                predicted.insert(0, col, value)
            outputs.append(predicted)
        return pd.concat(outputs, ignore_index=True) if outputs else pd.DataFrame()

    def _model(self, entity: tuple[str, ...]) -> Any:
        location = self._where.get(entity)
        if location is None:
            raise KeyError(
                f"no model for {dict(zip(self.key_cols, entity, strict=True))} in this bundle"
            )
        shard, member = split_location(location)
        if shard not in self._shards:
            self._shards[shard] = read_shard(os.path.join(self.data_dir, shard))
        return self._shards[shard][member]


def _load_pyfunc(data_path: str) -> PyfuncBundle:
    # What MLflow calls, through the bundle's ``loader_module``.
    return PyfuncBundle(data_path)
