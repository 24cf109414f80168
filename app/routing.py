"""Choosing providers and surviving their failures: selection, retries with jittered
backoff, fallback, one circuit breaker and one bulkhead per provider, and the deadline.

Time is injected (``clock``, ``sleep``, ``rand``) so tests drive it instead of waiting.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from app import metrics
from app.domain import Attempt, CallContext, Job, Outcome, PreparedCall, ProviderResult
from app.errors import (
    FieldError,
    Forbidden,
    GatewayError,
    ProviderNotConfigured,
    ProviderUnavailable,
    ValidationFailed,
)
from app.providers.base import Provider, size_notes
from app.providers.registry import ENABLE_HINTS
from app.settings import BulkheadSettings, CircuitSettings, RetrySettings, Settings

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
_STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
#: Vendor failures after which another provider may serve the request.
_FALLBACK_STATUSES = frozenset({429, 502, 503, 504})


class CircuitBreaker:
    """Opens when the failure ratio over ``window_s`` reaches ``failure_ratio`` with at least
    ``min_requests`` calls; after ``cooldown_s`` lets one probe through (half-open); the
    probe's outcome closes or re-opens it."""

    def __init__(self, provider: str, settings: CircuitSettings, clock: Clock) -> None:
        self.provider = provider
        self._cfg = settings
        self._clock = clock
        # One-second buckets [second, calls, failures] with running totals: O(1) per call and
        # memory bounded by the window, whatever the request rate.
        self._buckets: deque[list[int]] = deque()
        self._total = 0
        self._failed = 0
        self._state = CLOSED
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> str:
        self.refresh()
        return self._state

    def refresh(self) -> None:
        """Move from open to half-open once the cool-down has passed."""
        if self._state == OPEN and self._clock() - self._opened_at >= self._cfg.cooldown_s:
            self._set(HALF_OPEN)

    def retry_after(self) -> float:
        return max(0.0, self._cfg.cooldown_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May a call go through now? In half-open state only one probe at a time."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record(self, ok: bool) -> None:
        now = self._clock()
        if self._state == HALF_OPEN:
            self._probing = False
            self._forget()
            self._trip(now) if not ok else self._set(CLOSED)
            return
        self._count(now, ok)
        if (
            self._total >= self._cfg.min_requests
            and self._failed / self._total >= self._cfg.failure_ratio
        ):
            self._trip(now)

    def _count(self, now: float, ok: bool) -> None:
        second = int(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += not ok
        self._total += 1
        self._failed += not ok
        horizon = now - self._cfg.window_s
        while self._buckets and self._buckets[0][0] + 1 <= horizon:
            _, calls, failed = self._buckets.popleft()
            self._total -= calls
            self._failed -= failed

    def _forget(self) -> None:
        self._buckets.clear()
        self._total = self._failed = 0

    def _trip(self, now: float) -> None:
        self._opened_at = now
        self._forget()
        self._set(OPEN)

    def _set(self, state: str) -> None:
        self._state = state
        metrics.CIRCUIT_STATE.labels(provider=self.provider).set(_STATE_VALUE[state])


class Bulkhead:
    """At most ``max_inflight`` calls to one provider; a short bounded wait, then 503."""

    def __init__(self, provider: str, settings: BulkheadSettings) -> None:
        self.provider = provider
        self._max_wait = settings.max_wait_s
        self._slots = asyncio.Semaphore(settings.max_inflight)

    async def acquire(self, deadline_left: float, count: int = 1) -> None:
        """``count`` slots (a request that fans out into several vendor calls holds one
        per call), within one bounded wait; on timeout none is kept."""
        held = 0
        try:
            for _ in range(count):
                await self._acquire_one(deadline_left)
                held += 1
        except BaseException:
            self.release(held)
            raise

    async def _acquire_one(self, deadline_left: float) -> None:
        if not self._slots.locked():  # the common case: no wait_for task per call
            await self._slots.acquire()
            return
        try:
            await asyncio.wait_for(
                self._slots.acquire(), timeout=min(self._max_wait, max(deadline_left, 0))
            )
        except TimeoutError:
            metrics.BULKHEAD_REJECTIONS.labels(provider=self.provider).inc()
            raise ProviderUnavailable(
                f"{self.provider} has too many calls in flight",
                provider=self.provider,
                retry_after=1,
                retryable=False,
                reason="saturated",
            ) from None

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self._slots.release()


@dataclass
class _Walk:
    """What happened to each candidate while walking the routing list."""

    attempts: list[Attempt] = field(default_factory=list)
    refusals: list[FieldError] = field(default_factory=list)
    unavailable: list[GatewayError] = field(default_factory=list)
    last_error: GatewayError | None = None
    #: One candidate only: its refusal or failure is the answer (no walking on).
    alone: bool = False
    #: Why each skipped candidate was passed over, for the answer's warnings.
    skips: list[str] = field(default_factory=list)

    @property
    def upstream_seconds(self) -> float:
        return sum(a.seconds for a in self.attempts)

    def skip(self, pid: str, why: str, detail: str) -> None:
        """A candidate passed over without a call: in the attempts header and warnings."""
        self.attempts.append(Attempt(pid, f"skipped:{why}", 0.0))
        self.skips.append(f"{pid} skipped: {detail}")


class Router:
    def __init__(
        self,
        settings: Settings,
        providers: dict[str, Provider],
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.providers = providers
        self._routing = settings.routing
        self._retry: RetrySettings = settings.retry
        self._clock, self._sleep, self._rand = clock, sleep, rand
        self.circuits = {p: CircuitBreaker(p, settings.circuit, clock) for p in providers}
        self.bulkheads = {p: Bulkhead(p, settings.bulkhead) for p in providers}

    # ------------------------------------------------------------------ selection

    def candidates(self, job: Job) -> list[str]:
        """Provider ids to try, in order (configured or not; ``run`` explains skips)."""
        op = job.operation
        order = list(self._routing.upscale if op == "upscale" else self._routing.generate)
        explicit = job.params.provider
        if explicit is None:
            return order
        if not job.params.fallback:
            return [explicit]
        return [explicit, *[p for p in order if p != explicit]]

    async def run(self, job: Job, ctx: CallContext) -> Outcome:
        candidates = allowed(self.candidates(job), ctx.allowed_providers, set(self.providers))
        walk = _Walk(attempts=ctx.attempts, alone=len(candidates) == 1)
        for index, pid in enumerate(candidates):
            result = await self._try_provider(pid, job, ctx, walk)
            if result is not None:
                result.warnings.extend(size_notes(pid, job, result))
                return self._outcome(pid, result, walk)
            nxt = candidates[index + 1] if index + 1 < len(candidates) else None
            last = walk.attempts[-1] if walk.attempts else None
            if nxt is not None and last is not None and last.provider == pid and not last.skipped:
                metrics.FALLBACKS.labels(from_provider=pid, to_provider=nxt).inc()
        raise self._nothing_served(job, candidates, walk)

    async def _try_provider(
        self, pid: str, job: Job, ctx: CallContext, walk: _Walk
    ) -> ProviderResult | None:
        provider = self.providers.get(pid)
        if provider is None:
            walk.skip(pid, "not_configured", f"not configured (set {ENABLE_HINTS[pid]})")
            return None
        if job.operation not in provider.operations:
            walk.skip(pid, "unsupported", f"it does not {job.operation}")
            return None
        call = await self._prepare(provider, job, walk)
        if call is None:
            return None
        if ctx.before_call is not None:
            await ctx.before_call(call)
        circuit = self.circuits[pid]
        if ctx.dry_run and circuit.state != OPEN:
            return ProviderResult(
                images=[], model=call.model, warnings=list(call.warnings), headers=call.headers
            )
        if ctx.dry_run or not circuit.allow():
            wait = circuit.retry_after() or 1
            walk.unavailable.append(
                ProviderUnavailable(
                    f"{pid} is failing; its circuit is open", provider=pid, retry_after=wait
                )
            )
            walk.skip(pid, "circuit_open", f"its circuit is open (failing; retry in {wait:.0f} s)")
            return None
        try:
            return await self._attempts(provider, call, ctx, walk)
        except GatewayError as exc:
            walk.last_error = exc
            if exc.status in _FALLBACK_STATUSES and not walk.alone:
                return None
            raise

    async def _prepare(self, provider: Provider, job: Job, walk: _Walk) -> PreparedCall | None:
        await provider.refresh_catalog()
        called = any(not a.skipped for a in walk.attempts)
        fallback = called or bool(walk.refusals or walk.unavailable)
        try:
            return provider.prepare_checked(job, fallback=fallback)
        except ValidationFailed as exc:
            metrics.VALIDATION_FAILURES.labels(provider=provider.id, operation=job.operation).inc()
            if walk.alone:
                raise
            refusals = exc.errors or [FieldError((), exc.detail, f"{provider.id}: {exc.detail}")]
            walk.refusals.extend(refusals)
            why = "; ".join(e.limit or e.msg for e in refusals)
            walk.skip(provider.id, exc.code, f"its limits refuse this request ({why})")
            return None

    # ------------------------------------------------------------------ attempts

    async def _attempts(
        self, provider: Provider, call: PreparedCall, ctx: CallContext, walk: _Walk
    ) -> ProviderResult:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(provider, call, ctx, walk)
            except GatewayError as exc:
                delay = self._retry_delay(exc, attempt, ctx)
                if delay is None:
                    raise
                metrics.RETRIES.labels(provider=provider.id).inc()
                await self._sleep(delay)

    def _retry_delay(self, exc: GatewayError, attempt: int, ctx: CallContext) -> float | None:
        """Seconds to wait before the next attempt, or None when it must not be retried."""
        if not exc.retryable or attempt >= self._retry.max_attempts:
            return None
        backoff = min(self._retry.max_delay_s, self._retry.base_delay_s * 2 ** (attempt - 1))
        delay = backoff * (0.5 + self._rand() / 2)  # jitter: half to all of the backoff
        if exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        return delay if delay < ctx.deadline.remaining() else None

    async def _attempt(
        self, provider: Provider, call: PreparedCall, ctx: CallContext, walk: _Walk
    ) -> ProviderResult:
        pid, op = provider.id, call.operation
        bulkhead = self.bulkheads[pid]
        await bulkhead.acquire(ctx.deadline.check(pid), call.calls)
        started = self._clock()
        try:
            result = await provider.execute(call, ctx)
        except GatewayError as exc:
            self._record(pid, op, exc.code, started, walk, failed=exc.status >= 500)
            metrics.UPSTREAM_ERRORS.labels(provider=pid, operation=op, reason=_reason(exc)).inc()
            raise
        finally:
            bulkhead.release(call.calls)
        self._record(pid, op, "ok", started, walk, failed=False)
        result.headers.update(call.headers)
        return result

    def _record(
        self, pid: str, op: str, outcome: str, started: float, walk: _Walk, failed: bool
    ) -> None:
        seconds = self._clock() - started
        walk.attempts.append(Attempt(pid, outcome, seconds))
        metrics.UPSTREAM_DURATION.labels(provider=pid, operation=op, outcome=outcome).observe(
            seconds
        )
        self.circuits[pid].record(not failed)

    # ------------------------------------------------------------------ results

    def _outcome(self, pid: str, result: ProviderResult, walk: _Walk) -> Outcome:
        warnings = [*result.warnings, *walk.skips]
        if sum(not a.skipped for a in walk.attempts) > 1:
            warnings.append("attempts: " + ", ".join(a.label() for a in walk.attempts))
        return Outcome(result, pid, walk.attempts, walk.upstream_seconds, warnings)

    def _nothing_served(self, job: Job, candidates: list[str], walk: _Walk) -> GatewayError:
        if walk.last_error is not None:
            return walk.last_error
        if walk.unavailable:
            wait = min(e.retry_after or 1 for e in walk.unavailable)
            names = ", ".join(e.provider or "?" for e in walk.unavailable)
            return ProviderUnavailable(
                f"every provider that fits is unavailable ({names})", retry_after=wait
            )
        if all(
            not (p in self.providers and job.operation in self.providers[p].operations)
            for p in candidates
        ):
            return self._none_configured(job, candidates)
        detail = "no provider accepts this request: " + "; ".join(
            e.limit or e.msg for e in walk.refusals
        )
        return ValidationFailed(detail, errors=walk.refusals)

    def _none_configured(self, job: Job, candidates: list[str]) -> ProviderNotConfigured:
        hints = [
            f"{p} ({ENABLE_HINTS[p]})"
            for p in candidates
            if p != "local" or job.operation == "upscale"
        ]
        setting = "IMAGE_GATEWAY_ROUTING__" + job.operation.upper()
        detail = f"no configured provider can {job.operation}"
        if hints:
            detail += f"; enable one of {', '.join(hints)}"
        return ProviderNotConfigured(f"{detail} and list it in {setting}")


def allowed(
    candidates: list[str], providers: frozenset[str] | None, configured: set[str]
) -> list[str]:
    """The candidates a caller's key may use. When the key's scope is what leaves no
    configured provider, that is a 403, not a 503."""
    if providers is None or "*" in providers:
        return candidates
    kept = [p for p in candidates if p in providers]
    if configured.intersection(candidates) and not configured.intersection(kept):
        raise Forbidden(
            f"this key may use {sorted(providers)}, and none of them can serve this request",
            reason="scope",
        )
    return kept


def _reason(exc: GatewayError) -> str:
    if exc.reason:
        return exc.reason
    if exc.status == 429:
        return "rate_limited"
    if exc.code == "content_filtered":
        return "content_filtered"
    return "server_error" if exc.status >= 500 else "client_error"
