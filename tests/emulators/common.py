"""Shared machinery for the vendor emulators: a real server on 127.0.0.1, request recording
and fault injection.

Every emulator is an ASGI app wrapped in :class:`FaultMiddleware`, which records each request
it receives (so a test can prove that a refused request never reached the vendor) and, when
a test has queued a :class:`Fault`, answers with it instead of the vendor logic.

:class:`EmulatorServer` serves an app with uvicorn in a background thread on a socket that
is bound and listening before ``start()`` returns, so a test never has to wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import threading
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FaultKind = Literal["status", "slow", "gated", "reset", "truncate", "malformed", "hang"]


@dataclass
class Fault:
    """One injected misbehaviour.

    - ``status``: answer ``status`` with ``body`` (bytes, str or JSON-able) and ``headers``.
    - ``slow``: wait ``delay_s`` (or until the server stops), then run the real vendor logic.
    - ``gated``: hold the request until the test calls ``state.open_gate()``, then run the
      real vendor logic (deterministic "slow" without timing).
    - ``reset``: send the response head, part of a body, then drop the connection.
    - ``truncate``: announce a Content-Length, send half of ``body``, then close.
    - ``malformed``: answer 200 with a body that is not what the vendor would send.
    - ``hang``: accept the request and never answer (until the server stops).

    ``path`` limits the fault to request paths that contain it; ``times`` is how many
    requests it applies to.
    """

    kind: FaultKind
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    path: str | None = None
    times: int = 1


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class EmulatorState:
    """What a test can see and steer: recorded requests and queued faults."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self.stopping: asyncio.Event | None = None
        self.gate: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def open_gate(self) -> None:
        """Release every request held by a ``gated`` fault (callable from any thread)."""
        assert self.loop is not None and self.gate is not None, "the emulator is not running"
        self.loop.call_soon_threadsafe(self.gate.set)

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or fault.path in path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def requests_to(self, path_part: str) -> list[RecordedRequest]:
        return [r for r in self.requests if path_part in r.path]


def _encode_body(body: Any) -> tuple[bytes, str]:
    if body is None:
        return b"", "application/json"
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body).encode(), "application/json"


class FaultMiddleware:
    """Records every HTTP request and applies queued faults before the vendor logic runs."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        self.state.requests.append(
            RecordedRequest(scope["method"], scope["path"], query, headers, body)
        )
        fault = self.state.take_fault(scope["path"])
        if fault is None:
            await self.app(scope, _replay(body), send)
        elif fault.kind == "slow":
            await self._wait(fault.delay_s)
            await self.app(scope, _replay(body), send)
        elif fault.kind == "gated":
            assert self.state.gate is not None
            await _first(self.state.gate.wait(), self._wait(None))
            await self.app(scope, _replay(body), send)
        else:
            await self._apply(fault, send)

    async def _wait(self, seconds: float | None) -> None:
        stopping = self.state.stopping
        assert stopping is not None, "the emulator is not running"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=seconds)

    async def _apply(self, fault: Fault, send: Send) -> None:
        if fault.kind == "hang":
            await self._wait(None)
            return
        if fault.kind == "malformed":
            payload = fault.body if fault.body is not None else b'{"not": "what'
            payload = payload.encode() if isinstance(payload, str) else payload
            headers = {"content-type": "application/json", **fault.headers}
            await _respond(send, 200, payload, headers)
            return
        payload, ctype = _encode_body(fault.body)
        headers = {"content-type": ctype, **fault.headers}
        if fault.kind == "status":
            await _respond(send, fault.status, payload, headers)
            return
        # reset / truncate: promise more than we send, then drop the connection.
        payload = payload or b"x" * 4096
        raw_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        raw_headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        await send(
            {"type": "http.response.body", "body": payload[: len(payload) // 2], "more_body": True}
        )
        raise ConnectionAbortedError(f"emulator fault: {fault.kind}")


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until the first of ``waits`` finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # like a real client that keeps the connection open
        raise AssertionError("unreachable")

    return receive


async def _respond(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class EmulatorServer:
    """Serves ``app`` on 127.0.0.1 with uvicorn in a thread. Use as a context manager.

    The listening socket is bound and listening before ``start()`` returns, so requests
    sent right away queue in the kernel's backlog instead of being refused.
    """

    def __init__(self, app: ASGIApp, state: EmulatorState, port: int = 0) -> None:
        self.state = state
        self._app = FaultMiddleware(app, state)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(1024)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
            server_header=False,  # emulators send the vendor's own Server header, if any
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"emulator:{self.port}", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_ready = threading.Event()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.state.loop = self._loop
        self.state.stopping = asyncio.Event()
        self.state.gate = asyncio.Event()
        self._loop_ready.set()
        await self._server.serve(sockets=[self._sock])

    def start(self) -> EmulatorServer:
        self._thread.start()
        self._loop_ready.wait()
        return self

    def stop(self) -> None:
        loop, stopping = self._loop, self.state.stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(app_factory: Callable[[EmulatorState], ASGIApp], description: str) -> None:
    """Entry point for ``python -m tests.emulators.<vendor> --port N``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    state = EmulatorState()
    state.stopping = None
    app = FaultMiddleware(app_factory(state), state)

    async def main() -> None:
        state.loop = asyncio.get_running_loop()
        state.stopping = asyncio.Event()
        state.gate = asyncio.Event()
        config = uvicorn.Config(app, host=args.host, port=args.port, lifespan="off")
        await uvicorn.Server(config).serve()

    asyncio.run(main())
