"""The jobs layer around the gateway's service call: ``Prefer: respond-async`` / ``wait``,
``Idempotency-Key``, and the ``/v1/jobs`` resource. A request with neither header never
reaches this module (``app.api.operations`` checks two headers and goes on as before)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.callers.auth import ANONYMOUS, Callers, caller_key
from app.callers.keys import CallerKey
from app.callers.spend import providers_of
from app.domain import Job
from app.errors import (
    FieldError,
    IdempotencyConflict,
    IdempotencyMismatch,
    JobConflict,
    JobNotFound,
    QueueFull,
    UpstreamTimeout,
    ValidationFailed,
)
from app.jobs import answers, canonical, webhooks
from app.jobs import metrics as m
from app.jobs.headers import Preference
from app.jobs.records import QUEUE, TERMINAL, Doc, JobRepo, new_job
from app.jobs.runner import JobRunner
from app.lifecycle import Lifecycle
from app.record import record_of
from app.service import GatewayService, negotiate
from app.settings import Settings
from app.state import STORE_ERRORS, StateStore, open_store

log = logging.getLogger("image_gateway.jobs")
REPLAYED = {"idempotent-replayed": "true"}
#: A synchronous caller waits for its job this much past the job's own deadline.
_SYNC_SLACK_S = 5.0


class JobService:
    def __init__(
        self, settings: Settings, service: GatewayService, callers: Callers, life: Lifecycle
    ) -> None:
        self.settings, self.service, self.callers, self.life = settings, service, callers, life
        self.cfg = settings.jobs
        self.store: StateStore | None = None
        self.runner: JobRunner | None = None
        self.deliverer: webhooks.Deliverer | None = None
        self._lock = asyncio.Lock()
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------- lifecycle
    async def start_if_used(self) -> None:
        """At start-up: Redis always (other replicas may need this one); SQLite only when
        its file exists (jobs left by an earlier run), so a gateway never used for jobs
        never creates a data directory."""
        if self._store_exists():
            try:
                await self.ensure_started()
            except STORE_ERRORS as exc:  # Redis down at boot: serve, and keep trying
                log.error("jobs: the state store is unreachable (%s); retrying", exc)
                self._spawn(self._start_later())

    def _store_exists(self) -> bool:
        state = self.settings.state
        return bool(state.url) or (state.data_dir / "state.sqlite3").exists()

    async def _start_later(self) -> None:
        delay = 1.0
        while self.store is None:
            await asyncio.sleep(delay)
            with contextlib.suppress(*STORE_ERRORS):
                await self.ensure_started()
            delay = min(delay * 2, 30.0)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def ensure_started(self) -> JobRepo:
        async with self._lock:
            if self.store is None:
                store = open_store(self.settings.state)
                try:
                    await store.start()
                except BaseException:
                    await store.aclose()
                    raise
                self.store = store
                await self._start_runner(store)
        return JobRepo(self.store, self.cfg.result_ttl_s)

    async def _start_runner(self, store: StateStore) -> None:
        m.init()
        secret = self.cfg.webhook_secret
        if secret is not None:
            self.deliverer = webhooks.Deliverer(
                secret.get_secret_value(), self.cfg.webhook_retry_for_s, self.cfg.webhook_timeout_s
            )
        consumer = consumer_name(self.cfg.consumer, self.settings.workers)
        repo = JobRepo(store, self.cfg.result_ttl_s)
        self.runner = JobRunner(
            store, repo, self.service, self.cfg, self.life, consumer, self._finished, self._key
        )
        await self.runner.start()

    def _key(self, owner: str | None) -> CallerKey | None:
        return self.callers.ring.keys.get(owner) if owner else None

    async def aclose(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.deliverer is not None:
            await self.deliverer.aclose()
        if self.store is not None:
            await self.store.aclose()
            self.store = None

    # ------------------------------------------------------------------- submission
    async def submit(
        self,
        request: Request,
        job: Job,
        prefer: Preference | None,
        key: str | None,
        raw: bool = False,
    ) -> Response:
        """``raw``: a ``/bytes`` operation; its answer (first or replayed) is the image."""
        wants = negotiate(request.headers.get("accept"), job, raw)
        callback = self._callback(job, prefer)
        repo = await self.ensure_started()
        body, image = canonical.serialize(job)
        providers_of(caller_key(request), job)  # 403 now for a provider the key may not use
        asked = self.service._timeout(request)  # an invalid X-Request-Timeout is 400 here too
        timeout = self.cfg.timeout_s if prefer else asked
        doc = new_job(
            job.operation.value,
            mode="sync" if prefer is None else "async",
            timeout_s=timeout,
            owner=owner_of(request),
            accept=wants,
            callback_url=callback,
            request_id=record_of(request).request_id,
            raw=raw,
        )
        if key is not None:
            doc["idem_scope"] = _scope(request, key)
            existing = await self._bind_key(repo, request, key, body, image, doc)
            if existing is not None:
                return await self._repeat(repo, request, existing, prefer, raw)
        try:
            await self._enqueue(repo, doc, body, image)
        except BaseException:
            if key is not None:
                await repo.release_key(_scope(request, key))
            raise
        return await self._answer(repo, request, doc, prefer, {}, raw)

    def _callback(self, job: Job, prefer: Preference | None) -> str | None:
        url = job.params.callback_url
        if url is None:
            return None
        if prefer is None:
            raise ValidationFailed(
                "callback_url needs an asynchronous request (Prefer: respond-async)",
                errors=[FieldError(("body", "callback_url"), "needs Prefer: respond-async")],
            )
        webhooks.check_callback(url, self.cfg.webhook_allow, self.cfg.webhook_secret is not None)
        return url

    async def _bind_key(
        self,
        repo: JobRepo,
        request: Request,
        key: str,
        body: bytes,
        image: bytes | None,
        doc: Doc,
    ) -> Doc | None:
        """None when this request now owns ``key``, else the job of the earlier request.
        The earlier request binds the key before it writes its job, so a repeat that finds
        no job yet waits a moment for it (or takes the key over if it was released)."""
        fingerprint = canonical.fingerprint(body, image)
        doc["fingerprint"] = fingerprint
        delay = 0.005
        for _ in range(40):
            bound = await repo.claim_key(_scope(request, key), fingerprint, doc["id"])
            if bound is None:
                return None
            if bound["fingerprint"] != fingerprint:
                raise IdempotencyMismatch(
                    "this Idempotency-Key was used with a different request; use a new key"
                )
            existing = await repo.get(bound["job"])
            if existing is not None:
                return existing
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
        raise IdempotencyConflict("a request with this Idempotency-Key is starting", retry_after=1)

    async def _enqueue(self, repo: JobRepo, doc: Doc, body: bytes, image: bytes | None) -> None:
        assert self.store is not None
        depth = await self.store.depth(QUEUE)
        if depth.waiting >= self.cfg.max_queued:
            raise QueueFull(
                f"{depth.waiting} jobs are waiting (the limit is {self.cfg.max_queued})",
                retry_after=5,
            )
        await repo.create(doc, body, image)
        await self.store.enqueue(QUEUE, doc["id"])
        m.JOBS.labels(operation=doc["operation"], status="queued").inc()

    async def _repeat(
        self, repo: JobRepo, request: Request, doc: Doc, prefer: Preference | None, raw: bool
    ) -> Response:
        """The same key and the same request again: the stored answer, never a new call."""
        m.IDEMPOTENT_REPLAYS.labels(operation=doc["operation"]).inc()
        if prefer is None and doc["status"] not in TERMINAL:
            raise IdempotencyConflict(
                "a request with this Idempotency-Key is still being served; retry later",
                retry_after=1,
            )
        return await self._answer(repo, request, doc, prefer, REPLAYED, raw)

    async def _answer(
        self,
        repo: JobRepo,
        request: Request,
        doc: Doc,
        prefer: Preference | None,
        extra: dict[str, str],
        raw: bool,
    ) -> Response:
        if prefer is None:
            wait = doc["timeout_s"] + _SYNC_SLACK_S - (time.time() - doc["created_at"])
        else:
            wait = min(prefer.wait or 0.0, self.cfg.timeout_s)
        if wait > 0 and doc["status"] not in TERMINAL:
            doc = await self.wait_for(repo, doc["id"], wait) or doc
        if prefer is not None:
            extra = {**extra, "preference-applied": prefer.applied()}
        if doc["status"] in TERMINAL and (prefer is None or prefer.wait is not None):
            accept = request.headers.get("accept")
            return await answers.final_answer(repo, doc, accept, extra, raw)
        if prefer is None:
            raise UpstreamTimeout(f"job {doc['id']} did not finish within the request deadline")
        return answers.accepted(doc, extra)

    # ---------------------------------------------------------------------- waiting
    async def wait_for(self, repo: JobRepo, job_id: str, timeout: float) -> Doc | None:
        """The job once final or when ``timeout`` passes; a local finish wakes at once,
        one on another replica is seen by polling the store (50 ms doubling to 1 s)."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + timeout, 0.05
        event = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(event)
        try:
            while True:
                doc = await repo.get(job_id)
                left = deadline - loop.time()
                if doc is None or doc["status"] in TERMINAL or left <= 0:
                    return doc
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(delay, left))
                delay = min(delay * 2, 1.0)
        finally:
            waiters = self._waiters.get(job_id, set())
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(job_id, None)

    async def _finished(self, doc: Doc) -> None:
        for event in self._waiters.get(doc["id"], ()):
            event.set()
        if doc.get("callback_url") and self.deliverer is not None:
            self._spawn(self._deliver(doc))

    async def _deliver(self, doc: Doc) -> None:
        assert self.deliverer is not None and self.store is not None
        repo = JobRepo(self.store, self.cfg.result_ttl_s)

        async def record(attempt: dict[str, Any]) -> None:
            def change(current: Doc) -> Doc:
                return {**current, "deliveries": [*current.get("deliveries", []), attempt]}

            await repo.update(doc["id"], change)

        event = {"type": f"job.{doc['status']}", "timestamp": answers.resource(doc)["updated_at"]}
        event["data"] = answers.resource(doc)
        await self.deliverer.deliver(doc["callback_url"], "msg_" + doc["id"], event, record)

    # ------------------------------------------------------------------ /v1/jobs/{id}
    async def find(self, request: Request, job_id: str) -> tuple[JobRepo, Doc]:
        await authenticate(request)
        if self.store is None and not self._store_exists():
            raise JobNotFound(f"no job {job_id!r} (no job was ever submitted here)")
        repo = await self.ensure_started()
        doc = await repo.get(job_id) if job_id.startswith("job_") else None
        if doc is None or doc.get("owner") != owner_of(request):
            raise JobNotFound(f"no job {job_id!r} (unknown, or its results expired)")
        return repo, doc

    async def cancel(self, request: Request, job_id: str) -> Doc:
        repo, doc = await self.find(request, job_id)
        done = await repo.transition(job_id, frozenset({"queued", "running"}), status="canceled")
        if done is None:
            current = await repo.get(job_id) or doc
            raise JobConflict(f"job {job_id} is already {current['status']}")
        m.JOBS.labels(operation=done["operation"], status="canceled").inc()
        if self.runner is not None:
            self.runner.cancel_local(job_id)
        await self._finished(done)
        return done


def consumer_name(configured: str | None, workers: int) -> str:
    """This process's name in the job queue: stable across restarts (so a restarted process
    resumes its own jobs at once), unique among live processes. Worker processes of one
    server share the host name, so each adds its pid (a dead one's jobs are then taken over
    by its siblings when the lease lapses)."""
    name = configured or socket.gethostname()
    return name if workers == 1 else f"{name}-{os.getpid()}"


def owner_of(request: Request) -> str | None:
    """The caller key id that owns a job (``app.callers`` puts it in the request state);
    None when caller keys are off. A caller sees only its own jobs and its own keys."""
    caller = record_of(request).caller
    return None if caller in (None, ANONYMOUS) else caller


async def authenticate(request: Request) -> None:
    """The jobs routes need a valid caller key when keys are on (any key: a job is then
    found only by the key that submitted it)."""
    callers = request.app.state.callers
    record = record_of(request)
    if callers.enabled and record.caller is None:
        record.caller = (await callers.authenticate(request.headers)).id


def _scope(request: Request, key: str) -> str:
    return f"{owner_of(request) or '-'}:{key}"
