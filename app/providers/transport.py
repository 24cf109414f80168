"""A lean pooled HTTP/1.1 client for a vendor's hot path, on asyncio and httptools' C parser.

Why not httpx here: measured by ``bench/`` on the 2-core machine, httpx (its client layer,
httpcore's pool, anyio) cost ~1.5 ms of CPU per small vendor call, capping the gateway at
~450 req/s through Venice; this client costs ~0.1 ms (docs/performance.md). It does one
``write`` per request (``writelines`` for large bodies given in parts, so they are never
joined), parses answers in C, and keeps idle connections in a LIFO deque: O(1) per request.

It raises httpx's exception classes, so ``app.providers.http.transport_error`` translates
its failures exactly as it does httpx's, and it answers with an object that has the parts
of ``httpx.Response`` the providers read (``status_code``, ``headers``, ``content``).
Scope: requests with a known body length and answers with Content-Length or chunked
bodies; multipart uploads and the like stay on httpx.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Sequence
from typing import cast
from urllib.parse import urlsplit

import httptools
import httpx

#: Requests smaller than this are sent as one joined buffer (one syscall); larger bodies
#: are handed to the transport in parts, which avoids copying them.
_JOIN_BELOW = 64 * 1024


class Answer:
    """The parts of an ``httpx.Response`` that providers use."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: httpx.Headers, content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content


class _Connection(asyncio.Protocol):
    def __init__(self, max_body: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.max_body = max_body
        self.closed = False
        self.answered_bytes = False
        self.idle_since = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(httpx.RemoteProtocolError("the server closed the connection mid-answer"))

    def data_received(self, data: bytes) -> None:
        self.answered_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            self._fail(httpx.RemoteProtocolError(f"answer larger than {self.max_body} bytes"))
            self.close()
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        answer = Answer(self.parser.get_status_code(), httpx.Headers(self.headers), body)
        if not self.parser.should_keep_alive():
            self.close()
        self.headers, self.chunks, self.size = [], [], 0
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def send(self, parts: Sequence[bytes | memoryview]) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self.answered_bytes = False
        self.waiter = asyncio.get_running_loop().create_future()
        if len(parts) == 1:
            self.transport.write(parts[0])
        else:
            self.transport.writelines(parts)
        return self.waiter

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http11Pool:
    """Keep-alive connections to the origin of ``base_url``; paths are appended to its path."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str] | None = None,
        max_connections: int = 256,
        keepalive_expiry: float = 30.0,
        max_answer_bytes: int = 128 * 1024 * 1024,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        https = url.scheme == "https"
        self.tls = (tls or httpx.create_ssl_context()) if https else None
        self.base = url.path.rstrip("/").encode()
        default_port = self.port == (443 if self.tls else 80)
        host = self.host if default_port else f"{self.host}:{self.port}"
        fixed = {"host": host, **(headers or {})}
        self.fixed = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in fixed.items())
        self.idle: deque[_Connection] = deque()
        #: Exchanges under way (for tests and debugging: 0 when nothing is in flight).
        self.busy = 0
        self.slots = asyncio.Semaphore(max_connections)
        self.expiry = keepalive_expiry
        self.max_answer = max_answer_bytes

    async def post(
        self,
        path: str,
        body: Sequence[bytes | memoryview],
        content_type: str,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """POST ``body`` (given in parts) and read the whole answer, all within ``timeout``."""
        head = self._head(path, sum(len(p) for p in body), content_type, headers)
        size = len(head) + sum(len(p) for p in body)
        joined = size < _JOIN_BELOW
        parts: list[bytes | memoryview] = [b"".join([head, *body])] if joined else [head, *body]
        stage = ["connect"]
        try:
            async with asyncio.timeout(timeout), self.slots:
                self.busy += 1
                try:
                    return await self._exchange(parts, stage)
                finally:
                    self.busy -= 1
        except TimeoutError:
            if stage[0] == "connect":
                raise httpx.ConnectTimeout("could not connect within the deadline") from None
            raise httpx.ReadTimeout("no answer within the deadline") from None

    def _head(
        self, path: str, length: int, content_type: str, headers: dict[str, str] | None
    ) -> bytes:
        extra = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in (headers or {}).items())
        return b"POST %s%s HTTP/1.1\r\n%s%scontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (
            self.base,
            path.encode(),
            self.fixed,
            extra,
            content_type.encode(),
            length,
        )

    async def _exchange(self, parts: list[bytes | memoryview], stage: list[str]) -> Answer:
        conn, reused = await self._acquire()
        stage[0] = "exchange"
        try:
            answer = await conn.send(parts)
        except httpx.RemoteProtocolError:
            conn.close()
            if not (reused and not conn.answered_bytes):
                raise
            # A kept-alive connection closed without a byte of answer: almost always the
            # server's idle timeout crossing our reuse, so the request was never processed
            # and is sent once more on a fresh connection (as browsers do). A server that
            # read it and died silently would see it twice; that is the accepted risk.
            conn, _ = await self._connect()
            answer = await self._send_once(conn, parts)
        except BaseException:
            conn.close()  # cancelled or failed mid-exchange: its state is unknown
            raise
        self._release(conn)
        return answer

    async def _send_once(self, conn: _Connection, parts: list[bytes | memoryview]) -> Answer:
        try:
            return await conn.send(parts)
        except BaseException:
            conn.close()
            raise

    async def _acquire(self) -> tuple[_Connection, bool]:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and now - conn.idle_since < self.expiry:
                return conn, True
            conn.close()
        return await self._connect()

    async def _connect(self) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(self.max_answer),
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=self.host if self.tls else None,
            )
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise httpx.ConnectError(f"cannot connect: {why}") from None
        return conn, False

    def _release(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    async def aclose(self) -> None:
        while self.idle:
            self.idle.pop().close()
