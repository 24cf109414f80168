"""2,000 requests with random vendor faults (seeded): afterwards no upstream connection is
left busy (and none at all after shutdown), no task is left running, and resident memory
is within 10% of where it stood after warm-up."""

from __future__ import annotations

import asyncio
import base64
import gc
import random
from collections import Counter
from typing import Any

import httpx
import pytest

from app.main import create_app
from tests.conftest import make_settings, png_bytes
from tests.emulators import deepimage, venice
from tests.emulators.common import EmulatorServer, Fault

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


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def pools(app: Any) -> list[Any]:
    """Every vendor client's connection pool (whatever attribute the provider keeps it in)."""
    found = []
    for provider in app.state.service.router.providers.values():
        for value in vars(provider).values():
            if isinstance(value, httpx.AsyncClient):
                found.append(value._transport._pool)  # type: ignore[attr-defined]
    return found


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
                    fault = rng.choice(FAULTS)
                    if fault is not None:
                        state = v_state if i % 2 else d_state
                        state.add_fault(
                            Fault(
                                fault.kind,
                                status=fault.status,
                                body=fault.body,
                                headers=fault.headers,
                                delay_s=fault.delay_s,
                            )
                        )
                    if i % 3 == 0:
                        response = await client.post(
                            "/v1/upscale", json={"image": image, "scale": 2}
                        )
                    else:
                        response = await client.post(
                            "/v1/generate",
                            json={"prompt": f"fox {i}"},
                            headers={"x-request-timeout": "5"},
                        )
                    statuses[response.status_code] += 1

                async def run(start: int, stop: int) -> None:
                    queue = iter(range(start, stop))

                    async def worker() -> None:
                        for i in queue:
                            await one(i)

                    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
                    v_state.requests.clear()  # the emulators' own records are not the gateway's
                    d_state.requests.clear()

                await run(0, WARMUP)
                gc.collect()
                baseline = rss_bytes()
                await run(WARMUP, TOTAL)
                gc.collect()
                after = rss_bytes()
                for pool in pools(app):
                    assert all(conn.is_idle() or conn.is_closed() for conn in pool.connections)
            live_pools = pools(app)
        for pool in live_pools:
            assert pool.connections == []  # closed with the app
        leftover = {t for t in asyncio.all_tasks() - tasks_before if not t.done()}
        leftover.discard(asyncio.current_task())  # type: ignore[arg-type]
    print(f"statuses={dict(statuses)} rss_baseline={baseline} rss_after={after}")
    assert sum(statuses.values()) == TOTAL
    assert 500 not in statuses, statuses  # vendor trouble never becomes an unhandled error
    assert statuses[200] > TOTAL // 3, statuses
    assert not leftover, leftover
    assert after <= baseline * 1.10, f"RSS grew from {baseline} to {after} bytes"
