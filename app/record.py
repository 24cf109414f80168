"""The typed record of one request, replacing the untyped ``scope["state"]`` dict.

The middleware creates it when a request arrives; the endpoints, the service, the caller
checks and the error renderer fill it in; the middleware reads it for the access log,
the metrics and ``Server-Timing``. It lives on the ASGI scope (so Starlette's
``Request`` objects made from the same scope share it): ``record_of(request or scope)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection
from starlette.types import Scope

if TYPE_CHECKING:
    from app.callers.keys import CallerKey
    from app.providers.pricing import Cost

_KEY = "image_gateway.record"


@dataclass(slots=True)
class RequestRecord:
    request_id: str = ""
    #: The problem ``code`` the request ended with (None while it succeeds).
    code: str | None = None
    provider: str | None = None
    model: str | None = None
    #: Vendor calls made (skipped candidates not counted), their labels for
    #: ``X-Image-Gateway-Attempts``, and their summed time (None: no vendor was involved).
    attempts: int = 0
    attempt_labels: str = ""
    upstream_s: float | None = None
    #: The caller key's id (or ``anonymous``), and the key itself once ``admit`` ran.
    caller: str | None = None
    caller_key: CallerKey | None = None
    admitted: bool = False
    cost: Cost | None = None
    #: Headers every answer to this request carries (the caller key's RateLimit).
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    #: The OpenAI routes' end-user id, for abuse tracing in the access log.
    user: str | None = None
    #: Set by the server when it answered for the request itself (status, code).
    server_answer: tuple[int, str] | None = None


def record_of(source: HTTPConnection | Scope) -> RequestRecord:
    """The request's record, created on first use (e.g. by a test calling an app directly)."""
    scope: Any = source.scope if isinstance(source, HTTPConnection) else source
    state = scope.setdefault("state", {})
    record = state.get(_KEY)
    if record is None:
        record = state[_KEY] = RequestRecord()
    return record  # type: ignore[no-any-return]
