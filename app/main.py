"""The application: ``create_app(settings, lifecycle)``.

The lifespan owns the provider clients (each on its ``app.transport.Transport``); the
routers are thin; the fast lane (``app.fast_lane``) is built here, in the open; and every
error, whether the gateway's own, FastAPI's validation, an unknown route or an unexpected
exception, leaves through the one problem+json renderer below. The server passes in the
``Lifecycle`` it drains (``app.server.AppFactory``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app import __version__, lifecycle, metrics
from app.api import contract, openai, operational, operations
from app.api import jobs as jobs_api
from app.callers import openapi as callers_openapi
from app.callers import usage
from app.callers.auth import Callers, warn_if_open
from app.callers.spend import Spending
from app.errors import GatewayError
from app.fast_lane import FastLane, flat_routes
from app.jobs.service import JobService
from app.middleware import GatewayMiddleware, problem_response_parts, to_gateway_error
from app.providers.registry import build_providers, price_table
from app.record import record_of
from app.routing import Router
from app.schemas import DryRunResponse, JobResource
from app.service import GatewayService
from app.settings import Settings

log = logging.getLogger("image_gateway")

_DESCRIPTION = (
    "One normalized API for image AI: upscale and generate through Vertex AI Imagen, "
    "Venice.ai, Deep-Image.ai or the built-in local upscaler. Every error is "
    "application/problem+json (RFC 9457)."
)


def create_app(
    settings: Settings | None = None, life: lifecycle.Lifecycle | None = None
) -> FastAPI:
    settings = settings or Settings()
    providers = build_providers(settings)
    life = life or lifecycle.Lifecycle()  # the server passes the one it drains

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for provider in providers.values():
            await provider.start()
        metrics.init(list(providers))
        await callers.start(settings.state)
        await app.state.jobs.start_if_used()
        try:
            yield
        finally:
            await app.state.jobs.aclose()
            await callers.aclose()
            for provider in providers.values():
                await provider.aclose()

    app = FastAPI(
        title="image-gateway", version=__version__, description=_DESCRIPTION, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.lifecycle = life
    app.state.callers = callers = Callers(settings.callers)
    spending = Spending(price_table(settings), callers)
    app.state.service = GatewayService(settings, Router(settings, providers), spending)
    warn_if_open(settings, callers)
    app.state.jobs = JobService(settings, app.state.service, callers, life)
    app.include_router(operations.router)
    app.include_router(jobs_api.router)
    app.include_router(operational.router)
    app.include_router(openai.router)
    app.include_router(usage.router)
    _install_error_handler(app)
    # The fast lane (app/fast_lane.py): POSTs to these paths skip FastAPI's routing and
    # dependency solving; their handlers check the caller themselves.
    fast_lane = FastLane(
        {
            **{path: entry[0] for path, entry in operations.ENDPOINTS.items()},
            "/v1/images/upscale": openai.upscale_image,
            "/v1/images/generations": openai.create_image,
        }
    )
    app.state.fast_lane = fast_lane
    app.add_middleware(
        GatewayMiddleware,
        max_body_bytes=settings.max_body_bytes,
        lifecycle=life,
        access_log=settings.access_log,
        fast_lane=fast_lane,
        render_error=problem_response,
    )
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _install_error_handler(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        error = to_gateway_error(exc)
        if error.status == 405:  # Starlette names one route's methods; a path may have more
            error.headers["Allow"] = _allowed_methods(request)
        return problem_response(request, error)

    for exc_type in (GatewayError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(exc_type, handle)


def _allowed_methods(request: Request) -> str:
    path = request.scope["path"]
    methods: set[str] = set()
    for route in flat_routes(request.app.routes):
        if route.path_regex.match(path) and route.methods:
            methods |= route.methods
    return ", ".join(sorted(methods))


def problem_response(request: Request, error: GatewayError) -> Response:
    record = record_of(request)
    record.code = error.code
    if error.provider and not record.provider:
        record.provider = error.provider
    status, headers, body = problem_response_parts(error, record.request_id, request.scope["path"])
    response = Response(content=body, status_code=status)
    response.raw_headers = headers
    if record.attempt_labels:
        response.headers["x-image-gateway-attempts"] = record.attempt_labels
    return response


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        models: list[type[BaseModel]] = [DryRunResponse, JobResource, *openai.SCHEMAS]
        spec = contract.build_spec(app, extra_models=models)
        spec["components"].setdefault("securitySchemes", {}).update(callers_openapi.SCHEMES)
        app.openapi_schema = spec
    return app.openapi_schema
