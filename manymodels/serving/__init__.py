"""``manymodels serve``: one HTTP server that forecasts any entity with its model under an alias.

* :mod:`~manymodels.serving.requests`: what a client may send, checked before any model is
  touched;
* :mod:`~manymodels.serving.catalog`: which model version serves each entity, read from the
  registry in bulk and again every ``serve.refresh_seconds``, so promotions need no restart;
* :mod:`~manymodels.serving.cache`: the models loaded so far, least recently used first out;
* :mod:`~manymodels.serving.forecaster`: one request's forecast, from catalog, cache and model;
* :mod:`~manymodels.serving.app`: the HTTP routes (Starlette) and their error answers;
* :mod:`~manymodels.serving.server`: starts it all under uvicorn.
"""

from manymodels.serving.server import serve

__all__ = ["serve"]
