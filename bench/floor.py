"""What each layer costs: the apps of bench/floor_apps.py (no framework, FastAPI, httpx,
a raw asyncio client) under uvicorn (uvloop + httptools, one worker, no access log), driven
by wrk like the gateway in bench/run.py, in interleaved rounds. Prints requests/s, p50 and
CPU per request for each, at 32 and 1 connections.

    .venv/bin/python bench/floor.py [--rounds 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import payloads as pl  # noqa: E402
import report  # noqa: E402
import run as bench_run  # noqa: E402
from floor_apps import APPS  # noqa: E402
from procs import CpuSnapshot, Service, free_port  # noqa: E402


def start_app(name: str, fake_url: str, work: Path) -> tuple[Service, str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        f"floor_apps:{name}",
        "--app-dir",
        str(BENCH),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--lifespan",
        "on",
    ]
    env = bench_run.clean_env(FAKE_URL=fake_url)
    service = Service(name, command, env, work, work / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    service.start(url + "/", 30, any_status=True)
    return service, url


def measure(
    service: Service, url: str, body: Path, connections: int, seconds: int
) -> dict[str, Any]:
    before = CpuSnapshot.take({"app": service})
    wrk = bench_run.run_wrk(url + "/v1/generate", body, connections, seconds, "", "")
    cpu = CpuSnapshot.take({"app": service}).since(before)
    return {
        "target": "app",
        "wrk": wrk,
        "cpu": {"app": cpu["app"]},
        "other": cpu["other"] / cpu["wall"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="image-gateway-floor-"))
    services: list[Service] = []
    try:
        fake_port = free_port()
        fake_url = f"http://127.0.0.1:{fake_port}"
        fake = Service(
            "fake",
            [sys.executable, str(BENCH / "fake_venice.py"), "--port", str(fake_port)],
            bench_run.clean_env(),
            work,
            work / "fake.log",
        )
        services.append(fake.start(fake_url + "/__stats"))
        body = work / "generate.json"
        body.write_bytes(pl.generate_body("venice"))
        apps = {}
        for name in APPS:
            service, url = start_app(name, fake_url, work)
            services.append(service)
            apps[name] = (service, url)
        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for service, url in apps.values():  # warm-up
            measure(service, url, body, 32, 1)
        for round_no in range(args.rounds):
            for name in APPS if round_no % 2 == 0 else APPS[::-1]:
                for connections in (32, 1):
                    run = measure(*apps[name], body, connections, args.duration)
                    run["target"] = "app"
                    results.setdefault((name, connections), []).append(run)
        print_table(results)
    finally:
        for service in reversed(services):
            service.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(results: dict[tuple[str, int], list[dict[str, Any]]]) -> None:
    print(
        "| app | c=32 req/s | c=32 p50 (ms) | CPU µs/request c=32 | c=1 req/s | c=1 p50 (ms) "
        "| failed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in APPS:
        many, one = results[(name, 32)], results[(name, 1)]
        failed = sum(report.failures(r) for r in many + one)
        print(
            f"| {name} | {report.num(report.median(report.rps(r) for r in many))} "
            f"| {report.num(report.median(report.ms(r, 'p50_us') for r in many))} "
            f"| {report.num(report.median(report.cpu_us_per_request(r) for r in many), 1)} "
            f"| {report.num(report.median(report.rps(r) for r in one))} "
            f"| {report.num(report.median(report.ms(r, 'p50_us') for r in one), 3)} | {failed} |"
        )
    loads = [r["other"] for runs in results.values() for r in runs]
    print(f"\nother load during the runs: median {report.num(report.median(loads))} cores")


if __name__ == "__main__":
    sys.exit(main())
