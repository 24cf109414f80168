"""The local provider's memory budget: refuse what can never fit, queue what fits later."""

from __future__ import annotations

import asyncio

import pytest

from app.domain import InputImage, UpscaleJob
from app.errors import ProviderUnavailable, ValidationFailed
from app.images import sniff
from app.providers.local import LocalProvider
from app.providers.memory_budget import MIB, MemoryBudget, lanczos_peak
from app.schemas import UpscaleParams
from tests.conftest import make_settings, png_bytes

pytestmark = pytest.mark.anyio


async def test_a_job_over_the_whole_budget_is_refused_naming_it() -> None:
    budget = MemoryBudget("local", 100 * MIB)
    with pytest.raises(ValidationFailed) as caught:
        async with budget.reserve(101 * MIB, wait_s=1):
            pass
    [error] = caught.value.errors
    assert error.limit == "local: estimated peak memory must be <= 100 MiB (the memory budget)"
    assert budget.free == budget.total


async def test_a_job_that_fits_later_waits_in_order_then_runs() -> None:
    budget = MemoryBudget("local", 100 * MIB)
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def job(name: str, size: int) -> None:
        async with budget.reserve(size * MIB, wait_s=5):
            order.append(name)
            first_in.set()
            await release.wait()

    first = asyncio.create_task(job("a", 70))
    await first_in.wait()
    second = asyncio.create_task(job("b", 60))
    third = asyncio.create_task(job("c", 10))  # would fit now, but waits its turn behind b
    await asyncio.sleep(0)
    assert order == ["a"] and budget.free == 30 * MIB
    release.set()
    await asyncio.gather(first, second, third)
    assert order == ["a", "b", "c"] and budget.free == budget.total


async def test_a_job_that_cannot_get_memory_in_time_is_503() -> None:
    budget = MemoryBudget("local", 100 * MIB)
    async with budget.reserve(90 * MIB, wait_s=1):
        with pytest.raises(ProviderUnavailable) as caught:
            async with budget.reserve(20 * MIB, wait_s=0.01):
                pass
    assert caught.value.retry_after == 1 and "memory budget (100 MiB)" in caught.value.detail
    assert budget.free == budget.total and not budget._waiters


async def test_a_cancelled_waiter_gives_nothing_back_twice() -> None:
    budget = MemoryBudget("local", 100 * MIB)
    async with budget.reserve(90 * MIB, wait_s=1):
        waiter = asyncio.create_task(budget.reserve(20 * MIB, wait_s=5).__aenter__())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert budget.free == budget.total and not budget._waiters


def test_the_local_provider_refuses_an_upscale_over_its_budget_before_decoding() -> None:
    provider = LocalProvider(make_settings(local={"memory_budget_mb": 16}))
    data = png_bytes(1024, 1024)
    job = UpscaleJob(UpscaleParams(scale=2), InputImage(data, sniff(data)))
    with pytest.raises(ValidationFailed) as caught:
        provider.prepare(job)
    assert [e.limit for e in caught.value.errors] == [
        "local: estimated peak memory must be <= 16 MiB (the memory budget)"
    ]


def test_the_estimate_counts_every_copy() -> None:
    # 1000x1000 -> 2000x2000: source x2, intermediate 2000x1000, result; RGBX bytes.
    pixels = 2 * 1_000_000 + 2_000_000 + 4_000_000
    encoded = 4_000_000 * 4
    assert lanczos_peak(1000, 1000, 2000, 2000, 1 << 30) == pixels * 4 + encoded + encoded * 4 // 3
    assert lanczos_peak(1000, 1000, 2000, 2000, 1000) == pixels * 4 + 1000 + 1333
