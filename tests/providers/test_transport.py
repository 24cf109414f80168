"""The lean pooled HTTP/1.1 client, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.providers.transport import Http11Pool
from tests.emulators.common import EmulatorServer, EmulatorState, Fault
from tests.process import free_port

pytestmark = pytest.mark.anyio


async def echo(request: Request) -> Response:
    body = await request.body()
    headers = {
        "x-seen-auth": request.headers.get("authorization", ""),
        "x-seen-type": request.headers.get("content-type", ""),
    }
    return Response(body, headers=headers, media_type="application/octet-stream")


async def chunked(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one,", b"two,", b"three"):
            yield part

    return StreamingResponse(parts(), media_type="text/plain")


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    app = Starlette(
        routes=[
            Route("/api/echo", echo, methods=["POST"]),
            Route("/api/chunked", chunked, methods=["POST"]),
        ]
    )
    state = EmulatorState()
    with EmulatorServer(app, state) as running:
        yield running


async def test_post_with_fixed_headers_and_reuse(server: EmulatorServer) -> None:
    pool = Http11Pool(server.url + "/api", {"authorization": "Bearer k"})
    first = await pool.post("/echo", [b'{"a":', b"1}"], "application/json", timeout=5)
    second = await pool.post("/echo", [b"x" * 100_000], "application/json", timeout=5)
    assert (first.status_code, first.content) == (200, b'{"a":1}')
    assert (
        first.headers["X-Seen-Auth"] == "Bearer k"
        and first.headers["x-seen-type"] == "application/json"
    )
    assert second.content == b"x" * 100_000  # a large body sent in parts, never joined
    assert len(pool.idle) == 1 and pool.busy == 0  # one kept-alive connection served both
    assert [r.path for r in server.state.requests] == ["/api/echo", "/api/echo"]
    await pool.aclose()


async def test_chunked_answers_are_reassembled(server: EmulatorServer) -> None:
    pool = Http11Pool(server.url + "/api")
    answer = await pool.post("/chunked", [b""], "text/plain", timeout=5)
    assert answer.content == b"one,two,three"
    await pool.aclose()


@pytest.mark.parametrize("kind", ["reset", "truncate"])
async def test_broken_answers_raise_remote_protocol_error(
    server: EmulatorServer, kind: str
) -> None:
    pool = Http11Pool(server.url + "/api")
    server.state.add_fault(Fault(kind))  # type: ignore[arg-type]
    with pytest.raises(httpx.RemoteProtocolError):
        await pool.post("/echo", [b"x"], "text/plain", timeout=5)
    assert pool.busy == 0 and not pool.idle  # the broken connection is not reused
    assert (await pool.post("/echo", [b"ok"], "text/plain", timeout=5)).content == b"ok"
    await pool.aclose()


async def test_no_answer_is_a_read_timeout(server: EmulatorServer) -> None:
    pool = Http11Pool(server.url + "/api")
    server.state.add_fault(Fault("hang"))
    with pytest.raises(httpx.ReadTimeout):
        await pool.post("/echo", [b"x"], "text/plain", timeout=0.2)
    assert pool.busy == 0 and not pool.idle
    await pool.aclose()


async def test_refused_connection_is_a_connect_error() -> None:
    pool = Http11Pool(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(httpx.ConnectError):
        await pool.post("/x", [b""], "text/plain", timeout=5)


async def test_oversized_answer_is_refused(server: EmulatorServer) -> None:
    pool = Http11Pool(server.url + "/api", max_answer_bytes=1000)
    with pytest.raises(httpx.RemoteProtocolError, match="larger than 1000"):
        await pool.post("/echo", [b"y" * 5000], "text/plain", timeout=5)
    await pool.aclose()


async def idle_closing_server(answers: list[str]) -> tuple[asyncio.Server, int]:
    """Answers the first request on each connection with keep-alive, then closes the
    connection when the next request arrives on it, without answering: what the client
    sees when its idle connection and the server's idle timeout cross."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        answers.append(head.split(b" ")[1].decode())
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


async def test_a_stale_kept_alive_connection_is_replaced_transparently() -> None:
    answers: list[str] = []
    srv, port = await idle_closing_server(answers)
    pool = Http11Pool(f"http://127.0.0.1:{port}")
    assert (await pool.post("/a", [b""], "text/plain", timeout=5)).content == b"ok"
    assert (await pool.post("/b", [b""], "text/plain", timeout=5)).content == b"ok"
    assert answers == ["/a", "/b"]  # /b was dropped on the old connection, answered on a new one
    srv.close()
    await pool.aclose()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))  # fmt: skip
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_with_certificate_verification(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecure")
        await writer.drain()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
    port = srv.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(cert))
    pool = Http11Pool(f"https://localhost:{port}", tls=trusting)
    assert (await pool.post("/", [b""], "text/plain", timeout=5)).content == b"secure"
    with pytest.raises(httpx.ConnectError):  # the default trust store does not know it
        await Http11Pool(f"https://localhost:{port}").post("/", [b""], "text/plain", timeout=5)
    await pool.aclose()
    srv.close()
