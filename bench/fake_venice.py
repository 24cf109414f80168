"""A minimal fake Venice upstream that is never the bottleneck of the benchmark.

A raw asyncio ``Protocol`` speaking just enough HTTP/1.1 (keep-alive, Content-Length or
chunked request bodies, Content-Length answers), on uvloop when installed, answering every
route from bytes computed once at start-up:

- ``POST */image/generate``: the JSON of vendors.md §2.4 (``{id, images, request, timing}``)
  with one base64 image, or the raw image when the body asks for ``return_binary: true``;
- ``POST */image/upscale``: a real 2400x2000 PNG, binary (§2.2a);
- ``GET */models`` and ``GET */image/styles``: a one-model catalog and a style list (§2.5),
  for the provider's catalog refresh;
- ``POST */images/generations``: OpenAI's image answer ``{created, data: [{b64_json}]}``, for
  the LiteLLM comparison;
- ``GET /__stats``: how many requests each route answered (the benchmark checks that the
  gateway really called the fake).

Inference answers carry the ``x-ratelimit-*`` and balance headers of §2.7. The fake never
validates a request: the emulators in tests/emulators do that; this one only has to be fast.

Run alone: ``.venv/bin/python bench/fake_venice.py --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import cast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from payloads import Payloads, make_payloads

#: Bodies up to this size are kept (generate bodies are read for ``return_binary``);
#: larger ones (the 6.4 MB upscale) are only counted, never buffered.
_KEEP_BODY = 64 * 1024
_MAX_HEAD = 64 * 1024
_RATE_HEADERS = (
    b"x-ratelimit-limit-requests: 20\r\n"
    b"x-ratelimit-remaining-requests: 19\r\n"
    b"x-ratelimit-reset-requests: 1767225600000\r\n"
    b"x-ratelimit-limit-tokens: 1000000\r\n"
    b"x-ratelimit-remaining-tokens: 999000\r\n"
    b"x-ratelimit-reset-tokens: 60\r\n"
    b"x-venice-balance-usd: 100.00\r\n"
    b"x-venice-balance-diem: 10.0\r\n"
)
_GENERATE_HEADERS = b"x-venice-is-blurred: false\r\nx-venice-is-content-violation: false\r\n"
_STYLES = ["3D Model", "Analog Film", "Anime", "Cinematic", "Comic Book", "Digital Art"]


def response(
    body: bytes, content_type: str, status: bytes = b"200 OK", extra: bytes = b""
) -> bytes:
    head = (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: " + content_type.encode() + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n"
    )
    return head + body


def catalog_json() -> bytes:
    """``GET /models?type=image`` (§2.5): one model, ``venice-sd35``, as in the live sample."""
    model = {
        "id": "venice-sd35",
        "type": "image",
        "object": "model",
        "owned_by": "venice.ai",
        "created": 1727966436,
        "model_spec": {
            "name": "Venice SD35",
            "privacy": "private",
            "constraints": {
                "promptCharacterLimit": 1500,
                "steps": {"default": 25, "max": 30},
                "widthHeightDivisor": 16,
            },
            "traits": ["default"],
            "offline": False,
        },
    }
    return json.dumps({"object": "list", "type": "image", "data": [model]}).encode()


class Answers:
    """Every answer the fake gives, as complete HTTP responses computed once."""

    def __init__(self, payloads: Payloads) -> None:
        b64 = base64.b64encode(payloads.generate_image).decode("ascii")
        generated = {
            "id": "generate-image-bench",
            "images": [b64],
            "request": None,
            "timing": {
                "inferenceDuration": 1,
                "inferencePreprocessingTime": 0,
                "inferenceQueueTime": 0,
                "total": 1,
            },
        }
        inference = _RATE_HEADERS + _GENERATE_HEADERS
        self.generate_json = response(
            json.dumps(generated).encode(), "application/json", extra=inference
        )
        self.generate_binary = response(
            payloads.generate_image, payloads.generate_mime, extra=inference
        )
        self.upscale = response(payloads.upscaled_png, "image/png", extra=_RATE_HEADERS)
        self.models = response(catalog_json(), "application/json")
        styles = json.dumps({"object": "list", "data": _STYLES}).encode()
        self.styles = response(styles, "application/json")
        openai = {"created": 1767225600, "data": [{"b64_json": b64}]}
        self.openai = response(json.dumps(openai).encode(), "application/json")
        self.not_found = response(b'{"error":"Not found"}', "application/json", b"404 Not Found")
        self.bad_request = response(
            b'{"error":"Invalid request"}', "application/json", b"400 Bad Request"
        )


class Route:
    """Picks the answer for a request; counts what it answered."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.stats: Counter[str] = Counter()

    def answer(self, method: bytes, target: bytes, body: bytes) -> bytes:
        path = target.split(b"?", 1)[0]
        name, data = self._pick(method, path, body)
        self.stats[name] += 1
        return data

    def _pick(self, method: bytes, path: bytes, body: bytes) -> tuple[str, bytes]:
        a = self.answers
        if method == b"POST":
            if path.endswith(b"/image/generate"):
                binary = b'"return_binary":true' in body.replace(b" ", b"")
                return "generate", a.generate_binary if binary else a.generate_json
            if path.endswith(b"/image/upscale"):
                return "upscale", a.upscale
            if path.endswith(b"/images/generations"):
                return "openai_generate", a.openai
        elif method == b"GET":
            if path.endswith(b"/models"):
                return "models", a.models
            if path.endswith(b"/image/styles"):
                return "styles", a.styles
            if path == b"/__stats":
                return "stats", response(json.dumps(self.stats).encode(), "application/json")
        return "not_found", a.not_found


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: head, then a Content-Length or chunked body."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.request: tuple[bytes, bytes, bool] | None = None  # method, target, keep-alive
        self.body_left = 0  # Content-Length bytes still to come
        self.body = bytearray()
        self.chunked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.body_left and not self.buffer:
            data = self._take_body(data)
            if self.body_left:
                return
            self._finish()
        if data:
            self.buffer += data
        while self.buffer and self.transport is not None and self._step():
            pass

    def _step(self) -> bool:
        """Advance on the buffered bytes; False when more bytes are needed."""
        if self.request is None:
            return self._read_head()
        if self.chunked:
            return self._read_chunk()
        rest = self._take_body(bytes(self.buffer))
        self.buffer = bytearray(rest)
        if self.body_left:
            return False
        self._finish()
        return True

    def _read_head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > _MAX_HEAD:
                self._fail()
            return False
        head = bytes(self.buffer[:end]).split(b"\r\n")
        del self.buffer[: end + 4]
        parts = head[0].split(b" ")
        if len(parts) != 3:
            self._fail()
            return False
        headers = dict(_header(line) for line in head[1:] if b":" in line)
        close = headers.get(b"connection", b"").lower() == b"close" or parts[2] == b"HTTP/1.0"
        self.request = (parts[0], parts[1], not close)
        self.chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        self.body_left = 0 if self.chunked else int(headers.get(b"content-length", b"0"))
        self.body = bytearray()
        if not self.chunked and not self.body_left:
            self._finish()
        return True

    def _take_body(self, data: bytes) -> bytes:
        """Consume up to ``body_left`` bytes of ``data``; return what follows the body."""
        used = min(len(data), self.body_left)
        if len(self.body) + used <= _KEEP_BODY:
            self.body += data[:used]
        self.body_left -= used
        return data[used:]

    def _read_chunk(self) -> bool:
        line_end = self.buffer.find(b"\r\n")
        if line_end < 0:
            return False
        size = int(bytes(self.buffer[:line_end]).split(b";")[0], 16)
        if len(self.buffer) < line_end + 2 + size + 2:
            return False
        chunk = self.buffer[line_end + 2 : line_end + 2 + size]
        if len(self.body) + size <= _KEEP_BODY:
            self.body += chunk
        del self.buffer[: line_end + 2 + size + 2]  # no trailers: "0\r\n\r\n" ends it
        if size == 0:
            self._finish()
        return True

    def _finish(self) -> None:
        assert self.request is not None and self.transport is not None
        method, target, keep_alive = self.request
        self.request, self.chunked = None, False
        self.transport.write(self.route.answer(method, target, bytes(self.body)))
        if not keep_alive:
            self.transport.close()
            self.transport = None

    def _fail(self) -> None:
        assert self.transport is not None
        self.transport.write(self.route.answers.bad_request)
        self.transport.close()
        self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _header(line: bytes) -> tuple[bytes, bytes]:
    name, _, value = line.partition(b":")
    return name.strip().lower(), value.strip()


async def serve(host: str, port: int, generate_kb: int | None) -> None:
    route = Route(Answers(make_payloads(generate_kb)))
    loop = asyncio.get_running_loop()
    factory: Callable[[], asyncio.Protocol] = lambda: HttpConnection(route)  # noqa: E731
    server = await loop.create_server(factory, host, port, backlog=1024, reuse_address=True)
    print(f"fake venice on http://{host}:{port}/api/v1", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--generate-kb", type=int, default=None, help="bigger generate image")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.generate_kb))
    else:
        uvloop.run(serve(args.host, args.port, args.generate_kb))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
