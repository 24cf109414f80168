"""A raw-socket HTTP/1.1 server on 127.0.0.1 for transport conformance tests: each test
writes the exact bytes a vendor would send, including the malformed and the slow."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

Handler = Callable[["Exchange"], Awaitable[None]]


@dataclass
class Exchange:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    #: Which connection (0, 1, ...) and which request on it (0, 1, ...).
    connection: int
    index: int
    head: bytes = b""
    body: bytes = b""

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


@dataclass
class RawServer:
    handler: Handler
    port: int = 0
    #: Every request head received, in order.
    heads: list[bytes] = field(default_factory=list)
    connections: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        index = 0
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while not writer.is_closing():
                exchange = await _read_request(reader, writer, number, index)
                if exchange is None:
                    break
                self.heads.append(exchange.head)
                await self.handler(exchange)
                index += 1
        writer.close()


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int, index: int
) -> Exchange | None:
    head = await reader.readuntil(b"\r\n\r\n")
    if not head:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return Exchange(reader, writer, number, index, head, body)


@contextlib.asynccontextmanager
async def raw_server(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[RawServer]:
    server = RawServer(handler)
    running = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=tls)
    server.port = running.sockets[0].getsockname()[1]
    server._server = running
    try:
        yield server
    finally:
        running.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running.wait_closed(), 1)


def answer(status: str = "200 OK", body: bytes = b"ok", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
