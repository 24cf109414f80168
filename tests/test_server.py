"""The real server: the run command's process, and 413 on a streamed body."""

import base64
import io
import shutil
import socket
import sys
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from tests.conftest import png_bytes
from tests.process import GatewayProcess


@pytest.fixture(scope="module")
def server() -> Iterator[GatewayProcess]:
    script = shutil.which(
        "image-gateway", path=str(__import__("pathlib").Path(sys.executable).parent)
    )
    command = [script] if script else None
    with GatewayProcess(env={"IMAGE_GATEWAY_MAX_BODY_BYTES": "100000"}, command=command) as process:
        yield process


def test_the_run_command_upscales_a_png_to_a_file(server: GatewayProcess) -> None:
    """What the README's quickstart does with curl -F image=@in.png -F scale=2."""
    source = png_bytes(50, 40)
    response = httpx.post(
        server.url + "/v1/upscale",
        files={"image": ("in.png", source, "image/png")},
        data={"scale": "2"},
        headers={"accept": "image/png"},
        timeout=30,
    )
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (100, 80)
    as_json = httpx.post(
        server.url + "/v1/upscale",
        json={"image": base64.b64encode(source).decode(), "scale": 2},
        timeout=30,
    )
    [image] = as_json.json()["images"]
    assert (image["width"], image["height"]) == (100, 80)
    assert base64.b64decode(image["data"]) == response.content  # the same image both ways


def test_a_streamed_body_over_the_limit_is_413_before_it_ends(server: GatewayProcess) -> None:
    """A chunked body with no Content-Length: the server answers 413 once the limit is
    crossed, while the client has not finished (nor even announced the end of) the body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/upscale HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"A" * 8192
        try:
            for _ in range(20):  # 160 KiB, over the 100 kB limit; the final 0-chunk is never sent
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before we finished: what this test wants
        head = _read_head(sock)
    assert head.startswith(b"HTTP/1.1 413 "), head[:200]
    assert b"application/problem+json" in head and b"payload_too_large" in head


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or b"payload_too_large" not in data:
        try:
            part = sock.recv(65536)
        except ConnectionResetError:
            break
        if not part:
            break
        data += part
    return data


def test_content_length_over_the_limit_is_413_at_once(server: GatewayProcess) -> None:
    response = httpx.post(
        server.url + "/v1/upscale",
        content=b"x" * 100_001,
        timeout=30,
        headers={"content-type": "application/json"},
    )
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")
