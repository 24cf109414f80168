"""GET /v1/providers, /healthz, /readyz and /metrics."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from app import metrics
from app.api.contract import (
    COMMON_HEADERS,
    OPERATION_ERRORS,
    UNAUTHORIZED_METRICS,
    problem_response,
)
from app.providers.base import ProviderCatalog

router = APIRouter()


class Health(BaseModel):
    """The liveness answer."""

    status: Literal["ok"] = Field(description="Always ok while the process answers.")


class Readiness(BaseModel):
    """The readiness answer (200 ready, 503 otherwise)."""

    status: Literal["ready", "draining", "no provider enabled"] = Field(
        description="ready, or why not."
    )
    providers: list[str] = Field(description="The enabled providers.")


def _ok(description: str, **content: Any) -> dict[int | str, dict[str, Any]]:
    ok: dict[str, Any] = {"description": description, "headers": COMMON_HEADERS}
    if content:
        ok["content"] = content
    return {200: ok, 500: problem_response(500, *OPERATION_ERRORS[500])}


_DRAINING = problem_response(
    503, "provider_unavailable", "The gateway is shutting down; retry on another instance"
)


@router.get(
    "/v1/providers",
    operation_id="listProviders",
    summary="List the enabled providers",
    tags=["providers"],
    response_model=list[ProviderCatalog],
    responses={**_ok("The enabled providers"), 503: _DRAINING},
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


@router.get(
    "/healthz",
    operation_id="healthz",
    summary="Liveness probe",
    tags=["operations"],
    response_model=Health,
    responses=_ok("Alive"),
)
async def healthz() -> dict[str, str]:
    """Liveness: the process is up and its event loop answers."""
    return {"status": "ok"}


_READINESS = {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="Readiness probe",
    tags=["operations"],
    response_model=Readiness,
    responses={
        **_ok("Ready"),
        503: {
            "description": "Draining or no provider enabled",
            "headers": COMMON_HEADERS,
            "content": _READINESS,
        },
    },
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
    summary="Prometheus metrics",
    tags=["operations"],
    response_class=Response,
    responses={
        **_ok(
            "Prometheus text exposition format", **{"text/plain": {"schema": {"type": "string"}}}
        ),
        401: UNAUTHORIZED_METRICS,
    },
    openapi_extra={"security": [{"MetricsToken": []}, {}]},
)
async def prometheus_metrics(request: Request) -> Response:
    callers = request.app.state.callers
    callers.check_metrics(request.headers)
    await callers.refresh_gauges()
    # An open circuit turns half-open by time alone; read each state so the gauge is current
    # at scrape time even when no request has touched that provider since.
    for circuit in request.app.state.service.router.circuits.values():
        circuit.refresh()
    payload, content_type = metrics.render()
    return Response(content=payload, media_type=content_type)
