"""A prototype pooled HTTP/1.1 client on raw asyncio + httptools, measured against httpx by
bench/floor.py (see docs/performance.md). Not used by the gateway; a sketch of the transport
the issue allows "behind the same provider interface".

Per request it does one ``transport.write`` of head + body (or ``writelines`` for a large
body given in parts, which avoids joining them), parses the answer with httptools' C parser
and keeps idle connections in a LIFO deque: O(1) per request, where httpcore's pool scans
every connection (and every queued request) on each request and each release.

Missing before production use: connect/read timeouts (wrap ``post`` in ``asyncio.timeout``),
a cap on connections, idle expiry, chunked upload, response size limits, retries of a
request that found a keep-alive connection closed by the server.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import httptools


class RawResponse:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[RawResponse] | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.closed = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(ConnectionError(f"bad HTTP answer: {exc}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        answer = RawResponse(self.parser.get_status_code(), self.headers, body)
        self.keep_alive = self.parser.should_keep_alive()
        self.headers, self.chunks = [], []
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def send(self, parts: Sequence[bytes | memoryview]) -> asyncio.Future[RawResponse]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        if len(parts) == 1:
            self.transport.write(parts[0])
        else:
            self.transport.writelines(parts)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class RawPool:
    """Keep-alive connections to one ``host:port``; ``base`` is the path prefix."""

    def __init__(self, host: str, port: int, base: str = "", headers: dict[str, str] | None = None):
        self.host, self.port, self.base = host, port, base.encode()
        fixed = {"host": f"{host}:{port}", **(headers or {})}
        self.fixed = b"".join(f"{k}: {v}\r\n".encode() for k, v in fixed.items())
        self.idle: deque[_Connection] = deque()

    async def _acquire(self) -> _Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        return conn

    async def request(
        self, method: str, path: str, body: Sequence[bytes | memoryview] = (), ctype: str = ""
    ) -> RawResponse:
        size = sum(len(part) for part in body)
        head = b"%s %s%s HTTP/1.1\r\n%scontent-length: %d\r\n" % (
            method.encode(),
            self.base,
            path.encode(),
            self.fixed,
            size,
        )
        if ctype:
            head += b"content-type: " + ctype.encode() + b"\r\n"
        conn = await self._acquire()
        small = size < 65536
        parts: list[Any] = [head + b"\r\n" + b"".join(body)] if small else [head + b"\r\n", *body]
        try:
            answer = await conn.send(parts)
        except BaseException:
            conn.close()  # cancelled or failed mid-request: the connection's state is unknown
            raise
        if conn.keep_alive and not conn.closed:
            self.idle.append(conn)
        else:
            conn.close()
        return answer

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()
