"""What every HTTP vendor shares: one pooled ``httpx.AsyncClient`` per vendor, deadlines
turned into timeouts, and transport failures translated once into gateway errors."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import httpx

from app.errors import GatewayError, ProviderUnavailable, UpstreamError, UpstreamTimeout
from app.providers.base import Deadline
from app.providers.transport import Answer

#: An answer from httpx or from the lean pooled client (``app.providers.transport``).
VendorResponse = httpx.Response | Answer

#: Connections per vendor. Generous, because a vendor call holds a connection for seconds.
POOL_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30)
CONNECT_TIMEOUT_S = 10.0


def make_client(base_url: str, headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """The vendor's client for the app's lifetime. Timeouts are set per call from the
    request's deadline (see ``timeout_for``); this default only guards forgotten ones."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers=dict(headers or {}),
        limits=POOL_LIMITS,
        timeout=httpx.Timeout(120.0, connect=CONNECT_TIMEOUT_S),
        follow_redirects=False,
        trust_env=False,  # never route vendor traffic through a proxy picked up from the env
    )


def timeout_for(deadline: Deadline, provider: str, cap_s: float) -> httpx.Timeout:
    """An httpx timeout that ends no later than the request's deadline."""
    left = min(deadline.check(provider), cap_s)
    return httpx.Timeout(left, connect=min(CONNECT_TIMEOUT_S, left))


def transport_error(exc: httpx.HTTPError, provider: str) -> GatewayError:
    """Translate an httpx transport failure. Only a failure to connect is known to have
    happened before the vendor saw the request, so only that one is safe to retry."""
    if isinstance(exc, httpx.TimeoutException):
        if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
            return UpstreamTimeout(
                f"could not connect to {provider} in time",
                provider=provider,
                reason="connect",
                retryable=True,
            )
        return UpstreamTimeout(
            f"{provider} did not answer within the deadline", provider=provider, reason="timeout"
        )
    if isinstance(exc, httpx.ConnectError):
        return ProviderUnavailable(
            f"could not connect to {provider}", provider=provider, reason="connect", retryable=True
        )
    return UpstreamError(
        f"the connection to {provider} failed mid-response ({type(exc).__name__})",
        provider=provider,
        reason="bad_response",
    )


def json_or_none(response: VendorResponse) -> Any:
    """The body as JSON, or None when it is not JSON (vendor error bodies vary)."""
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def parse_json(response: VendorResponse, provider: str) -> Any:
    """The body as JSON, or a 502 that says the vendor answered nonsense."""
    try:
        return json.loads(response.content)
    except ValueError:
        raise UpstreamError(
            f"{provider} answered HTTP {response.status_code} with a body that is not JSON",
            provider=provider,
            reason="bad_response",
        ) from None


#: The longest wait a vendor's ``Retry-After`` may ask of a caller; beyond it (``inf``,
#: ``1e400``, ``1e12``) the value is clamped, never passed on or overflowed.
MAX_RETRY_AFTER_S = 3600.0


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (delta form; HTTP-date values are ignored), at most
    ``MAX_RETRY_AFTER_S``."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)
