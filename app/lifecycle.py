"""Process lifecycle: in-flight request accounting and graceful drain.

On SIGTERM the server (``app.server``) calls ``begin_drain()``: ``/readyz`` answers 503 at
once, new requests get 503, and the server waits on ``wait_idle()`` (bounded by
``IMAGE_GATEWAY_SHUTDOWN_GRACE_S``) before it lets uvicorn close the listener and exit.
"""

from __future__ import annotations

import asyncio


class Lifecycle:
    def __init__(self) -> None:
        self.draining = False
        self.inflight = 0
        self._idle: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._idle is None:
            self._idle = asyncio.Event()
            if self.inflight == 0:
                self._idle.set()
        return self._idle

    def enter(self) -> None:
        self.inflight += 1
        self._event().clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._event().set()

    def begin_drain(self) -> None:
        self.draining = True

    async def wait_idle(self, timeout: float) -> bool:
        """True when every in-flight request finished within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._event().wait(), timeout)
        except TimeoutError:
            return False
        return True
