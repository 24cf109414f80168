"""The OpenAPI pieces of caller keys, limits, cost and dry run, for the operation routes."""

from __future__ import annotations

from typing import Any

_PROBLEM = {
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
}

COST_HEADER_DOC = {
    "description": "What the call cost in USD (on a dry run: the estimate), from the price table",
    "schema": {"type": "string", "example": "0.040000"},
}
RATELIMIT_HEADERS = {
    "RateLimit-Policy": {
        "description": "The key's rate limit (draft-ietf-httpapi-ratelimit-headers), "
        'e.g. "key";q=60;w=60',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'What is left of it in this window, e.g. "key";r=59;t=42',
        "schema": {"type": "string"},
    },
}

RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "No key, or an unknown or revoked key (WWW-Authenticate set)",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        **_PROBLEM,
    },
    402: {
        "description": "budget_exceeded: the estimate would take the key over a budget; "
        "the problem's `budget` member says which, how much is left and when it resets",
        **_PROBLEM,
    },
    403: {"description": "The key may not run this operation or use this provider", **_PROBLEM},
}

DRY_RUN_PARAMETER: dict[str, Any] = {
    "name": "dry_run",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "Validate, route and price the request without calling a vendor: the "
    "answer is a DryRunResponse, or the same 4xx the real call would get.",
}


def success_headers() -> dict[str, Any]:
    return {"X-Image-Gateway-Cost-USD": COST_HEADER_DOC, **RATELIMIT_HEADERS}


SCHEMES: dict[str, Any] = {
    "MetricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "IMAGE_GATEWAY_CALLERS__METRICS_TOKEN, when set, for GET /metrics",
    }
}
