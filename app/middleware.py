"""One pure-ASGI middleware for what every request needs: a request id, the body-size
limit (before the body is read whole), drain refusal, ``Server-Timing``, the request
metrics and the one-line JSON access log.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``: it adds no task, no copy of the
body and no second response object on the hot path.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.api.openai_errors import is_openai_path, openai_error, should_retry
from app.disconnect import cancel_on_disconnect
from app.errors import (
    FieldError,
    GatewayError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ProviderUnavailable,
    problem_body,
)
from app.fast_lane import Endpoint, FastLane
from app.lifecycle import Lifecycle
from app.record import RequestRecord, record_of

log = logging.getLogger("image_gateway.access")

OPERATIONS = {
    "/v1/upscale": "upscale",
    "/v1/upscale/multipart": "upscale",
    "/v1/upscale/bytes": "upscale",
    "/v1/upscale/multipart/bytes": "upscale",
    "/v1/generate": "generate",
    "/v1/generate/bytes": "generate",
    "/v1/images/upscale": "upscale",
    "/v1/images/generations": "generate",
}
#: Paths that keep answering while the process drains (probes and scrapes).
_ALWAYS_SERVED = frozenset({"/healthz", "/readyz", "/metrics"})
#: Retry-After for a 429/503 whose cause named no time of its own.
DEFAULT_RETRY_AFTER_S = 1
#: No answer tells a caller to wait longer than this (a vendor may say ``inf``).
MAX_RETRY_AFTER_S = 3600
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
#: nginx's status for "the client closed the connection before the answer": recorded in
#: logs and metrics, never sent (nobody is left to read it), and not a server error.
CLIENT_CLOSED = 499


def to_gateway_error(exc: Exception) -> GatewayError:
    """The one translation of anything raised while serving into a ``GatewayError``."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, RequestValidationError):
        errors = [FieldError(tuple(e["loc"]), e["msg"]) for e in exc.errors()]
        return InvalidRequest("the request does not match the schema", errors=errors)
    if isinstance(exc, StarletteHTTPException):
        if exc.status_code == 404:
            return NotFound("no such endpoint; see /docs or openapi/openapi.json")
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            return MethodNotAllowed(f"this endpoint accepts only {allow}", allow=allow)
        return InvalidRequest(str(exc.detail))
    logging.getLogger("image_gateway").error(
        "unexpected error while serving a request", exc_info=(type(exc), exc, None)
    )
    return InternalError("an unexpected error occurred; it has been logged")


def problem_response_parts(
    error: GatewayError, request_id: str, path: str = ""
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of the error answer for ``error``: problem+json, or on the
    OpenAI-compatible routes OpenAI's error shape. The app's one exception handler and this
    middleware's early refusals both use it."""
    if is_openai_path(path):
        status, document = openai_error(error)
        body = json.dumps(document).encode()
        headers = [(b"content-type", b"application/json")]
        retry = should_retry(error, status)
        if retry is not None:
            headers.append((b"x-should-retry", retry))
    else:
        status, body = error.status, json.dumps(problem_body(error, request_id)).encode()
        headers = [(b"content-type", b"application/problem+json")]
    headers.append((b"content-length", str(len(body)).encode()))
    retry_after = error.retry_after
    if retry_after is None and error.status in (429, 503):
        retry_after = DEFAULT_RETRY_AFTER_S  # DESIGN §1: 429 and 503 always say when to retry
    if retry_after is not None:
        seconds = max(1, math.ceil(min(retry_after, MAX_RETRY_AFTER_S)))
        headers.append((b"retry-after", str(seconds).encode()))
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items())
    return status, headers, body


ErrorRenderer = Callable[[Request, GatewayError], Response]


class GatewayMiddleware:
    """Every request: id, body limit, drain refusal, metrics, access log. POSTs to the
    fast lane's paths (``app.fast_lane``) go straight to their handlers; everything else
    goes to FastAPI."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        lifecycle: Lifecycle,
        access_log: bool,
        fast_lane: FastLane,
        render_error: ErrorRenderer,
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.lifecycle = lifecycle
        self.access_log = access_log
        self.fast_lane = fast_lane
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = record_of(scope)
        request_id = state.request_id = _request_id(scope)
        path = scope["path"]
        operation = OPERATIONS.get(path)
        early = self._refuse_early(scope, path)
        response: dict[str, Any] = {}
        send_wrapper = self._send_wrapper(send, state, request_id, started, response)
        if early is not None:
            state.code = early.code
            await _send_problem(send_wrapper, early, request_id, path)
        else:
            await self._serve_guarded(scope, receive, send_wrapper, operation, state, response)
        self._observe(operation, state, response.get("status", 500), started, path)

    async def _serve_guarded(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        operation: str | None,
        state: RequestRecord,
        response: dict[str, Any],
    ) -> None:
        """Serve; an exception nothing else handled still leaves as problem+json (500)."""
        try:
            if operation is None:
                await self.app(scope, receive, send)
            else:
                await self._serve_operation(scope, receive, send, operation, state)
        except ClientDisconnect:
            # The server may have cut the body itself (app.server_limits: too slow) and
            # answered for it; otherwise the client left.
            status, code = state.server_answer or (CLIENT_CLOSED, "client_closed_request")
            response.setdefault("status", status)
            state.code = code
        except Exception as exc:
            if "status" in response:
                raise  # the response has started; all we can do is drop the connection
            error = to_gateway_error(exc)
            state.code = error.code
            await _send_problem(send, error, state.request_id, scope["path"])

    async def _serve_operation(
        self, scope: Scope, receive: Receive, send: Send, operation: str, state: RequestRecord
    ) -> None:
        gauge = metrics.INFLIGHT.labels(operation=operation)
        gauge.inc()
        self.lifecycle.enter()
        try:
            endpoint = self.fast_lane.endpoint_for(scope)
            if endpoint is None:
                await self.app(scope, self._limited(receive), send)
            else:
                await self._dispatch(endpoint, scope, self._limited(receive), send)
        finally:
            self.lifecycle.leave()
            gauge.dec()

    async def _dispatch(
        self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
    ) -> None:
        request = Request(scope, receive)  # the state lives in the scope: shared by both
        try:
            response = await cancel_on_disconnect(
                receive, lambda watched: endpoint(Request(scope, watched))
            )
        except GatewayError as exc:
            response = self.render_error(request, exc)
        await response(scope, receive, send)

    def _refuse_early(self, scope: Scope, path: str) -> GatewayError | None:
        if self.lifecycle.draining and path not in _ALWAYS_SERVED:
            return ProviderUnavailable(
                "the gateway is shutting down; retry on another instance", retry_after=1
            )
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return PayloadTooLarge(f"the body is {int(length)} bytes; the limit is {self.max_body}")
        return None

    def _limited(self, receive: Receive) -> Receive:
        """Count body bytes as they stream in; stop at the limit without reading the rest."""
        seen = 0
        limit = self.max_body

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
            return message

        return limited_receive

    def _send_wrapper(
        self,
        send: Send,
        state: RequestRecord,
        request_id: str,
        started: float,
        response: dict[str, Any],
    ) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"server-timing", _server_timing(state, started)))
                for name, value in state.response_headers:  # e.g. the caller's RateLimit
                    headers.append((name.encode("latin-1"), value.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        return wrapped

    def _observe(
        self, operation: str | None, state: RequestRecord, status: int, started: float, path: str
    ) -> None:
        if operation is None:
            return
        total = time.perf_counter() - started
        provider = state.provider or "none"
        code = state.code or ("ok" if status < 400 else "error")
        metrics.REQUESTS.labels(
            operation=operation, provider=provider, status_code=str(status), code=code
        ).inc()
        metrics.REQUEST_DURATION.labels(operation=operation, provider=provider).observe(total)
        metrics.CALLER_REQUESTS.labels(
            caller=state.caller or "none", operation=operation, status_code=str(status)
        ).inc()
        upstream = state.upstream_s or 0.0
        metrics.OVERHEAD.labels(operation=operation).observe(max(total - upstream, 0.0))
        if self.access_log:
            _log_access(state, operation, provider, status, code, total, upstream)


def _log_access(
    state: RequestRecord,
    operation: str,
    provider: str,
    status: int,
    code: str,
    total: float,
    upstream: float,
) -> None:
    """One JSON line per request. Only bounded, non-secret facts: never bodies or keys."""
    record = {
        "request_id": state.request_id,
        "operation": operation,
        "provider": provider,
        "model": state.model,
        "status": status,
        "code": code,
        # float(): an empty attempt list sums to the int 0; keep the field's type stable.
        "total_ms": round(float(total) * 1000, 2),
        "upstream_ms": round(float(upstream) * 1000, 2),
        "attempts": state.attempts,
        "caller": state.caller,
        "cost_usd": state.cost.usd if state.cost is not None else None,
    }
    if state.user:  # the OpenAI routes' end-user id, for abuse tracing
        record["user"] = state.user
    log.info(json.dumps(record))


def _request_id(scope: Scope) -> str:
    given = _header(scope, b"x-request-id")
    if given and _REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _server_timing(state: RequestRecord, started: float) -> bytes:
    total_ms = (time.perf_counter() - started) * 1000
    parts = [f"total;dur={total_ms:.1f}"]
    if state.upstream_s is not None:
        parts.append(f"upstream;dur={state.upstream_s * 1000:.1f}")
    return ", ".join(parts).encode()


async def _send_problem(send: Send, error: GatewayError, request_id: str, path: str) -> None:
    status, headers, body = problem_response_parts(error, request_id, path)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
