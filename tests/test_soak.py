"""2,000 requests with random vendor faults (seeded), twice:

- in process, where the app's internals can be inspected: afterwards no upstream connection
  is left busy (and none at all after shutdown) and no task is left running;
- against the real server process, whose resident memory must stay within 10% of where it
  stood after warm-up. (Measured in process, RSS would mostly show the emulators' and
  pytest's own allocations sharing the same heap, not the gateway's.)"""

from __future__ import annotations

import asyncio
import base64
import random
from collections import Counter
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.transport import Transport
from tests.conftest import make_settings, png_bytes
from tests.emulators import deepimage, venice
from tests.emulators.common import EmulatorServer, EmulatorState, Fault

pytestmark = pytest.mark.anyio

TOTAL, WARMUP, CONCURRENCY = 2000, 300, 16
FAULTS = [
    None, None, None, None,
    Fault("status", status=429, body={"error": "slow down"}, headers={"retry-after": "0"}),
    Fault("status", status=500, body={"error": "boom"}),
    Fault("status", status=503, body={"error": "busy"}),
    Fault("reset"), Fault("truncate"), Fault("malformed"),
    Fault("slow", delay_s=0.01),
]  # fmt: skip


def inject(rng: random.Random, i: int, *states: EmulatorState) -> None:
    """Maybe queue one random fault, at one of the vendors (alternating)."""
    fault = rng.choice(FAULTS)
    if fault is not None:
        states[i % len(states)].add_fault(
            Fault(
                fault.kind,
                status=fault.status,
                body=fault.body,
                headers=fault.headers,
                delay_s=fault.delay_s,
            )
        )


async def call(
    client: httpx.AsyncClient, i: int, image: str, timeout: str = "30"
) -> httpx.Response:
    """Every third request an upscale, the others a generate."""
    headers = {"x-request-timeout": timeout}
    if i % 3 == 0:
        return await client.post("/v1/upscale", json={"image": image, "scale": 2}, headers=headers)
    return await client.post("/v1/generate", json={"prompt": f"fox {i}"}, headers=headers)


def transports(app: Any) -> list[Transport]:
    """Every vendor's transport (whatever attribute holds it)."""
    return [
        value
        for provider in app.state.service.router.providers.values()
        for value in vars(provider).values()
        if isinstance(value, Transport)
    ]


async def test_soak_with_random_faults_leaks_nothing() -> None:
    rng = random.Random(20261121)
    v_state, d_state = venice.VeniceState(), deepimage.DeepImageState()
    image = base64.b64encode(png_bytes(300, 240)).decode()
    with EmulatorServer(venice.create_app(v_state), v_state) as v_srv, \
         EmulatorServer(deepimage.create_app(d_state), d_state) as d_srv:  # fmt: skip
        settings = make_settings(
            venice={"api_key": venice.DEFAULT_API_KEY, "base_url": v_srv.url + "/api/v1"},
            deepimage={"api_key": deepimage.DEFAULT_API_KEY, "base_url": d_srv.url},
            routing={"generate": ["venice", "deepimage"], "upscale": ["venice", "local"]},
            retry={"base_delay_s": 0.001, "max_delay_s": 0.002},
            circuit={"min_requests": 50, "failure_ratio": 0.9, "cooldown_s": 0.05},
            access_log=False,
        )
        app = create_app(settings)
        tasks_before = asyncio.all_tasks()
        statuses: Counter[int] = Counter()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gw", timeout=30
            ) as client:

                async def one(i: int) -> None:
                    inject(rng, i, v_state, d_state)
                    response = await call(client, i, image, timeout="5")
                    statuses[response.status_code] += 1

                async def run(start: int, stop: int) -> None:
                    queue = iter(range(start, stop))

                    async def worker() -> None:
                        for i in queue:
                            await one(i)

                    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
                    v_state.requests.clear()  # the emulators' own records are not the gateway's
                    d_state.requests.clear()
                    d_state.jobs.clear()

                await run(0, TOTAL)
                live = transports(app)
                assert len(live) == 2 and all(t.busy == 0 for t in live)  # none left in use
                assert all(t.in_use() == 0 for t in live)
        assert all(t.closed for t in live)  # closed with the app
        leftover = {t for t in asyncio.all_tasks() - tasks_before if not t.done()}
        leftover.discard(asyncio.current_task())  # type: ignore[arg-type]
    assert sum(statuses.values()) == TOTAL
    assert 500 not in statuses, statuses  # vendor trouble never becomes an unhandled error
    assert statuses[200] > TOTAL // 3, statuses
    assert not leftover, leftover


def process_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_soak_memory_of_the_real_server_process() -> None:
    from tests.process import GatewayProcess

    rng = random.Random(7)
    v_state, d_state = venice.VeniceState(), deepimage.DeepImageState()
    image = base64.b64encode(png_bytes(300, 240)).decode()
    with EmulatorServer(venice.create_app(v_state), v_state) as v_srv, \
         EmulatorServer(deepimage.create_app(d_state), d_state) as d_srv:  # fmt: skip
        env = {
            "IMAGE_GATEWAY_VENICE__API_KEY": venice.DEFAULT_API_KEY,
            "IMAGE_GATEWAY_VENICE__BASE_URL": v_srv.url + "/api/v1",
            "IMAGE_GATEWAY_DEEPIMAGE__API_KEY": deepimage.DEFAULT_API_KEY,
            "IMAGE_GATEWAY_DEEPIMAGE__BASE_URL": d_srv.url,
            "IMAGE_GATEWAY_ROUTING__GENERATE": "venice,deepimage",
            "IMAGE_GATEWAY_ROUTING__UPSCALE": "venice,local",
            "IMAGE_GATEWAY_RETRY__BASE_DELAY_S": "0.001",
            "IMAGE_GATEWAY_ACCESS_LOG": "false",
        }
        with GatewayProcess(env=env) as gw:
            assert gw.proc is not None
            limits = httpx.Limits(max_connections=CONCURRENCY)
            async with httpx.AsyncClient(base_url=gw.url, timeout=30, limits=limits) as client:

                async def one(i: int) -> int:
                    inject(rng, i, v_state, d_state)
                    return (await call(client, i, image)).status_code

                async def run(start: int, stop: int) -> list[int]:
                    sem = asyncio.Semaphore(CONCURRENCY)

                    async def bounded(i: int) -> int:
                        async with sem:
                            return await one(i)

                    codes = await asyncio.gather(*(bounded(i) for i in range(start, stop)))
                    v_state.requests.clear()
                    d_state.requests.clear()
                    d_state.jobs.clear()
                    return list(codes)

                await run(0, WARMUP)
                baseline = process_rss(gw.proc.pid)
                codes = await run(WARMUP, TOTAL)
                after = process_rss(gw.proc.pid)
    print(f"process rss_baseline={baseline} rss_after={after} codes={Counter(codes)}")
    assert 500 not in codes
    assert after <= baseline * 1.10, f"RSS grew from {baseline} to {after} bytes"
