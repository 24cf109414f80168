"""GET /v1/providers, /healthz, /readyz and /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from app import metrics
from app.providers.base import ProviderCatalog

router = APIRouter()


@router.get(
    "/v1/providers",
    operation_id="listProviders",
    tags=["providers"],
    response_model=list[ProviderCatalog],
)
async def providers(request: Request) -> list[ProviderCatalog]:
    """Enabled providers with their operations, models and limits: the same tables that
    validation reads, plus each provider's circuit state."""
    routing = request.app.state.service.router
    out = []
    for pid, provider in routing.providers.items():
        entry = provider.catalog()
        entry.circuit = routing.circuits[pid].state
        out.append(entry)
    return out


@router.get("/healthz", operation_id="healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    """Liveness: the process is up and its event loop answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="readyz",
    tags=["operations"],
    responses={503: {"description": "Draining or no provider enabled"}},
)
async def readyz(request: Request) -> Response:
    """Readiness: 503 while draining (after SIGTERM) or when no provider is enabled."""
    lifecycle = request.app.state.lifecycle
    enabled = list(request.app.state.service.router.providers)
    body: dict[str, Any] = {"status": "ready", "providers": enabled}
    if lifecycle.draining or not enabled:
        body["status"] = "draining" if lifecycle.draining else "no provider enabled"
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)


@router.get(
    "/metrics",
    operation_id="metrics",
    tags=["operations"],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}},
        401: {"description": "IMAGE_GATEWAY_CALLERS__METRICS_TOKEN is set and not given"},
    },
    openapi_extra={"security": [{"MetricsToken": []}, {}]},
)
async def prometheus_metrics(request: Request) -> Response:
    request.app.state.callers.check_metrics(request.headers)
    # An open circuit turns half-open by time alone; read each state so the gauge is current
    # at scrape time even when no request has touched that provider since.
    for circuit in request.app.state.service.router.circuits.values():
        circuit.refresh()
    payload, content_type = metrics.render()
    return Response(content=payload, media_type=content_type)
