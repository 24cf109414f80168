"""A caller that disconnects while its upscale runs: the work is cancelled, and a local
Real-ESRGAN job's worker process is killed, not left burning a core.

The app is driven at the ASGI level with the messages uvicorn produces: the body, then
(after the body) ``receive`` blocks until the connection drops and answers
``http.disconnect``."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from starlette.types import Message

from app.esrgan.pool import WorkerPool
from app.main import create_app
from tests.conftest import make_settings
from tests.esrgan.photos import encode, photo
from tests.esrgan.test_pool import live_workers

pytestmark = pytest.mark.anyio


async def test_a_disconnect_kills_the_running_job(monkeypatch: pytest.MonkeyPatch) -> None:
    started = asyncio.Event()
    spawn = WorkerPool._spawn

    async def spawn_and_tell(self: WorkerPool) -> Any:
        worker = await spawn(self)
        started.set()
        return worker

    monkeypatch.setattr(WorkerPool, "_spawn", spawn_and_tell)
    image = base64.b64encode(encode(photo(200, 200))).decode()
    payload = {"image": image, "provider": "local", "model": "realesrgan-x4plus", "scale": 4}
    body = json.dumps(payload).encode()
    gone = asyncio.Event()
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/upscale",
        "raw_path": b"/v1/upscale",
        "query_string": b"",
        "headers": [
            (b"host", b"gateway"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    app = create_app(make_settings())
    async with app.router.lifespan_context(app):
        call = asyncio.ensure_future(app(scope, receive, send))
        await started.wait()  # the worker is up and has the job
        assert len(live_workers()) == 1
        gone.set()  # the caller hangs up
        await asyncio.wait_for(call, timeout=10)
        local = app.state.service.router.providers["local"]
        await local.ai.pool.settle()  # waits for the killed worker; kills nothing itself
        assert live_workers() == []
    assert sent == []  # nobody to answer
