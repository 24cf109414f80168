"""Profile the gateway's request path under the benchmark's load with py-spy.

    .venv/bin/python bench/profile.py [--py-spy PATH] [--svg]      # both scenarios
    .venv/bin/python bench/profile.py --summarize bench/results/profile-generate_c32.raw

It starts the fake and the gateway as bench/run.py does, measures the gateway's CPU per
request in a plain wrk run, then runs wrk again while ``py-spy record`` samples the
gateway (collapsed stacks, and a flame-graph SVG with ``--svg``), and prints where the
time goes: each sample is given to the innermost frame that belongs to a known part
(json, pydantic, httpx, logging, the gateway's own modules, ...), and the shares are also
shown as microseconds per request. py-spy is not a project dependency: install it
anywhere but the project's venv: ``python3 -m pip install --target bench/.tools py-spy``
(git-ignored; found there by default), or put it on PATH.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import payloads as pl  # noqa: E402
import run as bench_run  # noqa: E402
from procs import CpuSnapshot  # noqa: E402

#: (category, substrings of the frame's file); the first rule that matches a frame wins,
#: and each sample goes to its innermost (leaf-most) frame that matches any rule.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("json (stdlib encode/decode)", ("json/",)),
    ("pydantic validation", ("pydantic/", "pydantic_core/")),
    ("logging", ("logging/",)),
    ("prometheus_client metrics", ("prometheus_client/",)),
    ("uuid", ("uuid.py",)),
    ("base64 / binascii", ("base64.py",)),
    ("httpx (client, headers, URL)", ("httpx/",)),
    ("httpcore (pool, HTTP/1.1 connection)", ("httpcore/", "h11/")),
    ("anyio", ("anyio/",)),
    ("uvicorn HTTP protocol (httptools)", ("uvicorn/protocols/",)),
    ("uvicorn other", ("uvicorn/",)),
    ("FastAPI (routing, dependencies, middleware)", ("fastapi/",)),
    ("Starlette (routing, Request, Response)", ("starlette/",)),
    ("app/middleware.py", ("app/middleware.py",)),
    ("app/intake.py", ("app/intake.py",)),
    ("app/service.py", ("app/service.py",)),
    ("app/routing.py", ("app/routing.py",)),
    ("app/providers/venice*.py", ("app/providers/venice",)),
    ("app/providers/base.py", ("app/providers/base.py",)),
    ("app/transport (the vendor client)", ("app/transport/",)),
    ("app/images.py", ("app/images.py",)),
    ("app/metrics.py", ("app/metrics.py",)),
    ("app other", ("app/",)),
    ("asyncio event loop / tasks", ("asyncio/",)),
    ("PIL", ("PIL/",)),
)


def frame_file(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``path/file.py``."""
    inside = frame.rsplit(" (", 1)[-1].rstrip(")")
    return inside.rsplit(":", 1)[0]


def category(frame: str) -> str | None:
    path = frame_file(frame)
    for name, needles in CATEGORIES:
        if any(n in path for n in needles):
            return name
    return None


def read_raw(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarize(stacks: list[tuple[list[str], int]]) -> tuple[Counter[str], Counter[str], int]:
    """Self time by category (innermost known frame) and inclusive time by function."""
    by_category: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        total += count
        leaf = next((c for f in reversed(frames) if (c := category(f))), "other (C / unknown)")
        by_category[leaf] += count
        for frame in set(frames):
            inclusive[frame.split(" (", 1)[0] + " (" + frame_file(frame) + ")"] += count
    return by_category, inclusive, total


def report(raw: Path, cpu_us: float | None, top: int = 30) -> str:
    by_category, inclusive, total = summarize(read_raw(raw))
    per = f"{cpu_us:,.0f} µs of gateway CPU per request" if cpu_us else "CPU per request unknown"
    lines = [
        f"#### {raw.stem}: {total} samples; {per}",
        "",
        "| part (self time) | share | µs/request |",
        "|---|---:|---:|",
    ]
    for name, count in by_category.most_common():
        share = count / total
        lines.append(f"| {name} | {share:.1%} | {_us(share, cpu_us)} |")
    lines += ["", "| function (inclusive) | share | µs/request |", "|---|---:|---:|"]
    boring = ("<module>", "run (", "_run_code", "_run_module", "main (", "serve (", "asyncio_run")
    shown = 0
    for name, count in inclusive.most_common():
        if shown >= top or name.startswith(boring):
            continue
        share = count / total
        lines.append(f"| `{name}` | {share:.1%} | {_us(share, cpu_us)} |")
        shown += 1
    return "\n".join(lines) + "\n"


def _us(share: float, cpu_us: float | None) -> str:
    return f"{share * cpu_us:,.0f}" if cpu_us else "-"


def profile(args: argparse.Namespace, py_spy: str) -> None:
    work = Path(tempfile.mkdtemp(prefix="image-gateway-profile-"))
    run_args = bench_run.parse_args(["--no-litellm", *[f"--env={e}" for e in args.env]])
    run_args.workers = 1
    targets: dict[str, bench_run.Target] = {}
    try:
        payloads = pl.make_payloads()
        targets = bench_run.start_targets(run_args, work, payloads)
        bench_run.verify(targets, payloads)
        gateway = targets["gateway"]
        for scenario in [s for s in bench_run.SCENARIOS if s.name in args.scenarios.split(",")]:
            url = gateway.url + gateway.paths[scenario.operation]
            body = gateway.bodies[scenario.operation]
            bench_run.run_wrk(url, body, scenario.connections, 2, scenario.accept, "")  # warm-up
            before = CpuSnapshot.take({"gateway": gateway.service})
            wrk = bench_run.run_wrk(
                url, body, scenario.connections, args.duration, scenario.accept, ""
            )
            used = CpuSnapshot.take({"gateway": gateway.service}).since(before)["gateway"]
            cpu_us = used / max(1, wrk["requests"]) * 1e6
            raw = record(py_spy, gateway.service.pid, scenario, url, body, args, "raw")
            if args.svg:
                record(py_spy, gateway.service.pid, scenario, url, body, args, "flamegraph")
            print(report(raw, cpu_us), flush=True)
    finally:
        for target in reversed(list(targets.values())):
            target.service.stop()
        shutil.rmtree(work, ignore_errors=True)


def record(
    py_spy: str,
    pid: int,
    scenario: bench_run.Scenario,
    url: str,
    body: Path,
    args: argparse.Namespace,
    fmt: str,
) -> Path:
    bench_run.RESULTS.mkdir(exist_ok=True)
    out = bench_run.RESULTS / f"profile-{scenario.name}.{'raw' if fmt == 'raw' else 'svg'}"
    load = subprocess.Popen(
        [
            "wrk",
            "-t1",
            f"-c{scenario.connections}",
            f"-d{args.duration + 2}s",
            "--timeout",
            "10s",
            "-s",
            str(bench_run.LUA),
            url,
            "--",
            str(body),
            "application/json",
            scenario.accept,
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1)  # let the load reach its steady state
    subprocess.run(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(args.rate),
            "--duration",
            str(args.duration),
            "--format",
            fmt,
            "-o",
            str(out),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    load.wait()
    print(f"wrote {out.relative_to(bench_run.ROOT)}", file=sys.stderr)
    return out


def find_py_spy() -> str | None:
    """py-spy on PATH, else bench/.tools/bin/py-spy (pip install --target bench/.tools py-spy)."""
    local = BENCH / ".tools" / "bin" / "py-spy"
    return shutil.which("py-spy") or (str(local) if local.exists() else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="profile the gateway under load (py-spy)")
    parser.add_argument("--py-spy", default=find_py_spy(), help="path of py-spy")
    parser.add_argument("--duration", type=int, default=10, help="seconds of sampling")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--scenarios", default="generate_c32,upscale_c4")
    parser.add_argument("--svg", action="store_true", help="also record a flame graph (SVG)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--summarize", type=Path, help="only summarize this raw py-spy file")
    parser.add_argument("--cpu-us", type=float, default=None, help="CPU µs per request (summarize)")
    args = parser.parse_args(argv)
    if args.summarize:
        print(report(args.summarize, args.cpu_us))
        return 0
    if not args.py_spy:
        print("py-spy not found: pass --py-spy PATH (install it outside .venv)", file=sys.stderr)
        return 2
    profile(args, args.py_spy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
