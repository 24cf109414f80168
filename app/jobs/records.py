"""Jobs as stored: one JSON document per job (``job:<id>``), the request that started it
(``jobreq:<id>`` and, for upscales, the image as ``jobimg:<id>``), the result images
(``jobres:<id>:<n>``), and Idempotency-Key records (``idem:<owner>:<key>``).

Every status change is a compare-and-set on the whole document, so a cancel racing with a
start, or two replicas racing for one job, resolve to exactly one winner."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from app.state import StateStore

QUEUE = "jobs"
TERMINAL = frozenset({"succeeded", "failed", "canceled"})
Doc = dict[str, Any]


def new_job(operation: str, *, mode: str, timeout_s: float, owner: str | None, **extra: Any) -> Doc:
    now = time.time()
    return {
        "id": "job_" + uuid.uuid4().hex,
        "operation": operation,
        "status": "queued",
        "created_at": now,
        "updated_at": now,
        "attempts": 0,
        "mode": mode,
        "timeout_s": timeout_s,
        "owner": owner,
        **extra,
    }


def _dump(doc: Doc) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


class JobRepo:
    def __init__(self, store: StateStore, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s

    async def create(self, doc: Doc, request: bytes, image: bytes | None) -> None:
        """The request (and image) first, then the job: a job never points at nothing."""
        job_id = doc["id"]
        await self.store.put_blob(f"jobreq:{job_id}", request, self.ttl_s)
        if image is not None:
            await self.store.put_blob(f"jobimg:{job_id}", image, self.ttl_s)
        await self.store.set(f"job:{job_id}", _dump(doc), self.ttl_s)

    async def get(self, job_id: str) -> Doc | None:
        raw = await self.store.get(f"job:{job_id}")
        return None if raw is None else dict(json.loads(raw))

    async def update(self, job_id: str, change: Callable[[Doc], Doc | None]) -> Doc | None:
        """Apply ``change`` atomically (retried on a concurrent write). ``change`` returns
        the new document, or None to leave the job as it is; the result is the stored job
        after this call, or None when ``change`` declined (or the job is gone)."""
        for _ in range(50):
            raw = await self.store.get(f"job:{job_id}")
            if raw is None:
                return None
            new = change(json.loads(raw))
            if new is None:
                return None
            new["updated_at"] = time.time()
            if await self.store.replace(f"job:{job_id}", raw, _dump(new), self.ttl_s):
                return new
        raise RuntimeError(f"job {job_id}: too many concurrent updates")

    async def transition(self, job_id: str, allowed: frozenset[str], **fields: Any) -> Doc | None:
        """Set ``fields`` only while the status is one of ``allowed``."""

        def change(doc: Doc) -> Doc | None:
            return {**doc, **fields} if doc["status"] in allowed else None

        return await self.update(job_id, change)

    async def request(self, job_id: str) -> tuple[bytes | None, bytes | None]:
        return await self.store.get_blob(f"jobreq:{job_id}"), await self.store.get_blob(
            f"jobimg:{job_id}"
        )

    async def drop_request(self, job_id: str) -> None:
        """A finished job needs its request no more (the fingerprint stays on the job)."""
        await self.store.delete_blob(f"jobreq:{job_id}")
        await self.store.delete_blob(f"jobimg:{job_id}")

    async def save_images(self, job_id: str, images: list[bytes]) -> None:
        for index, data in enumerate(images):
            await self.store.put_blob(f"jobres:{job_id}:{index}", data, self.ttl_s)

    async def image(self, job_id: str, index: int) -> bytes | None:
        return await self.store.get_blob(f"jobres:{job_id}:{index}")

    async def claim_key(self, scope: str, fingerprint: str, job_id: str) -> Doc | None:
        """Bind an Idempotency-Key to ``job_id``; None when this call bound it, else the
        existing binding ``{"job", "fingerprint"}``."""
        key = f"idem:{scope}"
        binding = {"job": job_id, "fingerprint": fingerprint}
        if await self.store.add(key, _dump(binding), self.ttl_s):
            return None
        raw = await self.store.get(key)
        if raw is None:  # expired between the two calls: try once more
            return await self.claim_key(scope, fingerprint, job_id)
        return json.loads(raw)  # type: ignore[no-any-return]

    async def release_key(self, scope: str) -> None:
        await self.store.delete(f"idem:{scope}")
