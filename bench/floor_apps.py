"""Minimal apps that show what each layer of the gateway's design costs on this machine
(run by bench/floor.py under the same uvicorn settings as the gateway). Each forwarding app
does the same JSON work as the gateway's generate path: parse the caller's JSON, POST JSON
upstream, parse the upstream JSON, answer a JSON document with the image passed through.

Set ``FAKE_URL`` (e.g. http://127.0.0.1:9100) before importing.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI, Request
from starlette.responses import Response

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rawhttp import RawPool

FAKE = urlsplit(os.environ.get("FAKE_URL", "http://127.0.0.1:9100"))
STATIC = json.dumps({"id": "x", "provider": "venice", "images": [{"data": "A" * 3400}]}).encode()
UPSTREAM = {"model": "venice-sd35", "format": "webp"}
Scope = dict[str, Any]


def answer(upstream: bytes) -> bytes:
    images = json.loads(upstream)["images"]
    doc = {
        "provider": "venice",
        "images": [{"data": b64, "mime_type": "image/webp"} for b64 in images],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_json(send: Any, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# 1. the floor: uvicorn + httptools, no framework, no upstream
async def asgi_static(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await read_body(receive)
    await send_json(send, STATIC)


# 2. FastAPI's routing and request handling, no upstream
fastapi_static = FastAPI()


@fastapi_static.post("/v1/generate")
async def _static(request: Request) -> Response:
    await request.body()
    return Response(content=STATIC, media_type="application/json")


# 3. the naive forwarder: FastAPI + one pooled httpx.AsyncClient
fastapi_httpx = FastAPI()
_client = httpx.AsyncClient(
    base_url=f"{FAKE.scheme}://{FAKE.netloc}/api/v1",
    headers={"Authorization": "Bearer k"},
    limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
)


@fastapi_httpx.post("/v1/generate")
async def _httpx(request: Request) -> Response:
    params = json.loads(await request.body())
    upstream = await _client.post("/image/generate", json={**UPSTREAM, "prompt": params["prompt"]})
    return Response(content=answer(upstream.content), media_type="application/json")


# 4. FastAPI + the raw pooled client (bench/rawhttp.py)
fastapi_raw = FastAPI()
_pool = RawPool(
    FAKE.hostname or "127.0.0.1", FAKE.port or 80, "/api/v1", {"authorization": "Bearer k"}
)


async def _forward(body: bytes) -> bytes:
    params = json.loads(body)
    payload = json.dumps({**UPSTREAM, "prompt": params["prompt"]}).encode()
    upstream = await _pool.request("POST", "/image/generate", [payload], "application/json")
    return answer(upstream.body)


@fastapi_raw.post("/v1/generate")
async def _raw(request: Request) -> Response:
    return Response(content=await _forward(await request.body()), media_type="application/json")


# 5. pure ASGI + the raw pooled client: the lean end of this design
async def asgi_raw(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    await send_json(send, await _forward(await read_body(receive)))


APPS = ("asgi_static", "fastapi_static", "fastapi_httpx", "fastapi_raw", "asgi_raw")
