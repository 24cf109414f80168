"""CPU per vendor call of each candidate HTTP client, against the fake Venice on 127.0.0.1.

The fake runs in its own process, so this process's CPU time (``time.process_time``) is the
client's cost alone: building the request, the pool, parsing the answer, reading the body.
Each client makes the same small JSON ``POST /image/generate`` (answer: ~3.5 kB of JSON),
sequentially (c=1) and 32 at a time (c=32), on the same event loop (uvloop when installed,
as the gateway runs). The hand-written prototype in ``rawhttp.py`` is the floor.

Run: ``.venv/bin/python bench/transport_cpu.py [--requests 4000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aiohttp
import httpx
from procs import free_port
from rawhttp import RawPool

BODY = b'{"model":"venice-sd35","prompt":"a lighthouse at dusk"}'
HEADERS = {"authorization": "Bearer k", "content-type": "application/json"}
Call = Callable[[], Awaitable[int]]


async def measure(call: Call, requests: int, concurrency: int) -> float:
    """Microseconds of CPU per request (after a warm-up of 200 requests)."""
    for _ in range(200):
        await call()
    per_task = requests // concurrency

    async def worker() -> None:
        for _ in range(per_task):
            assert await call() == 200

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) / (per_task * concurrency) * 1e6


async def clients(base: str, port: int) -> dict[str, tuple[Call, Callable[[], Awaitable[None]]]]:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256), headers=HEADERS, auto_decompress=False
    )
    client = httpx.AsyncClient(
        base_url=base, headers=HEADERS, limits=httpx.Limits(max_connections=256)
    )
    raw = RawPool("127.0.0.1", port, "/api/v1", {"authorization": "Bearer k"})

    async def via_aiohttp() -> int:
        async with session.post(base + "/image/generate", data=BODY) as response:
            await response.read()
            return response.status

    async def via_httpx() -> int:
        response = await client.post("/image/generate", content=BODY)
        return response.status_code

    async def via_raw() -> int:
        answer = await raw.request("POST", "/image/generate", [BODY], "application/json")
        return answer.status

    async def close_raw() -> None:
        raw.close()

    return {
        "hand-written (rawhttp.py, the floor)": (via_raw, close_raw),
        f"aiohttp {aiohttp.__version__}": (via_aiohttp, session.close),
        f"httpx {httpx.__version__}": (via_httpx, client.aclose),
    }


async def run(port: int, requests: int) -> None:
    base = f"http://127.0.0.1:{port}/api/v1"
    rows = []
    for name, (call, close) in (await clients(base, port)).items():
        n = requests if "httpx" not in name else max(requests // 8, 400)
        c1 = statistics.median([await measure(call, n, 1) for _ in range(3)])
        c32 = statistics.median([await measure(call, n, 32) for _ in range(3)])
        rows.append((name, c1, c32))
        await close()
    print("| client | CPU µs/request c=1 | CPU µs/request c=32 |")
    print("|---|---|---|")
    for name, c1, c32 in rows:
        print(f"| {name} | {c1:,.0f} | {c32:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    port = free_port()
    here = os.path.dirname(os.path.abspath(__file__))
    fake = subprocess.Popen(
        [sys.executable, os.path.join(here, "fake_venice.py"), "--port", str(port)]
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/__stats", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        try:
            import uvloop

            uvloop.run(run(port, args.requests))
        except ImportError:
            asyncio.run(run(port, args.requests))
    finally:
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    main()
