"""The transport against raw-socket servers on 127.0.0.1: each case of HTTP/1.1 a vendor
(or the network in between) can produce, with what the gateway must make of it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from app.domain import Deadline
from app.errors import ProviderUnavailable, UpstreamError, UpstreamTimeout
from app.transport import Transport
from tests.conftest import make_settings
from tests.transport.rawserver import Exchange, answer, raw_server

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def transport(url: str, cap_s: float = 30.0, **settings: Any) -> AsyncIterator[Transport]:
    client = Transport("vendor", url, make_settings(transport=settings).transport, cap_s=cap_s)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_close_delimited_body_is_read_to_the_end() -> None:
    async def handler(exchange: Exchange) -> None:  # no length, no chunking: ends at close
        await exchange.write(b"HTTP/1.1 502 Bad Gateway\r\nconnection: close\r\n\r\nupstream down")
        exchange.close()

    async with raw_server(handler) as server, transport(server.url) as client:
        response = await client.send("POST", "/x", Deadline(5), body=b"{}")
    assert (response.status_code, response.content) == (502, b"upstream down")


@pytest.mark.parametrize("interim", ["103 Early Hints\r\nlink: </a.css>", "100 Continue"])
async def test_informational_answers_are_skipped(interim: str) -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.write(f"HTTP/1.1 {interim}\r\n\r\n".encode() + answer(body=b"final"))

    async with raw_server(handler) as server, transport(server.url) as client:
        response = await client.send("POST", "/x", Deadline(5), body=b"{}")
    assert (response.status_code, response.content) == (200, b"final")


async def test_a_chunked_body_is_reassembled() -> None:
    async def handler(exchange: Exchange) -> None:
        head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        await exchange.write(head + b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n")

    async with raw_server(handler) as server, transport(server.url) as client:
        response = await client.send("GET", "/x", Deadline(5))
    assert response.content == b"one,two,three"


async def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\nxx")

    async with raw_server(handler) as server, transport(server.url) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.send("GET", "/x", Deadline(5), max_bytes=1000)
    assert "over 1000 bytes" in caught.value.detail and not caught.value.retryable


async def test_an_endless_chunked_body_is_cut_off_at_the_cap() -> None:
    sent = 0

    async def handler(exchange: Exchange) -> None:
        nonlocal sent
        await exchange.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        while True:  # forever, until the client hangs up
            await exchange.write(b"10000\r\n" + chunk + b"\r\n")
            sent += len(chunk)

    async with raw_server(handler) as server, transport(server.url) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.send("GET", "/x", Deadline(10), max_bytes=1_000_000)
    assert "over 1000000 bytes" in caught.value.detail
    assert sent < 20_000_000  # stopped while streaming, not after reading everything


async def test_an_endless_close_delimited_body_is_cut_off_at_the_cap() -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
        while True:
            await exchange.write(b"y" * 65536)

    async with (
        raw_server(handler) as server,
        transport(server.url, max_response_bytes=500_000) as client,
    ):
        with pytest.raises(UpstreamError) as caught:
            await client.send("GET", "/x", Deadline(10))
    assert "over 500000 bytes" in caught.value.detail


@pytest.mark.parametrize(
    "headers",
    [
        "x-huge: " + "h" * 20_000,  # one line over max_header_line_bytes (16 KiB)
        "\r\n".join(f"x-h{i}: v" for i in range(200)),  # more lines than max_headers (128)
    ],
)
async def test_answer_headers_over_the_caps_are_refused(headers: str) -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.write(
            f"HTTP/1.1 200 OK\r\n{headers}\r\ncontent-length: 2\r\n\r\nok".encode()
        )

    async with raw_server(handler) as server, transport(server.url) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.send("GET", "/x", Deadline(5))
    assert caught.value.reason == "bad_response" and "h" * 100 not in caught.value.detail


async def test_a_vendor_that_trickles_bytes_is_cut_off_at_the_deadline() -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")
        while True:  # one byte every 20 ms: every single read is quick, the whole is not
            await exchange.write(b"z")
            await asyncio.sleep(0.02)

    async with raw_server(handler) as server, transport(server.url) as client:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout) as caught:
            await client.send("GET", "/x", Deadline(0.5))
    assert 0.45 < time.monotonic() - started < 2.0
    assert caught.value.reason == "timeout" and not caught.value.retryable


async def test_no_answer_at_all_is_a_timeout_at_the_deadline() -> None:
    async def handler(exchange: Exchange) -> None:
        await asyncio.Event().wait()  # reads the request, never answers

    async with raw_server(handler) as server, transport(server.url, cap_s=0.3) as client:
        with pytest.raises(UpstreamTimeout) as caught:
            await client.send("POST", "/x", Deadline(30), body=b"{}")  # the cap is shorter
    assert caught.value.reason == "timeout" and not caught.value.retryable


async def test_a_connect_that_never_completes_is_capped_and_leaves_time_for_fallback() -> None:
    # A listener whose accept queue is full and that never accepts: the kernel drops
    # further SYNs, so connecting hangs, as with a black-holed address.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        async with transport(f"http://127.0.0.1:{port}", connect_timeout_s=0.3) as client:
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout) as caught:
                await client.send("POST", "/x", Deadline(30), body=b"{}")
        elapsed = time.monotonic() - started
    finally:
        for sock in (*fillers, listener):
            sock.close()
    assert caught.value.reason == "connect" and caught.value.retryable  # never sent
    assert elapsed < 3  # the connect cap, not the 30 s deadline


async def test_a_refused_connection_is_503_and_retryable() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    async with transport(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(ProviderUnavailable) as caught:
            await client.send("POST", "/x", Deadline(5), body=b"{}")
    assert (caught.value.reason, caught.value.retryable) == ("connect", True)


async def test_a_pool_wait_is_its_own_timeout_not_a_connect_timeout() -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def handler(exchange: Exchange) -> None:
        arrived.set()
        await release.wait()
        await exchange.write(answer())

    async with (
        raw_server(handler) as server,
        transport(server.url, max_connections=1, pool_timeout_s=0.2) as client,
    ):
        first = asyncio.create_task(client.send("GET", "/slow", Deadline(10)))
        await arrived.wait()  # the only connection is now taken
        with pytest.raises(ProviderUnavailable) as caught:
            await client.send("GET", "/x", Deadline(10))
        release.set()
        assert (await first).status_code == 200
    assert (caught.value.reason, caught.value.retryable) == ("saturated", True)
    assert len(server.heads) == 1  # the second request never left the gateway


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_request_is_never_sent_twice(method: str) -> None:
    """A kept-alive connection that dies after the request went out: the transport reports
    it and does not send the request again (aiohttp would resend a GET by itself)."""

    async def handler(exchange: Exchange) -> None:
        if exchange.index == 0:
            await exchange.write(answer())
        else:
            exchange.close()  # read the second request, then hang up without a word

    async with raw_server(handler) as server, transport(server.url) as client:
        assert (await client.send(method, "/a", Deadline(5), body=b"1")).status_code == 200
        with pytest.raises(UpstreamError) as caught:
            await client.send(method, "/b", Deadline(5), body=b"2")
    assert len(server.heads) == 2 and server.connections == 1
    assert not caught.value.retryable and caught.value.reason == "bad_response"


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.write(answer())
        exchange.close()  # keep-alive in words, closed in fact

    async with raw_server(handler) as server, transport(server.url) as client:
        assert (await client.send("POST", "/a", Deadline(5), body=b"1")).status_code == 200
        await asyncio.sleep(0.05)  # let the close reach the client
        assert (await client.send("POST", "/b", Deadline(5), body=b"2")).status_code == 200
    assert len(server.heads) == 2 and server.connections == 2


async def test_a_reset_mid_answer_is_502_and_not_retryable() -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        exchange.writer.transport.abort()

    async with raw_server(handler) as server, transport(server.url) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.send("POST", "/x", Deadline(5), body=b"{}")
    assert (caught.value.reason, caught.value.retryable) == ("bad_response", False)


async def test_bodies_in_parts_go_out_with_a_length_and_intact() -> None:
    got: list[bytes] = []

    async def handler(exchange: Exchange) -> None:
        got.append(exchange.head.lower())
        got.append(exchange.body)
        await exchange.write(answer())

    big = b"b" * 300_000
    async with raw_server(handler) as server, transport(server.url) as client:
        await client.send("POST", "/x", Deadline(5), body=[b"{", memoryview(big), b"}"])
    assert b"content-length: 300002" in got[0] and b"transfer-encoding" not in got[0]
    assert got[1] == b"{" + big + b"}"


async def test_an_exhausted_deadline_sends_nothing() -> None:
    async def handler(exchange: Exchange) -> None:
        await exchange.write(answer())

    clock = [0.0]
    deadline = Deadline(1, clock=lambda: clock[0])
    clock[0] = 2.0
    async with raw_server(handler) as server, transport(server.url) as client:
        with pytest.raises(UpstreamTimeout):
            await client.send("POST", "/x", deadline, body=b"{}")
    assert server.heads == []
