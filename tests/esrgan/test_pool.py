"""Worker processes: reuse, a job past its deadline or cancelled is killed (not left
burning a core), the memory cap, and bounded memory for a tiled job."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from app.esrgan.engine import Order
from app.esrgan.pool import JobFailed, WorkerGone, WorkerPool
from tests.esrgan.photos import encode, photo

pytestmark = pytest.mark.anyio


def order(data: bytes, model: str = "realesr-animevideov3", scale: float = 2) -> Order:
    return Order(data, model, scale, None, None, "png", None, 1 << 26)


def live_workers() -> list[int]:
    """This process's worker children that are still running (not exited or zombie)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == os.getpid() and b"app.esrgan.worker" in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


async def test_a_worker_is_reused_with_its_loaded_network() -> None:
    pool = WorkerPool()
    try:
        first = await pool.run(order(encode(photo(32, 24))), timeout=60)
        pids = pool.pids
        second = await pool.run(order(encode(photo(24, 32))), timeout=60)
        assert pool.pids == pids and len(pids) == 1
        assert (first.result.width, second.result.width) == (64, 48)
    finally:
        await pool.aclose()
    assert live_workers() == []


async def test_idle_workers_are_stopped_after_idle_s() -> None:
    pool = WorkerPool(idle_s=0)
    await pool.run(order(encode(photo(16, 16))), timeout=60)
    assert len(pool.pids) == 1
    pool.stop_idle()  # what the pool's timer calls once idle_s has passed
    assert pool.pids == []
    await pool.settle()
    assert live_workers() == []
    await pool.aclose()


async def test_a_job_past_its_deadline_is_killed() -> None:
    pool = WorkerPool()
    slow = order(encode(photo(200, 200)), "realesrgan-x4plus", 4)  # ~15 s of work
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await pool.run(slow, timeout=1.5)
    assert time.monotonic() - started < 5
    assert pool.pids == []
    await pool.settle()  # waits for the killed worker's exit (kills nothing itself)
    assert live_workers() == []


async def test_a_cancelled_job_is_killed() -> None:
    pool = WorkerPool()
    slow = order(encode(photo(200, 200)), "realesrgan-x4plus", 4)
    with pytest.raises(TimeoutError):  # wait_for cancels the job: a caller that went away
        await asyncio.wait_for(pool.run(slow, timeout=120), timeout=1.5)
    assert pool.pids == []
    await pool.settle()
    assert live_workers() == []


async def test_a_job_over_the_memory_cap_fails_alone() -> None:
    pool = WorkerPool(memory_mb=700)  # x4plus needs ~1.3 GB
    with pytest.raises((JobFailed, WorkerGone)) as caught:
        await pool.run(order(encode(photo(32, 32)), "realesrgan-x4plus", 4), timeout=60)
    if isinstance(caught.value, JobFailed):
        assert caught.value.kind in ("memory", "failed")
    await pool.aclose()
    assert live_workers() == []


async def test_a_tiled_job_runs_within_a_small_memory_cap() -> None:
    """A 512x320 photo goes through in strips; the worker's address space is capped at
    400 MB and its peak RSS stays near that of a tiny job."""
    pool = WorkerPool(memory_mb=400)
    try:
        tiny = await pool.run(order(encode(photo(32, 32))), timeout=60)
        large = await pool.run(order(encode(photo(512, 320))), timeout=120)
    finally:
        await pool.aclose()
    assert (large.result.width, large.result.height) == (1024, 640)
    assert large.peak_rss_bytes < 300 * 1024 * 1024
    assert large.peak_rss_bytes - tiny.peak_rss_bytes < 100 * 1024 * 1024
