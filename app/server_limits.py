"""Connection limits that the HTTP server enforces before the app sees a request.

uvicorn has none of them (no header size limit with httptools, no header or body read
timeout, and ``limit_concurrency`` refuses probes along with everything else), so the
gateway serves HTTP/1.1 through this subclass of uvicorn's httptools protocol (by way of
``app/uvicorn_hooks.UpgradeIgnoringProtocol``, which it extends):

- **Header size**: more than ``max_header_bytes`` before the headers end is 431.
- **Header read timeout**: a request's headers must arrive within ``header_timeout_s`` of
  the connection (or of the previous answer), as a whole, not per byte (slowloris): 408.
- **Body read timeout**: the body must arrive within ``body_timeout_s`` of the headers
  (one byte every few seconds, or a ``Content-Length`` larger than what is sent): 408;
  the app sees a disconnect and records it.
- **Connection cap**, below the file-descriptor limit: at the cap the oldest connection
  that is only waiting for headers is closed to make room, so a new one (a probe) is
  always served; when every connection is busy with a request, a few more are let in and
  answer only ``/healthz``, ``/readyz`` and ``/metrics`` (503 otherwise); past those, a new
  connection is closed at once.
- **Probe port** (optional): ``/healthz``, ``/readyz`` and ``/metrics`` on a listener of
  their own, outside the cap. A flood fills the main port's accept queue whatever the
  server does, and a probe's SYN dropped there waits 1 s for its retransmission.
- **Drain**: on SIGTERM, connections waiting for headers are closed and a body still
  arriving gets ``drain_body_timeout_s`` at most, so a slow uploader cannot hold the drain.
- Every refusal the server can still answer is ``application/problem+json``, including
  requests the HTTP parser rejects (a CR/LF in a header value).

uvicorn's protocol internals are used here and nowhere else (pinned uvicorn version in
the lock file; ``tests/test_server_limits.py`` exercises each hook against the real server).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httptools
import uvicorn

from app.errors import GatewayError, InvalidRequest, ProviderUnavailable
from app.middleware import problem_response_parts
from app.record import record_of
from app.uvicorn_hooks import UpgradeIgnoringProtocol

log = logging.getLogger("image_gateway")

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
#: File descriptors kept free of client connections (listener, vendor pools, logs, files).
FD_RESERVE = 256
#: Connections let in beyond the cap while every connection is busy, for the probes.
PROBE_LANE = 32


class RequestHeaderFieldsTooLarge(GatewayError):
    status, code, title = 431, "headers_too_large", "Request header fields too large"


class RequestTimeout(GatewayError):
    status, code, title = 408, "request_timeout", "Request timeout"


@dataclass(frozen=True)
class ServerLimits:
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 4096
    drain_body_timeout_s: float = 5.0
    probe_port: int | None = None

    def connection_cap(self) -> int:
        """``max_connections``, lowered to stay below this process's descriptor limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - FD_RESERVE - PROBE_LANE))


class LimitedConfig(uvicorn.Config):
    """uvicorn's config with the limits, serving through ``LimitedProtocol``."""

    def __init__(self, app: Any, *, limits: ServerLimits, **kwargs: Any) -> None:
        self.limits = limits
        self.connection_cap = limits.connection_cap()
        #: Connections waiting for request headers, oldest first. An OrderedDict: a plain
        #: dict's first key gets slower to reach with each deletion at its front.
        self.idle: OrderedDict[LimitedProtocol, None] = OrderedDict()
        super().__init__(app, http=LimitedProtocol, **kwargs)


class LimitedProtocol(UpgradeIgnoringProtocol):
    """uvicorn's httptools protocol with the limits (and unknown upgrades served as plain
    HTTP/1.1, ``app/uvicorn_hooks.py``)."""

    def __init__(self, config: LimitedConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits = config.limits
        self.idle = config.idle
        self.cap = config.connection_cap
        self.header_bytes = 0
        self.probes_only = False
        self.refused = False
        self.timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self._on_probe_port(transport):
            self.probes_only = True  # its own listener and backlog: outside the cap
        elif len(self.connections) >= self.cap and not self._evict_idle():
            if len(self.connections) >= self.cap + PROBE_LANE:
                transport.abort()
                return
            self.probes_only = True
        super().connection_made(transport)
        self._await_headers()

    def _on_probe_port(self, transport: asyncio.Transport) -> bool:
        if self.limits.probe_port is None:
            return False
        local = transport.get_extra_info("sockname")
        return isinstance(local, tuple) and local[1] == self.limits.probe_port

    def _evict_idle(self) -> bool:
        if not self.idle:
            return False
        oldest, _ = self.idle.popitem(last=False)
        oldest.transport.abort()
        self.connections.discard(oldest)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.idle.pop(self, None)
        self._stop_timer()
        if self.transport is not None:
            super().connection_lost(exc)

    # ------------------------------------------------------------------ headers

    def _await_headers(self) -> None:
        self.header_bytes = 0
        self.idle[self] = None
        self._start_timer(self.limits.header_timeout_s, self._headers_too_slow)

    def data_received(self, data: bytes) -> None:
        """Headers still incomplete past the limit are refused as they stream in, before
        the parser buffers more of them."""
        if self.refused:
            return
        if self in self.idle:
            self.header_bytes += len(data)
        super().data_received(data)
        if self in self.idle and self.header_bytes > self.limits.max_header_bytes:
            self._refuse(self._too_large())

    def _too_large(self) -> GatewayError:
        limit = self.limits.max_header_bytes
        return RequestHeaderFieldsTooLarge(f"the request line and headers are over {limit} bytes")

    def on_headers_complete(self) -> None:
        self.idle.pop(self, None)
        self._stop_timer()
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_header_bytes:  # headers that arrived in one read
            self._refuse(self._too_large())
            return
        if self.probes_only and httptools.parse_url(self.url).path.decode() not in PROBES:
            self._refuse(
                ProviderUnavailable("the gateway is at its connection limit", retry_after=1)
            )
            return
        super().on_headers_complete()
        if self._expects_body():
            self._start_timer(self.limits.body_timeout_s, self._body_too_slow)

    def _expects_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"0", b"")
            if name == b"transfer-encoding":
                return True
        return False

    def on_body(self, body: bytes) -> None:
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._stop_timer()
        if not self.refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_headers()

    def send_400_response(self, msg: str) -> None:
        """The parser refused the request (bad framing, a CR/LF inside a header value):
        problem+json instead of uvicorn's plain text."""
        self._refuse(InvalidRequest(f"the HTTP request is malformed ({msg.rstrip('.')})"))

    # ------------------------------------------------------------------ timers

    def _start_timer(self, seconds: float, callback: Any) -> None:
        self._stop_timer()
        self.timer = self.loop.call_later(seconds, callback)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _headers_too_slow(self) -> None:
        self.timer = None
        if self.transport.is_closing():
            return
        if self.header_bytes == 0:
            self.transport.close()  # an idle connection: nothing to answer
            return
        self._refuse(RequestTimeout("the request headers did not arrive in time"))

    def _body_too_slow(self) -> None:
        self.timer = None
        cycle = self.cycle
        if cycle is None or cycle.response_complete or self.transport.is_closing():
            return
        record_of(self.scope).server_answer = (408, RequestTimeout.code)  # type: ignore[arg-type]
        started = cycle.response_started
        cycle.disconnected = True  # the app's next receive() is a disconnect
        cycle.message_event.set()
        if started:
            self.transport.close()
        else:
            self._refuse(RequestTimeout("the request body did not arrive in time"))

    def drain(self, body_timeout_s: float) -> None:
        """SIGTERM: stop waiting for requests that have not started; shorten body waits."""
        if self in self.idle:
            self.idle.pop(self, None)
            self._stop_timer()
            self.transport.close()
        elif self.timer is not None and self.cycle is not None and self.cycle.more_body:
            remaining = max(self.timer.when() - self.loop.time(), 0.0)
            self._start_timer(min(remaining, body_timeout_s), self._body_too_slow)

    # ------------------------------------------------------------------ answers

    def _refuse(self, error: GatewayError) -> None:
        if self.refused:
            return
        self.refused = True
        self.idle.pop(self, None)
        self._stop_timer()
        status, headers, body = problem_response_parts(error, uuid.uuid4().hex)
        head = [f"HTTP/1.1 {status} {error.title}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self.transport.close()
        log.info("server refused a request: %d %s", status, error.code)


def probe_socket(host: str, port: int) -> socket.socket:
    """The probe listener: its own accept queue, so a flood of connections on the main
    port (which can fill that queue faster than any process accepts) never delays a probe."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)  # worker processes serve it too
    return sock


def drain_connections(connections: set[Any], body_timeout_s: float) -> None:
    for connection in list(connections):
        if isinstance(connection, LimitedProtocol):
            connection.drain(body_timeout_s)
