"""TTLs: SQLite with a driven clock (expiry on read, swept with the files); Redis with
Redis's own expiry (PTTL set on every key that has a TTL)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from app.state import RedisStore, SQLiteStore
from tests.conftest import FakeClock

pytestmark = pytest.mark.anyio


async def test_sqlite_ttl_and_sweep(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(tmp_path, clock=clock)
    await store.start()
    try:
        await store.set("k", b"v", ttl_s=10)
        await store.put_blob("b", b"x" * 1000, ttl_s=10)
        await store.incr("c", ttl_s=10)
        await store.append("log", {"a": 1}, retention_s=10)
        clock.advance(9)
        assert await store.get("k") == b"v"
        assert await store.get_blob("b") == b"x" * 1000
        clock.advance(2)
        assert await store.get("k") is None
        assert await store.get_blob("b") is None
        assert await store.add("k", b"new") is True
        assert await store.incr("c") == 1  # an expired counter starts again
        assert await store.records("log", since=0) == []
        assert len(list((tmp_path / "blobs").iterdir())) == 1
        assert await store.purge_expired() >= 2
        assert list((tmp_path / "blobs").iterdir()) == []
        assert await store.get("k") == b"new"
    finally:
        await store.aclose()


async def test_sqlite_windows_roll_over(tmp_path: Path) -> None:
    clock = FakeClock()
    clock.now = 3600.0 * 1000
    store = SQLiteStore(tmp_path, clock=clock)
    await store.start()
    try:
        for _ in range(3):
            await store.incr_window("r", 60)
        clock.advance(60)
        window = await store.incr_window("r", 60)
        assert (window.current, window.previous) == (1, 3)
        assert window.sliding(clock.now, 60) == pytest.approx(1 + 3)
        clock.advance(30)
        assert window.sliding(clock.now, 60) == pytest.approx(1 + 1.5)
    finally:
        await store.aclose()


async def test_sqlite_state_survives_reopen(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path)
    await first.start()
    await first.set("k", b"v")
    await first.enqueue("q", "item")
    await first.aclose()
    second = SQLiteStore(tmp_path)
    await second.start()
    try:
        assert await second.get("k") == b"v"
        assert (await second.depth("q")).waiting == 1
    finally:
        await second.aclose()


async def test_redis_enforces_ttls(redis_server: Any) -> None:
    prefix = f"test-{uuid.uuid4().hex}:"
    store = RedisStore(redis_server.url, prefix=prefix)
    raw = aioredis.Redis.from_url(redis_server.url)
    await store.start()
    try:
        await store.set("k", b"v", ttl_s=30)
        await store.put_blob("b", b"x", ttl_s=30)
        await store.incr("c", ttl_s=30)
        await store.incr("c", ttl_s=30)
        await store.replace("k", b"v", b"w", ttl_s=40)
        for key in ("k", "blob:b", "c"):
            assert 0 < await raw.pttl(prefix + key) <= 40_000
        await store.set("gone", b"v", ttl_s=0.001)
        while await raw.exists(prefix + "gone"):  # Redis expires it itself
            await raw.ping()
        assert await store.get("gone") is None
        await store.incr("forever")
        assert await raw.pttl(prefix + "forever") == -1
    finally:
        await raw.aclose()
        await store.aclose()
