"""A request offering an Upgrade the gateway does not speak (``h2c``, as Java's default
HttpClient and ``curl --http2`` send on plain http) is served as HTTP/1.1 with its body,
on a real uvicorn server with the gateway's protocol class. (The Java client in
tests/clients proves it end to end.)"""

import socket
from collections.abc import Iterator

import pytest

from tests.process import GatewayProcess

H2C = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
BODY = b'{"prompt": "a fox", "provider": "venice", "n": "two"}'


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """One real gateway (``python -m app``, so the production protocol class) for the module."""
    with GatewayProcess() as gateway:
        yield gateway.port


def _exchange(port: int, request: bytes, answers: int = 1) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while answer.count(b"HTTP/1.1 ") < answers or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def _post(extra: bytes, body: bytes = BODY, chunked: bool = False) -> bytes:
    head = b"POST /v1/generate HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    if chunked:
        sized = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        return head + b"Transfer-Encoding: chunked\r\n" + extra + b"\r\n" + sized
    return head + b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body


@pytest.mark.parametrize(
    "request_bytes",
    [
        _post(H2C),
        _post(H2C, chunked=True),
        _post(b"Connection: upgrade\r\nUpgrade: foo/2\r\n"),
        _post(b""),
    ],
    ids=["h2c", "h2c-chunked", "unknown-upgrade", "no-upgrade"],
)
def test_unknown_upgrade_is_ignored_and_the_body_read(port: int, request_bytes: bytes) -> None:
    answer = _exchange(port, request_bytes)
    # The body was read: its wrong type for n is what the gateway complains about.
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b'"loc": ["n"]' in answer


def test_the_connection_stays_usable_after_an_ignored_upgrade(port: int) -> None:
    answer = _exchange(port, _post(H2C) + _post(b""), answers=2)
    assert answer.count(b"HTTP/1.1 400 ") == 2, answer
