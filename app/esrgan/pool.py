"""Worker processes for Real-ESRGAN jobs, driven from the event loop.

Processes, not threads: ncnn keeps the GIL during a forward pass, and a job past its
deadline (or whose caller went away) must stop burning a core, which only killing its
process guarantees. One job per worker at a time; idle workers are kept with their loaded
networks and reused, and stopped after ``idle_s`` without work (x4plus holds ~1.3 GB).
How many run at once is bounded by the caller (the ``local`` provider's slots, shared with
Lanczos).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.esrgan.engine import Order, Result
from app.esrgan.worker import HEADER, frame

_APP_ROOT = str(Path(__file__).resolve().parents[2])


class WorkerGone(Exception):
    """The worker died (killed by the memory cap, or crashed) before it answered."""


class JobFailed(Exception):
    """The worker answered with an error: ``kind`` is decode, too_large, memory or failed."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass
class Reply:
    result: Result
    peak_rss_bytes: int


class Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.peak_rss_bytes = 0
        self.idle_since = 0.0

    @property
    def pid(self) -> int:
        return self.process.pid

    async def receive(self) -> tuple[Any, ...]:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            (length,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
            message: tuple[Any, ...] = _loads(await stdout.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            raise WorkerGone(f"exit status {await self.process.wait()}") from None
        return message

    async def ask(self, order: Order) -> Reply:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(frame(order))
            await stdin.drain()
        except ConnectionError:
            raise WorkerGone(f"exit status {await self.process.wait()}") from None
        kind, payload, rss = await self.receive()
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
        if kind != "ok":
            raise JobFailed(kind, str(payload))
        return Reply(payload, rss)

    def kill(self) -> None:
        """Stop now: the core is freed at once (``reap`` collects the exit status)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        if self.process.stdin is not None:
            self.process.stdin.close()

    async def reap(self) -> None:
        self.kill()
        await self.process.wait()


def _loads(body: bytes) -> Any:
    import pickle

    return pickle.loads(body)  # our own child process wrote it


class WorkerPool:
    """Spawns workers on demand, keeps idle ones, kills the ones that overrun."""

    def __init__(
        self, gpu: int | None = None, memory_mb: int | None = None, idle_s: float = 300.0
    ) -> None:
        self._args = _worker_args(gpu, memory_mb)
        self._idle_s = idle_s
        self._sweep: asyncio.TimerHandle | None = None
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._reaping: set[asyncio.Task[None]] = set()

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in (*self._idle, *self._busy)]

    async def run(self, order: Order, timeout: float) -> Reply:
        """Run ``order`` on a worker within ``timeout`` seconds (spawning included).
        On timeout or cancellation the worker is killed, not left computing."""
        worker: Worker | None = None
        try:
            async with asyncio.timeout(timeout):
                worker = self._idle.pop() if self._idle else await self._spawn()
                self._busy.add(worker)
                reply = await worker.ask(order)
        except BaseException:
            if worker is not None:
                self._busy.discard(worker)
                self._discard(worker)
            raise
        self._busy.discard(worker)
        worker.idle_since = asyncio.get_running_loop().time()
        self._idle.append(worker)
        self._schedule_sweep()
        return reply

    def stop_idle(self) -> None:
        """Stop the workers idle for ``idle_s`` or longer (their memory goes back)."""
        now = asyncio.get_running_loop().time()
        expired = [w for w in self._idle if now - w.idle_since >= self._idle_s]
        for worker in expired:
            self._idle.remove(worker)
            self._discard(worker)
        self._sweep = None
        self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        if self._sweep is None and self._idle:
            oldest = min(w.idle_since for w in self._idle)
            self._sweep = asyncio.get_running_loop().call_at(oldest + self._idle_s, self.stop_idle)

    async def _spawn(self) -> Worker:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(_python_path())}
        process = await asyncio.create_subprocess_exec(
            *self._args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        worker = Worker(process)
        try:
            kind, detail, _ = await worker.receive()
        except BaseException:
            self._discard(worker)
            raise
        if kind != "ready":
            self._discard(worker)
            raise JobFailed("unavailable", str(detail))
        return worker

    def _discard(self, worker: Worker) -> None:
        """Kill ``worker`` now and collect its exit status in the background."""
        worker.kill()
        task = asyncio.get_running_loop().create_task(worker.reap())
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def settle(self) -> None:
        """Wait until every worker killed so far has exited."""
        await asyncio.gather(*self._reaping)

    async def aclose(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        workers = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        await asyncio.gather(*(w.reap() for w in workers))
        await self.settle()


def _worker_args(gpu: int | None, memory_mb: int | None) -> Sequence[str]:
    args = [sys.executable, "-m", "app.esrgan.worker"]
    if gpu is not None:
        args += ["--gpu", str(gpu)]
    if memory_mb:
        args += ["--memory-mb", str(memory_mb)]
    return args


def _python_path() -> list[str]:
    current = os.environ.get("PYTHONPATH", "")
    return [_APP_ROOT, *(p for p in current.split(os.pathsep) if p)]
