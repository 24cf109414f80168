"""Cancel an operation whose caller has gone away.

Once the request body has been read whole, the only thing left to arrive on an HTTP/1.1
connection is ``http.disconnect``; a watcher waits for it and cancels the work. Cancelling
reaches whatever is awaited at that moment: a vendor call is abandoned, a local
Real-ESRGAN worker is killed (app/esrgan/pool.py), and the middleware records 499.

The watcher starts only for work still running after ``WATCH_AFTER_S``: the millisecond
passthroughs that make up most traffic never pay for a task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

T = TypeVar("T")
WATCH_AFTER_S = 0.25


class _Watch:
    def __init__(self, receive: Receive, task: asyncio.Task[object]) -> None:
        self.receive = receive
        self.task = task
        self.body_read = False
        self.fired = False
        self.watcher: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    async def tracking_receive(self) -> Message:
        message = await self.receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_read = True
        return message

    def arm(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._start)

    def _start(self) -> None:
        if not self.body_read:  # still reading it: the read itself notices a disconnect
            self.arm()
            return
        self.watcher = asyncio.get_running_loop().create_task(self._wait())

    async def _wait(self) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.fired = True
        self.task.cancel()

    async def stop(self) -> None:
        """Disarm; a running watcher is cancelled and awaited, so no task outlives the
        request."""
        if self.timer is not None:
            self.timer.cancel()
        if self.watcher is not None:
            self.watcher.cancel()
            await asyncio.wait([self.watcher])


async def cancel_on_disconnect(receive: Receive, work: Callable[[Receive], Awaitable[T]]) -> T:
    """``work(receive)``, cancelled with ``ClientDisconnect`` if the caller disconnects
    after its body has been read."""
    task = asyncio.current_task()
    assert task is not None
    watch = _Watch(receive, task)
    watch.arm()
    try:
        return await work(watch.tracking_receive)
    except asyncio.CancelledError:
        if watch.fired and task.uncancel() == 0:
            raise ClientDisconnect() from None
        raise
    finally:
        await watch.stop()
