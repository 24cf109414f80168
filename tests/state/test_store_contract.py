"""One contract, two real backends: a SQLite file in a temporary directory and a real
redis-server. Every method of ``StateStore`` is exercised on both."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.state import RedisStore, SQLiteStore, StateStore

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "redis"])
async def store(request: Any, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "sqlite":
        backend: StateStore = SQLiteStore(tmp_path / "data")
    else:
        server = request.getfixturevalue("redis_server")
        backend = RedisStore(server.url, prefix=f"test-{uuid.uuid4().hex}:")
    await backend.start()
    yield backend
    await backend.aclose()


async def test_key_value(store: StateStore) -> None:
    assert await store.get("a") is None
    await store.set("a", b"1")
    assert await store.get("a") == b"1"
    assert await store.add("a", b"2") is False
    assert await store.add("b", b"2") is True
    assert await store.get("b") == b"2"
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    assert await store.get("a") is None


async def test_compare_and_set(store: StateStore) -> None:
    await store.set("doc", b'{"v":1}')
    assert await store.replace("doc", b'{"v":0}', b'{"v":2}') is False
    assert await store.get("doc") == b'{"v":1}'
    assert await store.replace("doc", b'{"v":1}', b'{"v":2}', ttl_s=60) is True
    assert await store.get("doc") == b'{"v":2}'
    assert await store.replace("missing", b"x", b"y") is False
    assert await store.get("missing") is None


async def test_add_is_atomic_under_concurrency(store: StateStore) -> None:
    wins = await asyncio.gather(*(store.add("lock", str(i).encode(), 60) for i in range(20)))
    assert wins.count(True) == 1


async def test_counters(store: StateStore) -> None:
    results = await asyncio.gather(*(store.incr("n", 2, ttl_s=60) for _ in range(10)))
    assert sorted(results) == list(range(2, 21, 2))
    assert await store.get("n") == b"20"
    assert await store.incr("n", -5) == 15


async def test_windowed_counter(store: StateStore) -> None:
    first = await store.incr_window("rate:k", window_s=3600)
    second = await store.incr_window("rate:k", window_s=3600, amount=4)
    assert (first.current, second.current) == (1, 5)
    assert second.previous == 0
    assert second.resets_at % 3600 == 0


async def test_records(store: StateStore) -> None:
    import time

    before = time.time() - 1
    for i in range(5):
        await store.append("usage:k1", {"i": i, "cost": 0.5}, retention_s=3600)
    await store.append("usage:k2", {"i": 99}, retention_s=3600)
    found = await store.records("usage:k1", since=before)
    assert [r.fields["i"] for r in found] == [0, 1, 2, 3, 4]
    assert all(r.at >= before for r in found)
    assert [r.fields["i"] for r in await store.records("usage:k1", before, limit=2)] == [0, 1]
    assert await store.records("usage:k1", since=time.time() + 10) == []
    assert await store.records("usage:k1", since=before, until=before + 0.5) == []


async def test_blobs(store: StateStore) -> None:
    data = bytes(range(256)) * 4000
    await store.put_blob("result:1", data, ttl_s=60)
    assert await store.get_blob("result:1") == data
    await store.delete_blob("result:1")
    assert await store.get_blob("result:1") is None


async def test_queue_hands_each_entry_to_one_consumer(store: StateStore) -> None:
    ids = [await store.enqueue("jobs", f"job-{i}") for i in range(6)]
    assert len(set(ids)) == 6
    assert await store.depth("jobs") == type(await store.depth("jobs"))(6, 0)
    a = await store.claim("jobs", "a", count=4, min_idle_s=60, block_s=0)
    b = await store.claim("jobs", "b", count=4, min_idle_s=60, block_s=0)
    assert [e.item for e in a] == ["job-0", "job-1", "job-2", "job-3"]
    assert [e.item for e in b] == ["job-4", "job-5"]
    depth = await store.depth("jobs")
    assert (depth.waiting, depth.claimed) == (0, 6)
    await store.ack("jobs", a[0].id)
    assert (await store.depth("jobs")).claimed == 5
    assert await store.claim("jobs", "c", count=4, min_idle_s=60, block_s=0) == []


async def test_queue_takeover_after_the_holder_stops_beating(store: StateStore) -> None:
    await store.enqueue("jobs", "j1")
    await store.enqueue("jobs", "j2")
    held = await store.claim("jobs", "dead", count=2, min_idle_s=60, block_s=0)
    assert len(held) == 2
    await store.touch("jobs", "dead", [held[1].id])
    # min_idle 0: anything not touched "just now" is taken over; the ordering is stable.
    taken = await store.claim("jobs", "alive", count=1, min_idle_s=0, block_s=0)
    assert len(taken) == 1 and taken[0].item in ("j1", "j2")
    assert await store.claim("jobs", "other", count=5, min_idle_s=3600, block_s=0) == []


async def test_claim_own_after_restart(store: StateStore) -> None:
    await store.enqueue("jobs", "j1")
    await store.enqueue("jobs", "j2")
    await store.claim("jobs", "host-1", count=1, min_idle_s=60, block_s=0)
    own = await store.claim_own("jobs", "host-1")
    assert [e.item for e in own] == ["j1"]
    assert await store.claim_own("jobs", "host-2") == []


async def test_claim_blocks_until_an_entry_arrives(store: StateStore) -> None:
    waiter = asyncio.create_task(store.claim("jobs", "w", count=1, min_idle_s=60, block_s=10))
    await store.enqueue("jobs", "late")
    entries = await asyncio.wait_for(waiter, 10)
    assert [e.item for e in entries] == ["late"]
