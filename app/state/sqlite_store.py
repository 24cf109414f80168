"""The embedded default: one SQLite file under the data directory, large values as files
beside it. Every statement runs on one dedicated thread (never on the event loop); writes
that read first run in ``BEGIN IMMEDIATE`` transactions, so several worker processes
sharing the file stay atomic. Expiry is checked on read and swept by ``purge_expired``."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from app.state.base import Depth, Entry, Record, StateStore, Window, dump_record

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL);
CREATE TABLE IF NOT EXISTS records (
  log TEXT NOT NULL, at REAL NOT NULL, fields TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS records_log_at ON records (log, at);
CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, file TEXT NOT NULL, expires REAL);
CREATE TABLE IF NOT EXISTS queue (
  id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, item TEXT NOT NULL,
  consumer TEXT, touched REAL);
CREATE INDEX IF NOT EXISTS queue_by_consumer ON queue (queue, consumer);
"""
_LIVE = "(expires IS NULL OR expires > ?)"


class SQLiteStore(StateStore):
    kind = "sqlite"

    def __init__(self, data_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "state.sqlite3"
        self.blob_dir = data_dir / "blobs"
        self.clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-state")
        self._db: sqlite3.Connection | None = None
        self._enqueued = asyncio.Event()

    async def start(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process crash
        db.execute("PRAGMA busy_timeout=10000")
        db.executescript(_SCHEMA)
        self._db = db

    async def aclose(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(db, *args)`` inside one write transaction."""
        return await self._run(self._in_tx, fn, *args)

    def _in_tx(self, fn: Callable[..., T], *args: Any) -> T:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db, *args)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the SQLite state store is not started")
        return self._db

    def _expires(self, ttl_s: float | None) -> float | None:
        return None if ttl_s is None else self.clock() + ttl_s

    # ----------------------------------------------------------------- key-value with TTL
    async def get(self, key: str) -> bytes | None:
        return await self._run(self._get, self._conn(), key)

    def _get(self, db: sqlite3.Connection, key: str) -> bytes | None:
        row = db.execute(
            f"SELECT value FROM kv WHERE key = ? AND {_LIVE}", (key, self.clock())
        ).fetchone()
        return None if row is None else bytes(row[0])

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        await self._run(self._put, self._conn(), key, value, ttl_s)

    def _put(self, db: sqlite3.Connection, key: str, value: bytes, ttl: float | None) -> None:
        db.execute(
            "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?, ?, ?)",
            (key, value, self._expires(ttl)),
        )

    async def add(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        return await self._tx(self._add, key, value, ttl_s)

    def _add(self, db: sqlite3.Connection, key: str, value: bytes, ttl_s: float | None) -> bool:
        if self._get(db, key) is not None:
            return False
        self._put(db, key, value, ttl_s)
        return True

    async def replace(self, key: str, old: bytes, new: bytes, ttl_s: float | None = None) -> bool:
        return await self._tx(self._replace, key, old, new, ttl_s)

    def _replace(
        self, db: sqlite3.Connection, key: str, old: bytes, new: bytes, ttl_s: float | None
    ) -> bool:
        if self._get(db, key) != old:
            return False
        self._put(db, key, new, ttl_s)
        return True

    async def delete(self, key: str) -> bool:
        return await self._run(self._delete, key)

    def _delete(self, key: str) -> bool:
        cursor = self._conn().execute(
            f"DELETE FROM kv WHERE key = ? AND {_LIVE}", (key, self.clock())
        )
        return cursor.rowcount > 0

    # ------------------------------------------------------------------- atomic counters
    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        return await self._tx(self._incr, key, amount, ttl_s)

    def _incr(self, db: sqlite3.Connection, key: str, amount: int, ttl_s: float | None) -> int:
        row = db.execute(
            f"SELECT value, expires FROM kv WHERE key = ? AND {_LIVE}", (key, self.clock())
        ).fetchone()
        value = amount if row is None else int(row[0]) + amount
        if row is None:  # counters are ASCII digits, as Redis keeps them
            self._put(db, key, str(value).encode(), ttl_s)
        else:
            db.execute("UPDATE kv SET value = ? WHERE key = ?", (str(value).encode(), key))
        return value

    async def incr_window(self, key: str, window_s: float, amount: int = 1) -> Window:
        now = self.clock()
        index = int(now // window_s)
        current = await self.incr(f"{key}:{index}", amount, ttl_s=2 * window_s)
        previous = await self.get(f"{key}:{index - 1}")
        return Window(current, int(previous or 0), (index + 1) * window_s)

    # ----------------------------------------------------------- append-only record logs
    async def append(self, log: str, record: Mapping[str, Any], retention_s: float) -> float:
        at = self.clock()
        await self._run(
            self._conn().execute,
            "INSERT INTO records (log, at, fields, expires) VALUES (?, ?, ?, ?)",
            (log, at, dump_record(record), at + retention_s),
        )
        return at

    async def records(
        self, log: str, since: float, until: float | None = None, limit: int = 1000
    ) -> list[Record]:
        rows = await self._run(self._records, log, since, until, limit)
        return [Record(at, json.loads(fields)) for at, fields in rows]

    def _records(
        self, log: str, since: float, until: float | None, limit: int
    ) -> list[tuple[float, str]]:
        cursor = self._conn().execute(
            "SELECT at, fields FROM records WHERE log = ? AND at >= ? AND at < ? "
            "AND expires > ? ORDER BY at LIMIT ?",
            (log, since, float("inf") if until is None else until, self.clock(), limit),
        )
        return list(cursor.fetchall())

    # --------------------------------------------------------------------- large values
    def _file(self, key: str) -> Path:
        return self.blob_dir / hashlib.sha256(key.encode()).hexdigest()

    async def put_blob(self, key: str, data: bytes, ttl_s: float | None) -> None:
        await self._run(self._put_blob, key, data, ttl_s)

    def _put_blob(self, key: str, data: bytes, ttl_s: float | None) -> None:
        path = self._file(key)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)  # readers see the whole file or none
        self._conn().execute(
            "INSERT OR REPLACE INTO blobs (key, file, expires) VALUES (?, ?, ?)",
            (key, path.name, self._expires(ttl_s)),
        )

    async def get_blob(self, key: str) -> bytes | None:
        return await self._run(self._get_blob, key)

    def _get_blob(self, key: str) -> bytes | None:
        row = (
            self._conn()
            .execute(f"SELECT file FROM blobs WHERE key = ? AND {_LIVE}", (key, self.clock()))
            .fetchone()
        )
        if row is None:
            return None
        try:
            return (self.blob_dir / str(row[0])).read_bytes()
        except FileNotFoundError:
            return None

    async def delete_blob(self, key: str) -> None:
        await self._run(self._delete_blob, key)

    def _delete_blob(self, key: str) -> None:
        self._conn().execute("DELETE FROM blobs WHERE key = ?", (key,))
        self._file(key).unlink(missing_ok=True)

    # ------------------------------------------------------------------- a work queue
    async def enqueue(self, queue: str, item: str) -> str:
        cursor = await self._run(
            self._conn().execute, "INSERT INTO queue (queue, item) VALUES (?, ?)", (queue, item)
        )
        self._enqueued.set()
        return str(cursor.lastrowid)

    async def claim(
        self, queue: str, consumer: str, count: int, min_idle_s: float, block_s: float
    ) -> list[Entry]:
        entries = await self._tx(self._claim, queue, consumer, count, min_idle_s)
        if entries or block_s <= 0:
            return entries
        # Another process's enqueue is seen at the latest when the wait ends.
        self._enqueued.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._enqueued.wait(), block_s)
        return await self._tx(self._claim, queue, consumer, count, min_idle_s)

    def _claim(
        self, db: sqlite3.Connection, queue: str, consumer: str, count: int, min_idle_s: float
    ) -> list[Entry]:
        now = self.clock()
        rows = db.execute(
            "SELECT id, item FROM queue WHERE queue = ? AND "
            "(consumer IS NULL OR touched < ?) ORDER BY consumer IS NULL, id LIMIT ?",
            (queue, now - min_idle_s, count),
        ).fetchall()
        db.executemany(
            "UPDATE queue SET consumer = ?, touched = ? WHERE id = ?",
            [(consumer, now, row[0]) for row in rows],
        )
        return [Entry(str(row[0]), row[1]) for row in rows]

    async def claim_own(self, queue: str, consumer: str) -> list[Entry]:
        rows = await self._run(self._own, queue, consumer)
        await self.touch(queue, consumer, [str(row[0]) for row in rows])
        return [Entry(str(row[0]), row[1]) for row in rows]

    def _own(self, queue: str, consumer: str) -> list[tuple[int, str]]:
        cursor = self._conn().execute(
            "SELECT id, item FROM queue WHERE queue = ? AND consumer = ? ORDER BY id",
            (queue, consumer),
        )
        return list(cursor.fetchall())

    async def touch(self, queue: str, consumer: str, entry_ids: list[str]) -> None:
        if entry_ids:
            await self._run(self._touch, queue, consumer, entry_ids)

    def _touch(self, queue: str, consumer: str, entry_ids: list[str]) -> None:
        now = self.clock()
        self._conn().executemany(
            "UPDATE queue SET touched = ? WHERE id = ? AND queue = ? AND consumer = ?",
            [(now, int(i), queue, consumer) for i in entry_ids],
        )

    async def ack(self, queue: str, entry_id: str) -> None:
        await self._run(
            self._conn().execute,
            "DELETE FROM queue WHERE id = ? AND queue = ?",
            (int(entry_id), queue),
        )

    async def depth(self, queue: str) -> Depth:
        row = await self._run(self._depth, queue)
        return Depth(waiting=row[0] or 0, claimed=row[1] or 0)

    def _depth(self, queue: str) -> tuple[int, int]:
        cursor = self._conn().execute(
            "SELECT SUM(consumer IS NULL), SUM(consumer IS NOT NULL) FROM queue WHERE queue = ?",
            (queue,),
        )
        waiting, claimed = cursor.fetchone()
        return waiting, claimed

    # ------------------------------------------------------------------------- expiry
    async def purge_expired(self) -> int:
        return await self._run(self._purge)

    def _purge(self) -> int:
        db, now = self._conn(), self.clock()
        removed = db.execute("DELETE FROM kv WHERE expires <= ?", (now,)).rowcount
        removed += db.execute("DELETE FROM records WHERE expires <= ?", (now,)).rowcount
        files = db.execute("SELECT key, file FROM blobs WHERE expires <= ?", (now,)).fetchall()
        for key, name in files:
            db.execute("DELETE FROM blobs WHERE key = ?", (key,))
            (self.blob_dir / name).unlink(missing_ok=True)
        return removed + len(files)
