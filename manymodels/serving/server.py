"""Starting the forecast server: threads pinned, registry read, models warmed, uvicorn run."""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import suppress

from manymodels.artifacts.loader import ModelLoader
from manymodels.config import Config
from manymodels.entity_model import EntityModel
from manymodels.errors import ManyModelsError, RegistryError
from manymodels.serving.cache import ModelCache
from manymodels.serving.catalog import Catalog, Reader, ServedModel
from manymodels.serving.forecaster import Forecaster

__all__ = ["make_forecaster", "serve"]

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")  # fmt: skip


def serve(config: Config) -> None:
    """Serve forecasts of every entity's model under ``forecast.alias`` over HTTP until
    interrupted, at ``serve.host``:``serve.port`` (see :mod:`manymodels.serving.app`).

    Raises:
        ManyModelsError: the tracking store cannot be opened.
    """
    import uvicorn

    from manymodels.serving.app import make_app

    pin_threads()
    forecaster = make_forecaster(config)
    settings = config.serve
    print(f"manymodels: serving {len(forecaster.catalog)} entities under the alias "
          f"'{config.forecast.alias}' at http://{settings.host}:{settings.port} "
          "(POST /forecast, GET /health, GET /entities)", file=sys.stderr, flush=True)  # fmt: skip
    try:
        uvicorn.run(make_app(forecaster), host=settings.host, port=settings.port,
                    log_level="warning", access_log=False)  # fmt: skip
    finally:
        forecaster.catalog.stop()


def make_forecaster(config: Config) -> Forecaster:
    """The catalog (read once and refreshing), an empty cache, and one model warmed."""
    tracking_uri, reader = _registry_reader(config)
    catalog = Catalog(reader, config.serve.refresh_seconds)
    catalog.start()
    cache = ModelCache(lambda location: _load(location, tracking_uri), config.serve.cache_size)
    forecaster = Forecaster(config, catalog, cache)
    _warm_up(config, forecaster)
    return forecaster


def pin_threads() -> None:
    """One thread per native pool (BLAS, OpenMP): requests are small fits and predictions,
    for which more threads only compete for the cores."""
    for variable in _THREAD_VARIABLES:
        os.environ[variable] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _registry_reader(config: Config) -> tuple[str | None, Reader]:
    from manymodels.jobs.modes import mode_of
    from manymodels.tracking.store import open_tracking

    session = open_tracking(config)
    find = mode_of(config).entity_models
    cols = config.data.entity_cols

    def read() -> dict[tuple[str, ...], ServedModel]:
        try:
            models = find(session.registry, config, config.forecast.alias, None)
        except RegistryError:
            return {}  # nothing has the alias yet: every entity is unknown until a refresh
        return {
            tuple(keys[col] for col in cols): ServedModel(name, version, location, keys)
            for (keys, (name, version, location)) in models.values()
        }

    return session.target.tracking_uri, read


def _load(location: str, tracking_uri: str | None) -> EntityModel:
    # A loader per model: a loader keeps every bundle shard it read, which a long-running
    # server must not.
    return ModelLoader(tracking_uri).load(location)


def _warm_up(config: Config, forecaster: Forecaster) -> None:
    """Import the templates' libraries and forecast with one model, left out of the cache,
    so that the first request pays for neither imports nor compilation."""
    from manymodels.candidates import plan_models

    with suppress(ManyModelsError):
        for module in plan_models(config.model).builtin_modules:
            with suppress(ImportError):
                importlib.import_module(module)
    models = forecaster.catalog.models()
    if models:
        with suppress(Exception):  # a broken model fails its own requests, not the start
            forecaster.cache.load(models[0].location).forecast()
