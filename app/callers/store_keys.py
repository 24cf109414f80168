"""Caller keys kept in the state store (one JSON document, the same shape as the key file),
for fleets whose replicas share a Redis: ``image-gateway keys --store create ...``."""

from __future__ import annotations

import json

from pydantic import ValidationError

from app.callers.keys import CallerKey, KeyFileError
from app.state import StateStore

DOC = "callers:keys"


async def load(store: StateStore) -> list[CallerKey]:
    raw = await store.get(DOC)
    if raw is None:
        return []
    try:
        return [CallerKey.model_validate(entry) for entry in json.loads(raw)["keys"]]
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise KeyFileError(f"the store's key document is not valid: {type(exc).__name__}") from None


async def save(store: StateStore, keys: list[CallerKey], previous: list[CallerKey]) -> bool:
    """Write ``keys`` if the document still holds ``previous`` (compare-and-set); False when
    someone else changed it meanwhile (load and try again)."""
    new = _dump(keys)
    current = await store.get(DOC)
    if current is None:
        return await store.add(DOC, new) if not previous else False
    return await store.replace(DOC, current, new) if _same(current, previous) else False


def _dump(keys: list[CallerKey]) -> bytes:
    doc = {"keys": [k.model_dump(mode="json", exclude_none=True) for k in keys]}
    return json.dumps(doc, separators=(",", ":")).encode()


def _same(current: bytes, previous: list[CallerKey]) -> bool:
    try:
        return [CallerKey.model_validate(e) for e in json.loads(current)["keys"]] == previous
    except (ValueError, KeyError, TypeError, ValidationError):
        return False
