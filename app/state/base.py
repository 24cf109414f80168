"""The state-store interface: what every implementation offers (see ``app.state``)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Window:
    """A fixed-window counter after an increment: the count in the current window, the
    count of the window before it (for a sliding-window estimate), and when this one ends."""

    current: int
    previous: int
    resets_at: float

    def sliding(self, now: float, window_s: float) -> float:
        """The usual sliding-window estimate: the previous window weighted by the share of
        it that still overlaps the last ``window_s`` seconds."""
        overlap = max(0.0, min(1.0, (self.resets_at - now) / window_s))
        return self.current + self.previous * overlap


@dataclass(frozen=True)
class Record:
    """One appended record: when the store accepted it (epoch seconds) and its fields."""

    at: float
    fields: dict[str, Any]


@dataclass(frozen=True)
class Entry:
    """A queue entry handed to one consumer: its id in the queue and the item enqueued."""

    id: str
    item: str


@dataclass(frozen=True)
class Depth:
    """Queue entries not yet handed to anyone, and entries held by a consumer (running)."""

    waiting: int
    claimed: int


def dump_record(record: Mapping[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


class StateStore(ABC):
    """Async, shared, TTL'd state. Keys are plain strings; a caller namespaces its own
    (``job:``, ``idem:``, ``rate:``...). ``ttl_s=None`` means "until deleted"."""

    kind: str

    async def start(self) -> None:
        """Connect / create the schema; called once before use."""

    @abstractmethod
    async def aclose(self) -> None: ...

    # ----------------------------------------------------------------- key-value with TTL
    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None: ...

    @abstractmethod
    async def add(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        """Set only when absent (or expired); True when this call created it."""

    @abstractmethod
    async def replace(self, key: str, old: bytes, new: bytes, ttl_s: float | None = None) -> bool:
        """Compare-and-set: write ``new`` only if the value is still ``old``."""

    @abstractmethod
    async def delete(self, key: str) -> bool: ...

    # ------------------------------------------------------------------- atomic counters
    @abstractmethod
    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        """Add ``amount`` atomically and return the new value; a counter that did not exist
        (or expired) starts at 0 and gets ``ttl_s`` (the TTL is not extended later)."""

    @abstractmethod
    async def incr_window(self, key: str, window_s: float, amount: int = 1) -> Window:
        """Add ``amount`` to the counter of the current fixed window of ``window_s`` seconds
        (windows aligned to the epoch, so every replica agrees on them)."""

    # ----------------------------------------------------------- append-only record logs
    @abstractmethod
    async def append(self, log: str, record: Mapping[str, Any], retention_s: float) -> float:
        """Append a JSON-able record to ``log``; records older than ``retention_s`` may be
        dropped. Returns the time the store gave it."""

    @abstractmethod
    async def records(
        self, log: str, since: float, until: float | None = None, limit: int = 1000
    ) -> list[Record]:
        """Records of ``log`` with ``since <= at < until``, oldest first, at most ``limit``."""

    # --------------------------------------------------------------------- large values
    @abstractmethod
    async def put_blob(self, key: str, data: bytes, ttl_s: float | None) -> None: ...

    @abstractmethod
    async def get_blob(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def delete_blob(self, key: str) -> None: ...

    # ------------------------------------------------------------------- a work queue
    @abstractmethod
    async def enqueue(self, queue: str, item: str) -> str:
        """Append ``item``; returns the entry id."""

    @abstractmethod
    async def claim(
        self, queue: str, consumer: str, count: int, min_idle_s: float, block_s: float
    ) -> list[Entry]:
        """Up to ``count`` entries for ``consumer``: first entries another consumer has held
        without a ``touch`` for ``min_idle_s`` (its process died), then new ones; waits up
        to ``block_s`` when there are none."""

    @abstractmethod
    async def claim_own(self, queue: str, consumer: str) -> list[Entry]:
        """Entries still held by ``consumer`` (a restarted process with the same name)."""

    @abstractmethod
    async def touch(self, queue: str, consumer: str, entry_ids: list[str]) -> None:
        """Heartbeat: the consumer still works on these entries."""

    @abstractmethod
    async def ack(self, queue: str, entry_id: str) -> None:
        """The entry is done; it leaves the queue."""

    @abstractmethod
    async def depth(self, queue: str) -> Depth: ...

    async def purge_expired(self) -> int:
        """Delete what has expired; stores whose backend expires keys itself do nothing."""
        return 0
