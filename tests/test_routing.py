"""Routing logic with scripted providers and a driven clock: selection, retries, backoff,
Retry-After, fallback, circuit breaker, bulkhead. (The same behaviour against the real
vendor emulators is in tests/test_fault_matrix.py.)"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from app import metrics
from app.domain import (
    CallContext,
    Deadline,
    GenerateJob,
    Job,
    Operation,
    OutputImage,
    PreparedCall,
    ProviderResult,
)
from app.errors import (
    ContentFiltered,
    GatewayError,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    ValidationFailed,
)
from app.providers.base import ModelLimits, Provider
from app.routing import CLOSED, HALF_OPEN, OPEN, Router
from app.schemas import GenerateParams
from tests.conftest import FakeClock, make_settings

pytestmark = pytest.mark.anyio


@dataclass
class Script:
    """What a scripted provider does on each call: an error to raise, or None for success."""

    outcomes: list[GatewayError | None]
    calls: int = 0
    refuse: bool = False


class ScriptedProvider(Provider):
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.GENERATE})

    def __init__(self, pid: str, script: Script) -> None:
        self.id = pid  # type: ignore[misc]
        self.script = script

    def default_model(self, operation: Operation) -> str:
        return "m"

    def model_limits(self) -> list[ModelLimits]:
        return []

    def prepare(self, job: Job) -> PreparedCall:
        if self.script.refuse:
            raise ValidationFailed(f"{self.id} refuses", provider=self.id)
        return PreparedCall(self.id, Operation.GENERATE, "m")

    async def execute(self, call: PreparedCall, ctx: CallContext) -> ProviderResult:
        self.script.calls += 1
        outcome = self.script.outcomes.pop(0) if self.script.outcomes else None
        if outcome is not None:
            raise outcome
        image = OutputImage(mime_type="image/png", width=1, height=1, data=b"x")
        return ProviderResult(images=[image], model="m")


def router(clock: FakeClock, scripts: dict[str, Script], **settings: Any) -> Router:
    providers: dict[str, Provider] = {p: ScriptedProvider(p, s) for p, s in scripts.items()}
    config = make_settings(routing={"generate": list(scripts)}, **settings)
    return Router(config, providers, clock=clock, sleep=clock.sleep, rand=lambda: 1.0)


def job(**params: Any) -> GenerateJob:
    return GenerateJob(params=GenerateParams(prompt="x", **params))


def ctx(clock: FakeClock, seconds: float = 60) -> CallContext:
    return CallContext(request_id="r", deadline=Deadline(seconds, clock))


def unavailable(**kw: Any) -> ProviderUnavailable:
    return ProviderUnavailable("vendor 503", retryable=True, **kw)


async def test_retryable_failures_are_retried_with_exponential_backoff() -> None:
    clock = FakeClock()
    venice = Script([unavailable(), unavailable()])
    outcome = await router(clock, {"venice": venice}).run(job(), ctx(clock))
    assert outcome.provider == "venice" and venice.calls == 3
    assert clock.sleeps == [0.2, 0.4]  # base 0.2 s doubling (jitter pinned to its maximum)
    assert [a.outcome for a in outcome.attempts] == [
        "provider_unavailable",
        "provider_unavailable",
        "ok",
    ]
    assert outcome.warnings == [
        "attempts: venice:provider_unavailable, venice:provider_unavailable, venice:ok"
    ]


async def test_attempts_stop_at_max_attempts() -> None:
    clock = FakeClock()
    venice = Script([unavailable()] * 5)
    with pytest.raises(ProviderUnavailable):
        await router(clock, {"venice": venice}, retry={"max_attempts": 2}).run(
            job(provider="venice"), ctx(clock)
        )
    assert venice.calls == 2


@pytest.mark.parametrize(
    "error",
    [
        UpstreamError("500", reason="server_error"),
        RateLimited("429 from venice", retryable=False),
        ContentFiltered("blocked"),
        ValidationFailed("vendor said 400"),
        UpstreamTimeout("read timeout"),
    ],
)
async def test_non_retryable_failures_are_not_repeated(error: GatewayError) -> None:
    clock = FakeClock()
    venice = Script([error])
    with pytest.raises(type(error)):
        await router(clock, {"venice": venice}).run(job(provider="venice"), ctx(clock))
    assert venice.calls == 1 and clock.sleeps == []


async def test_retry_after_is_honoured_when_it_fits_the_deadline() -> None:
    clock = FakeClock()
    vertex = Script([RateLimited("quota", retry_after=3)])
    outcome = await router(clock, {"vertex": vertex}).run(job(), ctx(clock, seconds=10))
    assert clock.sleeps == [3] and outcome.provider == "vertex"


async def test_retry_after_beyond_the_deadline_gives_up_at_once() -> None:
    clock = FakeClock()
    vertex = Script([RateLimited("quota", retry_after=30)])
    with pytest.raises(RateLimited):
        await router(clock, {"vertex": vertex}).run(job(), ctx(clock, seconds=10))
    assert vertex.calls == 1 and clock.sleeps == []


async def test_fallback_to_the_next_provider_in_order() -> None:
    clock = FakeClock()
    scripts = {"venice": Script([RateLimited("429", retryable=False)]), "deepimage": Script([])}
    before = metrics.FALLBACKS.labels(from_provider="venice", to_provider="deepimage")._value.get()
    outcome = await router(clock, scripts).run(job(), ctx(clock))
    assert outcome.provider == "deepimage"
    assert [a.label() for a in outcome.attempts] == ["venice:rate_limited", "deepimage:ok"]
    assert (
        metrics.FALLBACKS.labels(from_provider="venice", to_provider="deepimage")._value.get()
        == before + 1
    )


async def test_explicit_provider_is_not_substituted_unless_fallback_is_set() -> None:
    clock = FakeClock()
    scripts = {
        "venice": Script([UpstreamError("500"), UpstreamError("500")]),
        "deepimage": Script([]),
    }
    route = router(clock, scripts)
    with pytest.raises(UpstreamError):
        await route.run(job(provider="venice"), ctx(clock))
    assert scripts["deepimage"].calls == 0
    outcome = await route.run(job(provider="venice", fallback=True), ctx(clock))
    assert outcome.provider == "deepimage"


async def test_providers_whose_limits_refuse_are_skipped_and_listed() -> None:
    clock = FakeClock()
    scripts = {"vertex": Script([], refuse=True), "venice": Script([])}
    assert (await router(clock, scripts).run(job(), ctx(clock))).provider == "venice"
    scripts["venice"].refuse = True
    with pytest.raises(ValidationFailed) as caught:
        await router(clock, scripts).run(job(), ctx(clock))
    assert (
        "vertex: vertex refuses" in caught.value.detail
        and "venice: venice refuses" in caught.value.detail
    )
    assert scripts["vertex"].calls == 0


async def test_circuit_opens_on_failure_ratio_then_probes_half_open() -> None:
    clock = FakeClock()
    venice = Script([UpstreamError("500")] * 4)
    route = router(
        clock,
        {"venice": venice},
        circuit={"min_requests": 4, "failure_ratio": 0.5, "window_s": 60, "cooldown_s": 10},
    )
    for _ in range(4):
        with pytest.raises(UpstreamError):
            await route.run(job(), ctx(clock))
    assert route.circuits["venice"].state == OPEN
    with pytest.raises(ProviderUnavailable) as caught:
        await route.run(job(), ctx(clock))
    assert venice.calls == 4 and caught.value.retry_after == 10
    clock.now += 10
    assert route.circuits["venice"].state == HALF_OPEN
    assert (await route.run(job(), ctx(clock))).provider == "venice"  # the probe succeeds
    assert route.circuits["venice"].state == CLOSED


async def test_half_open_lets_one_probe_through_and_a_failed_probe_reopens() -> None:
    clock = FakeClock()
    route = router(clock, {"venice": Script([])}, circuit={"min_requests": 1, "cooldown_s": 5})
    breaker = route.circuits["venice"]
    breaker.record(False)
    assert breaker.state == OPEN
    clock.now += 5
    assert breaker.allow() is True and breaker.allow() is False  # one probe at a time
    breaker.record(False)
    assert breaker.state == OPEN


async def test_failures_outside_the_window_are_forgotten() -> None:
    clock = FakeClock()
    route = router(clock, {"venice": Script([])}, circuit={"min_requests": 2, "window_s": 30})
    breaker = route.circuits["venice"]
    breaker.record(False)
    clock.now += 31
    breaker.record(False)
    assert breaker.state == CLOSED


async def test_open_circuit_falls_back_when_allowed() -> None:
    clock = FakeClock()
    scripts = {"venice": Script([]), "deepimage": Script([])}
    route = router(clock, scripts, circuit={"min_requests": 1})
    route.circuits["venice"].record(False)
    outcome = await route.run(job(provider="venice", fallback=True), ctx(clock))
    assert outcome.provider == "deepimage" and scripts["venice"].calls == 0


async def test_bulkhead_refuses_beyond_the_cap_after_a_bounded_wait() -> None:
    clock = FakeClock()
    gate = asyncio.Event()

    class Slow(ScriptedProvider):
        async def execute(self, call: PreparedCall, ctx: CallContext) -> ProviderResult:
            await gate.wait()
            return await super().execute(call, ctx)

    config = make_settings(
        routing={"generate": ["venice"]}, bulkhead={"max_inflight": 2, "max_wait_s": 0.01}
    )
    route = Router(config, {"venice": Slow("venice", Script([]))}, clock=clock, sleep=clock.sleep)
    running = [asyncio.create_task(route.run(job(), ctx(clock))) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(ProviderUnavailable) as caught:
        await route.run(job(), ctx(clock))
    assert caught.value.retry_after == 1 and "too many calls" in caught.value.detail
    gate.set()
    assert [(await task).provider for task in running] == ["venice", "venice"]


async def test_expired_deadline_is_a_timeout_before_any_call() -> None:
    clock = FakeClock()
    venice = Script([])
    deadline_ctx = ctx(clock, seconds=1)
    clock.now += 2
    with pytest.raises(UpstreamTimeout):
        await router(clock, {"venice": venice}).run(job(), deadline_ctx)
    assert venice.calls == 0
