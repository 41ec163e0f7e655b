"""The HTTP routes of ``manymodels serve``, on Starlette.

* ``POST /forecast``: one entity's forecast (request: :mod:`~manymodels.serving.requests`;
  response: :mod:`~manymodels.serving.forecaster`);
* ``GET /health``: ``{"status": "ok", "alias", "entities", "cached_models", "cache_size",
  "cache_hits", "cache_misses", "refreshed_at", "refresh_error"}``;
* ``GET /entities``: every served entity's keys, model name and version.

Every refusal is JSON, ``{"error": "<one sentence>"}``: 400 for a malformed body or a bad
field, 404 for an unknown entity or route, 405 for the wrong method, 422 for inputs the model
cannot forecast; an unexpected failure is a 500 with the error's type and message.

Starlette and uvicorn come with MLflow (its scoring server uses them), so serving adds no
dependency; forecasting runs in Starlette's thread pool, off the event loop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from manymodels.serving.forecaster import Forecaster
from manymodels.serving.requests import BadRequest, parse_forecast_request

__all__ = ["make_app"]

logger = logging.getLogger(__name__)


def make_app(forecaster: Forecaster) -> Starlette:
    """The server's Starlette application around a :class:`Forecaster`."""
    data = forecaster.config.data

    async def forecast(request: Request) -> JSONResponse:
        body = await request.body()

        def answer() -> dict[str, Any]:
            parsed = parse_forecast_request(body, data.entity_cols, data.time_col, data.exog_cols)
            return forecaster.forecast(parsed)

        return JSONResponse(await run_in_threadpool(answer))

    async def health(request: Request) -> JSONResponse:
        catalog, cache = forecaster.catalog, forecaster.cache
        refreshed = catalog.refreshed_at
        return JSONResponse({
            "status": "ok", "alias": forecaster.config.forecast.alias,
            "entities": len(catalog), "cached_models": len(cache), "cache_size": cache.size,
            "cache_hits": cache.hits, "cache_misses": cache.misses,
            "refreshed_at": None if refreshed is None else _iso(refreshed),
            "refresh_error": catalog.last_error,
        })  # fmt: skip

    async def entities(request: Request) -> JSONResponse:
        served = sorted(forecaster.catalog.models(), key=lambda model: model.name)
        return JSONResponse({"alias": forecaster.config.forecast.alias, "entities": [
            {"keys": dict(model.keys), "model": model.name, "version": model.version}
            for model in served
        ]})  # fmt: skip

    routes = [
        Route("/forecast", forecast, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/entities", entities, methods=["GET"]),
    ]
    handlers = {BadRequest: _refused, HTTPException: _http_error, Exception: _unexpected}
    return Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]


async def _refused(request: Request, exc: BadRequest) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("forecast failed", exc_info=exc)
    return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()
