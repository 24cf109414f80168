"""Running jobs from the shared queue, on whichever replica claims them.

Crash safety, in order: the job is written (status ``running``) before the vendor is
called; a vendor's own job handle (Deep-Image's hash) is written the moment it is known;
the queue entry is acknowledged only once the job has a final status. A process that dies
leaves its entries claimed: the same process name picks them up at restart
(``claim_own``), any other replica once the heartbeat lease lapses (``claim``). A job found
``running`` is resumed at the vendor when it has a handle, and otherwise failed as
``job_interrupted``: the vendor may already have done (and billed) the work, so it is never
sent again silently. On drain no new entry is claimed; running jobs count as in-flight work
for the grace period, and those still running at its end are handed over unacknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from app.callers.keys import CallerKey
from app.domain import CallContext, Job, Outcome
from app.errors import GatewayError, InternalError, JobInterrupted, problem_body
from app.jobs import canonical
from app.jobs import metrics as m
from app.jobs.records import QUEUE, TERMINAL, Doc, JobRepo
from app.lifecycle import Lifecycle
from app.service import GatewayService
from app.settings import JobsSettings
from app.state import Entry, StateStore

log = logging.getLogger("image_gateway.jobs")
Finished = Callable[[Doc], Awaitable[None]]
#: The caller key a job's owner id stands for (None: keys are off, or it is gone).
KeyLookup = Callable[[str | None], CallerKey | None]


class JobRunner:
    def __init__(
        self,
        store: StateStore,
        repo: JobRepo,
        service: GatewayService,
        settings: JobsSettings,
        life: Lifecycle,
        consumer: str,
        on_finished: Finished,
        key_for: KeyLookup,
    ) -> None:
        self.store, self.repo, self.service = store, repo, service
        self.key_for = key_for
        self.settings, self.life, self.consumer = settings, life, consumer
        self.on_finished = on_finished
        self._slots = asyncio.Semaphore(settings.max_running)
        self._running: dict[str, tuple[str, asyncio.Task[None]]] = {}  # entry id -> job, task
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        for entry in await self.store.claim_own(QUEUE, self.consumer):
            await self._slots.acquire()
            self._spawn(entry)
        self._tasks = [asyncio.create_task(self._claim_loop()), asyncio.create_task(self._beat())]

    async def stop(self) -> None:
        """Hand over what still runs: cancelled here, left unacknowledged in the queue."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        running = [task for _, task in self._running.values()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    # ---------------------------------------------------------------------- claiming
    async def _claim_loop(self) -> None:
        while not self._stopping:
            if self.life.draining:
                return
            await self._slots.acquire()
            try:
                entries = await self.store.claim(
                    QUEUE, self.consumer, 1, self.settings.lease_s, block_s=1.0
                )
            except Exception:
                self._slots.release()
                log.exception("jobs: claiming from the queue failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if not entries:
                self._slots.release()
                continue
            self._spawn(entries[0])

    def _spawn(self, entry: Entry) -> None:
        task = asyncio.create_task(self._run(entry))
        self._running[entry.id] = (entry.item, task)

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(entry.id, None)
            self._slots.release()

        task.add_done_callback(done)

    async def _beat(self) -> None:
        """Heartbeat the held entries, abandon jobs canceled elsewhere, export the depth."""
        while not self._stopping:
            await asyncio.sleep(self.settings.lease_s / 3)
            with contextlib.suppress(Exception):
                await self.beat_once()

    async def beat_once(self) -> None:
        held = dict(self._running)
        await self.store.touch(QUEUE, self.consumer, list(held))
        for job_id, task in held.values():
            doc = await self.repo.get(job_id)
            if doc is not None and doc["status"] == "canceled":
                task.cancel()
        depth = await self.store.depth(QUEUE)
        m.QUEUE_DEPTH.labels(state="waiting").set(depth.waiting)
        m.QUEUE_DEPTH.labels(state="claimed").set(depth.claimed)

    def cancel_local(self, job_id: str) -> None:
        for held_job, task in list(self._running.values()):
            if held_job == job_id:
                task.cancel()

    # ----------------------------------------------------------------------- running
    async def _run(self, entry: Entry) -> None:
        self.life.enter()
        try:
            await self._process(entry.item)
        except asyncio.CancelledError:
            if self._stopping:
                raise  # handed over: the entry stays in the queue for another process
        except Exception:
            log.exception("jobs: job %s failed unexpectedly", entry.item)
        finally:
            self.life.leave()
        await self.store.ack(QUEUE, entry.id)

    async def _process(self, job_id: str) -> None:
        doc = await self.repo.get(job_id)
        if doc is None or doc["status"] in TERMINAL:
            return
        resume = doc.get("vendor") if doc["status"] == "running" else None
        if doc["status"] == "running" and resume is None:
            m.RESUMED.labels(outcome="interrupted").inc()
            await self._finish_failed(doc, _interrupted(doc), None)
            return
        started = await self.repo.transition(
            job_id, frozenset({"queued", "running"}), status="running", attempts=doc["attempts"] + 1
        )
        if started is None:  # canceled before it started: the vendor never sees it
            return
        if resume is not None:
            m.RESUMED.labels(outcome="resumed").inc()
        await self._execute(started, resume)

    async def _execute(self, doc: Doc, resume: dict[str, str] | None) -> None:
        job = await self._restore(doc)
        if resume is not None:  # the vendor already has it: the same provider, no fallback
            job.params.provider = resume["provider"]  # type: ignore[assignment]
            job.params.fallback = False
        key = self.key_for(doc.get("owner"))
        ctx: CallContext | None = None
        try:
            ctx = self._context(doc, job, key, resume)
            outcome = await self.service.router.run(job, ctx)
            cost = await self.service.settle(key, job, outcome, ctx)
        except GatewayError as exc:
            await self.service.release(ctx)  # a failed call spends nothing of the key's budget
            await self._finish_failed(doc, exc, ctx)
        except Exception:  # CancelledError (a cancel, a hand-over) is not an Exception
            log.exception("jobs: job %s raised", doc["id"])
            await self.service.release(ctx)
            await self._finish_failed(doc, InternalError("the job failed unexpectedly"), ctx)
        except asyncio.CancelledError:
            await asyncio.shield(self.service.release(ctx))
            raise
        else:
            await self._finish_ok(doc, outcome, ctx, cost.as_dict())

    async def _restore(self, doc: Doc) -> Job:
        body, image = await self.repo.request(doc["id"])
        if body is None:
            raise RuntimeError(f"job {doc['id']}: its request has expired")
        return canonical.restore(body, image)

    def _context(
        self, doc: Doc, job: Job, key: CallerKey | None, resume: dict[str, str] | None
    ) -> CallContext:
        """The synchronous call's context (the key's providers and budgets), plus the hooks
        that make the vendor's job handle durable."""
        left = doc["created_at"] + doc["timeout_s"] - time.time()
        ctx = self.service.context(key, job, doc["request_id"], max(left, 0.001), [])
        ctx.wants_bytes = doc.get("accept") is not None

        async def on_vendor_job(provider: str, handle: str) -> None:
            vendor = {"provider": provider, "handle": handle}
            await self.repo.transition(doc["id"], frozenset({"running"}), vendor=vendor)

        ctx.on_vendor_job = on_vendor_job
        ctx.resume = None if resume is None else {resume["provider"]: resume["handle"]}
        return ctx

    async def _finish_ok(
        self, doc: Doc, outcome: Outcome, ctx: CallContext, cost: dict[str, Any]
    ) -> None:
        images = outcome.result.images
        await self.repo.save_images(doc["id"], [image.as_bytes() for image in images])
        result = {
            "images": [
                {"mime_type": i.mime_type, "width": i.width, "height": i.height} for i in images
            ],
            "warnings": outcome.warnings,
            "timing": {
                "upstream_ms": round(outcome.upstream_seconds * 1000, 2),
                "total_ms": round((time.time() - doc["created_at"]) * 1000, 2),
            },
            "attempt_labels": _labels(ctx),
            "cost": cost,
        }
        fields = {"provider": outcome.provider, "model": outcome.result.model, "result": result}
        await self._final(doc, "succeeded", fields)

    async def _finish_failed(self, doc: Doc, error: GatewayError, ctx: CallContext | None) -> None:
        fields: dict[str, Any] = {
            "error": problem_body(error, doc["request_id"]),
            "retry_after": error.retry_after,
            "result": {"attempt_labels": _labels(ctx) if ctx else ""},
        }
        if error.provider:
            fields["provider"] = error.provider
        await self._final(doc, "failed", fields)
        if error.status in (429, 503) and doc.get("idem_scope"):
            # Rate limited or nothing available: no vendor did the work, so the key is
            # released and a retry with it runs again (docs/jobs.md).
            await self.repo.release_key(doc["idem_scope"])

    async def _final(self, doc: Doc, status: str, fields: dict[str, Any]) -> None:
        done = await self.repo.transition(
            doc["id"], frozenset({"running"}), status=status, **fields
        )
        if done is None:  # canceled meanwhile: the result is dropped, as the caller asked
            return
        await self.repo.drop_request(doc["id"])
        m.JOBS.labels(operation=done["operation"], status=status).inc()
        m.JOB_AGE.labels(operation=done["operation"], status=status).observe(
            done["updated_at"] - done["created_at"]
        )
        await self.on_finished(done)


def _labels(ctx: CallContext) -> str:
    return ", ".join(a.label() for a in ctx.attempts)


def _interrupted(doc: Doc) -> GatewayError:
    return JobInterrupted(
        "the gateway stopped while this job was calling the vendor, and the call cannot be "
        "resumed; it was not sent again because the vendor may already have charged for it. "
        "Submit it again (with a new Idempotency-Key) to retry."
    )
