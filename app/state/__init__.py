"""Shared, durable state: one small async interface, two implementations.

``open_store(settings.state)`` gives the store the settings ask for:

* ``SQLiteStore`` (the embedded default): ``<data_dir>/state.sqlite3`` plus large values as
  files in ``<data_dir>/blobs/``. One replica (its worker processes may share the file).
* ``RedisStore`` (``IMAGE_GATEWAY_STATE__URL=redis://host:6379/0``): for several replicas;
  every TTL is enforced by Redis itself.

What ``StateStore`` offers (``app/state/base.py``; every method is a coroutine):

* key-value with TTL: ``get``, ``set``, ``add`` (set if absent: locks, idempotency keys),
  ``replace`` (compare-and-set on the whole value: read-modify-write records), ``delete``;
* atomic counters: ``incr(key, amount, ttl_s)`` (the TTL is set when the counter is
  created: quotas, budgets) and ``incr_window(key, window_s)`` (epoch-aligned fixed windows,
  returning the current and previous window counts: rate limits shared across replicas,
  with ``Window.sliding()`` for a sliding estimate);
* append-only record logs with retention: ``append(log, record, retention_s)`` and
  ``records(log, since, until)`` (usage records, audit trails);
* large values with TTL: ``put_blob``, ``get_blob``, ``delete_blob`` (results);
* a work queue shared by replicas: ``enqueue``, ``claim`` (new entries, or entries whose
  holder stopped heartbeating for ``min_idle_s``: takeover), ``claim_own`` (a restarted
  process with the same consumer name), ``touch`` (heartbeat), ``ack``, ``depth``;
* ``purge_expired`` (SQLite sweeps expired rows and files; Redis expires keys itself).

Keys are plain strings namespaced by their user (``job:``, ``idem:``, ``rate:``); values
are bytes (JSON is the usual content). To extend the interface, add the abstract method to
``StateStore`` and implement it in both stores; ``tests/state`` runs one contract suite
against a real SQLite file and a real ``redis-server``, so a new method gets tested on both.
"""

from __future__ import annotations

import sqlite3

from redis.exceptions import RedisError

from app.settings import StateSettings
from app.state.base import Depth, Entry, Record, StateStore, Window
from app.state.redis_store import RedisStore
from app.state.sqlite_store import SQLiteStore

__all__ = [
    "STORE_ERRORS",
    "Depth",
    "Entry",
    "Record",
    "RedisStore",
    "SQLiteStore",
    "StateStore",
    "Window",
    "open_store",
]


#: What a store raises when its backend is unreachable or failing (translate at the edge).
STORE_ERRORS: tuple[type[Exception], ...] = (RedisError, sqlite3.Error, OSError)


def open_store(settings: StateSettings) -> StateStore:
    """The configured store, not yet started (call ``await store.start()``)."""
    if settings.url:
        return RedisStore(settings.url, prefix=settings.prefix)
    return SQLiteStore(settings.data_dir)
