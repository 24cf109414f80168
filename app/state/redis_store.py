"""The shared store for several replicas: Redis through redis-py's asyncio client.

Only Redis's own primitives: keys with ``PX`` expiry (Redis enforces every TTL), ``INCRBY``,
compare-and-set as a Lua script (atomic on the server), streams for record logs, and for
the work queue a stream with one consumer group: ``XREADGROUP`` hands an entry to one
replica, ``XCLAIM`` (``JUSTID``) is the heartbeat that keeps it idle-free, and
``XAUTOCLAIM`` lets another replica take over entries whose holder stopped beating.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from app.state.base import Depth, Entry, Record, StateStore, Window, dump_record

_GROUP = "workers"
_REPLACE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[2])
  else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
  return 1
end
return 0
"""
_INCR = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


def _ms(ttl_s: float | None) -> int | None:
    return None if ttl_s is None else max(1, math.ceil(ttl_s * 1000))


def _arg_ms(ttl_s: float | None) -> str:
    ms = _ms(ttl_s)
    return "" if ms is None else str(ms)


class RedisStore(StateStore):
    kind = "redis"

    def __init__(
        self, url: str, prefix: str = "image-gateway:", clock: Callable[[], float] = time.time
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.clock = clock
        # Typed Any: redis-py types every reply as a union over decode_responses (bytes here).
        self.redis: Any = aioredis.Redis.from_url(url, decode_responses=False)
        self._replace = self.redis.register_script(_REPLACE)
        self._incr = self.redis.register_script(_INCR)
        self._groups: set[str] = set()

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def start(self) -> None:
        await self.redis.ping()

    async def aclose(self) -> None:
        await self.redis.aclose()

    # ----------------------------------------------------------------- key-value with TTL
    async def get(self, key: str) -> bytes | None:
        value = await self.redis.get(self._k(key))
        return None if value is None else bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        await self.redis.set(self._k(key), value, px=_ms(ttl_s))

    async def add(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        return bool(await self.redis.set(self._k(key), value, px=_ms(ttl_s), nx=True))

    async def replace(self, key: str, old: bytes, new: bytes, ttl_s: float | None = None) -> bool:
        done = await self._replace(keys=[self._k(key)], args=[old, new, _arg_ms(ttl_s)])
        return bool(done)

    async def delete(self, key: str) -> bool:
        return bool(await self.redis.delete(self._k(key)))

    # ------------------------------------------------------------------- atomic counters
    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        return int(await self._incr(keys=[self._k(key)], args=[amount, _arg_ms(ttl_s)]))

    async def incr_window(self, key: str, window_s: float, amount: int = 1) -> Window:
        index = int(self.clock() // window_s)
        current = await self.incr(f"{key}:{index}", amount, ttl_s=2 * window_s)
        previous = await self.get(f"{key}:{index - 1}")
        return Window(current, int(previous or 0), (index + 1) * window_s)

    # ----------------------------------------------------------- append-only record logs
    async def append(self, log: str, record: Mapping[str, Any], retention_s: float) -> float:
        name = self._k("log:" + log)
        oldest = int((self.clock() - retention_s) * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(name, {"r": dump_record(record)}, minid=oldest, approximate=True)
            pipe.pexpire(name, _ms(retention_s) or 1)
            entry_id, _ = await pipe.execute()
        return _stream_time(entry_id)

    async def records(
        self, log: str, since: float, until: float | None = None, limit: int = 1000
    ) -> list[Record]:
        start = str(math.floor(since * 1000))
        end = "+" if until is None else str(math.ceil(until * 1000))
        rows = await self.redis.xrange(self._k("log:" + log), start, end, count=limit)
        found = [Record(_stream_time(i), json.loads(fields[b"r"])) for i, fields in rows]
        return [r for r in found if r.at >= since and (until is None or r.at < until)]

    # --------------------------------------------------------------------- large values
    async def put_blob(self, key: str, data: bytes, ttl_s: float | None) -> None:
        await self.set("blob:" + key, data, ttl_s)

    async def get_blob(self, key: str) -> bytes | None:
        return await self.get("blob:" + key)

    async def delete_blob(self, key: str) -> None:
        await self.delete("blob:" + key)

    # ------------------------------------------------------------------- a work queue
    async def _stream(self, queue: str) -> str:
        name = self._k("queue:" + queue)
        if name not in self._groups:
            try:
                await self.redis.xgroup_create(name, _GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._groups.add(name)
        return name

    async def enqueue(self, queue: str, item: str) -> str:
        entry_id = await self.redis.xadd(await self._stream(queue), {"item": item})
        return bytes(entry_id).decode()

    async def claim(
        self, queue: str, consumer: str, count: int, min_idle_s: float, block_s: float
    ) -> list[Entry]:
        name = await self._stream(queue)
        taken = await self._autoclaim(name, consumer, count, min_idle_s)
        if len(taken) >= count:
            return taken
        block = max(1, int(block_s * 1000)) if block_s > 0 else None
        reply = await self.redis.xreadgroup(
            _GROUP, consumer, {name: ">"}, count=count - len(taken), block=block
        )
        return taken + _entries(reply)

    async def _autoclaim(
        self, name: str, consumer: str, count: int, min_idle_s: float
    ) -> list[Entry]:
        """Entries idle for ``min_idle_s`` in anyone's pending list, scanned page by page."""
        cursor: Any = "0-0"
        taken: list[Entry] = []
        for _ in range(100):  # bounded: XAUTOCLAIM scans at most 10 x COUNT per call
            reply = await self.redis.xautoclaim(
                name, _GROUP, consumer, int(min_idle_s * 1000), cursor, count=count - len(taken)
            )
            cursor, rows = reply[0], reply[1]
            taken += [_entry(i, f) for i, f in rows if f]
            if len(taken) >= count or cursor in (b"0-0", "0-0"):
                break
        return taken

    async def claim_own(self, queue: str, consumer: str) -> list[Entry]:
        name = await self._stream(queue)
        reply = await self.redis.xreadgroup(_GROUP, consumer, {name: "0"}, count=10_000)
        entries = _entries(reply)
        await self.touch(queue, consumer, [e.id for e in entries])
        return entries

    async def touch(self, queue: str, consumer: str, entry_ids: list[str]) -> None:
        if entry_ids:
            name = await self._stream(queue)
            await self.redis.xclaim(name, _GROUP, consumer, 0, entry_ids, justid=True)

    async def ack(self, queue: str, entry_id: str) -> None:
        name = await self._stream(queue)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(name, _GROUP, entry_id)
            pipe.xdel(name, entry_id)
            await pipe.execute()

    async def depth(self, queue: str) -> Depth:
        name = await self._stream(queue)
        length = await self.redis.xlen(name)
        pending = await self.redis.xpending(name, _GROUP)
        claimed = int(pending["pending"])
        return Depth(waiting=max(0, length - claimed), claimed=claimed)


def _stream_time(entry_id: bytes | str) -> float:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-")[0]) / 1000


def _entry(entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    return Entry(bytes(entry_id).decode(), fields[b"item"].decode())


def _entries(reply: Any) -> list[Entry]:
    """XREADGROUP's ``[[stream, [(id, fields), ...]]]``; deleted entries come back empty."""
    return [_entry(i, f) for _, rows in reply or [] for i, f in rows if f]
