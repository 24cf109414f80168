"""The image-gateway benchmark: one command, all on 127.0.0.1.

    .venv/bin/python bench/run.py            # or: make bench
    .venv/bin/python bench/run.py --quick    # a one-minute smoke run

It starts a precomputed fake Venice (bench/fake_venice.py), the gateway (``python -m app``,
access log on, as shipped) routed to it, and, when installed, a LiteLLM proxy pointed at
the fake's OpenAI-compatible route. After a correctness check and a warm-up it runs
interleaved rounds with wrk (bench/wrk/post.lua); in each round every scenario is measured
against the fake directly and through the gateway (and LiteLLM), so the gateway's added
latency is a difference taken in the same round. It prints a Markdown report of medians
over rounds and writes every raw figure to bench/results/bench-<time>.json.

Scenarios: POST /v1/generate at 32 and 1 connections; POST /v1/upscale of a 4.8 MB PNG
(6.4 MB base64 JSON, scale 2) at 4 connections, answered as JSON and as raw bytes, with the
gateway's peak RSS growth per in-flight request (VmHWM, reset through clear_refs).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import payloads as pl  # noqa: E402
import report  # noqa: E402
from litellm_proxy import AUTHORIZATION, LITELLM_MODEL, find_litellm, litellm_service  # noqa: E402
from procs import CpuSnapshot, Service, free_port, memory_kib, reset_peak  # noqa: E402

API_KEY = "bench-key-not-a-real-secret"
LUA = BENCH / "wrk" / "post.lua"
RESULTS = BENCH / "results"


@dataclass(frozen=True)
class Scenario:
    name: str
    operation: str  # generate | upscale
    connections: int
    accept: str = ""


SCENARIOS = (
    Scenario("generate_c32", "generate", 32),
    Scenario("generate_c1", "generate", 1),
    Scenario("upscale_c4", "upscale", 4),
    Scenario("upscale_c4_bytes", "upscale", 4, accept="image/png"),
)


@dataclass
class Target:
    """Somewhere to send the scenarios: the fake itself, the gateway or LiteLLM."""

    name: str
    service: Service
    url: str
    paths: dict[str, str]  # operation -> path
    bodies: dict[str, Path] = field(default_factory=dict)  # operation -> body file
    authorization: str = ""


# --------------------------------------------------------------------------- wrk


def run_wrk(
    url: str, body: Path, connections: int, seconds: int, accept: str, authorization: str
) -> dict[str, Any]:
    """One wrk run (one thread: the machine's cores are for the servers)."""
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        str(body),
        "application/json",
        accept,
        authorization,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return parsed
    raise RuntimeError(f"wrk gave no summary ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def fake_stats(fake: Target) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(fake.url + "/__stats", timeout=5).json()
    return stats


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        targets: dict[str, Target],
        new_gateway: Callable[[], Target],
    ) -> None:
        self.args = args
        self.targets = targets
        self.new_gateway = new_gateway
        self.services = {name: t.service for name, t in targets.items()}
        self.runs: list[dict[str, Any]] = []
        self.memory_runs: list[dict[str, Any]] = []
        self.idle_rss_kib = _rss(targets["gateway"].service.pids())

    def measure(
        self,
        scenario: Scenario,
        target: Target,
        round_no: int,
        seconds: int,
        memory_base: dict[int, int] | None = None,
    ) -> dict[str, Any]:
        """One wrk run; with ``memory_base`` (RSS per pid, KiB) also the peak RSS growth."""
        pids = target.service.pids()
        if memory_base is not None:
            for pid in pids:
                reset_peak(pid)
        services = {**self.services, target.name: target.service}
        stats_before = fake_stats(self.targets["fake"])
        cpu_before = CpuSnapshot.take(services)
        url = target.url + target.paths[scenario.operation]
        body = target.bodies[scenario.operation]
        wrk = run_wrk(
            url, body, scenario.connections, seconds, scenario.accept, target.authorization
        )
        cpu = CpuSnapshot.take(services).since(cpu_before)
        run: dict[str, Any] = {
            "round": round_no,
            "scenario": scenario.name,
            "target": target.name,
            "connections": scenario.connections,
            "wrk": wrk,
            "cpu": cpu,
            "upstream_calls": _delta(fake_stats(self.targets["fake"]), stats_before),
        }
        if memory_base is not None:
            peaks = {pid: memory_kib(pid).get("VmHWM", 0) for pid in pids}
            run["memory"] = {
                "idle_rss_kib": sum(memory_base.get(p, 0) for p in pids),
                "peak_kib": sum(peaks.values()),
                "growth_kib": sum(peaks[p] - memory_base.get(p, 0) for p in pids),
            }
        _progress(run)
        return run

    def warm_up(self, seconds: int) -> None:
        order = [t for n, t in self.targets.items() if n != "fake"] + [self.targets["fake"]]
        for scenario in self._scenarios():
            for target in order:
                if scenario.operation in target.paths:
                    self.measure(scenario, target, 0, seconds)

    def rounds(self) -> None:
        names = list(self.targets)
        for round_no in range(1, self.args.rounds + 1):
            order = names if round_no % 2 else names[::-1]  # alternate who goes first
            for scenario in self._scenarios():
                for name in order:
                    target = self.targets[name]
                    if scenario.operation in target.paths:
                        run = self.measure(scenario, target, round_no, self.args.duration)
                        self.runs.append(run)

    def memory_phase(self) -> None:
        """Peak RSS growth, each time in a fresh gateway process: its RSS after start-up and
        a short generate warm-up is the base, VmHWM during the upscale run the peak. (In the
        long-lived process the allocator keeps what earlier runs freed, which would make
        each scenario's figure depend on the ones before it.)"""
        generate = next(s for s in SCENARIOS if s.name == "generate_c1")
        for scenario in (s for s in self._scenarios() if s.operation == "upscale"):
            for rep in range(1, self.args.memory_reps + 1):
                gateway = self.new_gateway()
                try:
                    self.measure(generate, gateway, 0, 1)
                    base = {pid: memory_kib(pid).get("VmRSS", 0) for pid in gateway.service.pids()}
                    run = self.measure(scenario, gateway, rep, self.args.duration, base)
                    self.memory_runs.append(run)
                finally:
                    gateway.service.stop()

    def _scenarios(self) -> list[Scenario]:
        wanted = self.args.scenarios.split(",") if self.args.scenarios else None
        return [s for s in SCENARIOS if wanted is None or s.name in wanted]


def _rss(pids: list[int]) -> int:
    return sum(memory_kib(pid).get("VmRSS", 0) for pid in pids)


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def _progress(run: dict[str, Any]) -> None:
    label = f"round {run['round']}" if run["round"] else "warm-up"
    if "memory" in run:
        label = f"memory {run['round']}"
    print(
        f"  {label:8} {run['scenario']:17} {run['target']:8} "
        f"{report.rps(run):9,.1f} req/s  p50 {report.ms(run, 'p50_us'):8.3f} ms  "
        f"p99 {report.ms(run, 'p99_us'):8.3f} ms  failed {report.failures(run)}"
        + (f"  peak +{run['memory']['growth_kib'] / 1024:.0f} MiB" if "memory" in run else ""),
        file=sys.stderr,
        flush=True,
    )


# --------------------------------------------------------------------------- set-up


def clean_env(**values: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_GATEWAY_", "PROMETHEUS_"))
    }
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    env.update(values)
    return env


def gateway_env(args: argparse.Namespace, port: int, fake_url: str) -> dict[str, str]:
    values = {
        "IMAGE_GATEWAY_HOST": "127.0.0.1",
        "IMAGE_GATEWAY_PORT": str(port),
        "IMAGE_GATEWAY_WORKERS": str(args.workers),
        "IMAGE_GATEWAY_LOG_LEVEL": args.log_level,
        "IMAGE_GATEWAY_ACCESS_LOG": "false" if args.no_access_log else "true",
        "IMAGE_GATEWAY_VENICE__API_KEY": API_KEY,
        "IMAGE_GATEWAY_VENICE__BASE_URL": fake_url + "/api/v1",
        "IMAGE_GATEWAY_ROUTING__GENERATE": "venice",
        "IMAGE_GATEWAY_ROUTING__UPSCALE": "venice",
        "PYTHONPATH": str(ROOT),
    }
    for item in args.env:
        key, _, value = item.partition("=")
        values[key] = value
    return clean_env(**values)


def start_targets(args: argparse.Namespace, work: Path, payloads: pl.Payloads) -> dict[str, Target]:
    targets: dict[str, Target] = {}
    fake_port = free_port()
    fake_cmd = [sys.executable, str(BENCH / "fake_venice.py"), "--port", str(fake_port)]
    if args.generate_kb:
        fake_cmd += ["--generate-kb", str(args.generate_kb)]
    fake_url = f"http://127.0.0.1:{fake_port}"
    fake = Service("fake", fake_cmd, clean_env(), work, work / "fake.log")
    targets["fake"] = Target(
        "fake",
        fake,
        fake_url,
        {"generate": "/api/v1/image/generate", "upscale": "/api/v1/image/upscale"},
    )
    fake.start(fake_url + "/__stats")
    targets["gateway"] = start_gateway(args, work, fake_url)
    litellm = find_litellm(args.litellm, BENCH)
    if litellm is not None and not args.no_litellm:
        lport = free_port()
        service = litellm_service(litellm, lport, fake_url, args.workers, work)
        service.start(f"http://127.0.0.1:{lport}/health/liveliness", timeout=180)
        targets["litellm"] = Target(
            "litellm",
            service,
            f"http://127.0.0.1:{lport}",
            {"generate": "/v1/images/generations"},
            authorization=AUTHORIZATION,
        )
    write_bodies(targets, work, payloads)
    return targets


def start_gateway(args: argparse.Namespace, work: Path, fake_url: str, log: str = "") -> Target:
    port = free_port()
    command = [sys.executable, "-m", "app"]
    env = gateway_env(args, port, fake_url)
    gateway = Service("gateway", command, env, work, work / (log or "gateway.log"))
    gateway.start(f"http://127.0.0.1:{port}/healthz")
    paths = {"generate": "/v1/generate", "upscale": "/v1/upscale"}
    target = Target("gateway", gateway, f"http://127.0.0.1:{port}", paths)
    target.bodies = {op: work / f"{op}_venice.json" for op in ("generate", "upscale")}
    return target


def write_bodies(targets: dict[str, Target], work: Path, payloads: pl.Payloads) -> None:
    files = {
        "generate_venice": pl.generate_body("venice"),
        "upscale_venice": pl.upscale_body(payloads, "venice"),
        "generate_plain": pl.generate_body(None),
        "upscale_plain": pl.upscale_body(payloads, None),
        "generate_openai": pl.openai_generate_body(LITELLM_MODEL),
    }
    for name, data in files.items():
        (work / f"{name}.json").write_bytes(data)
    kinds = {"fake": "plain", "gateway": "venice"}
    for name, target in targets.items():
        if name == "litellm":
            target.bodies = {"generate": work / "generate_openai.json"}
        else:
            target.bodies = {
                op: work / f"{op}_{kinds[name]}.json" for op in ("generate", "upscale")
            }


def verify(targets: dict[str, Target], payloads: pl.Payloads) -> None:
    """Every answer the benchmark counts as a success must be the right answer."""
    expected = base64.b64encode(payloads.generate_image).decode()
    upscaled = base64.b64encode(payloads.upscaled_png).decode()
    gw = targets["gateway"]
    with httpx.Client(base_url=gw.url, timeout=60) as client:
        doc = _ok(
            client.post(
                "/v1/generate",
                content=gw.bodies["generate"].read_bytes(),
                headers={"content-type": "application/json"},
            )
        )
        _check(
            doc["provider"] == "venice" and doc["images"][0]["data"] == expected, "generate", doc
        )
        body = gw.bodies["upscale"].read_bytes()
        doc = _ok(
            client.post("/v1/upscale", content=body, headers={"content-type": "application/json"})
        )
        image = doc["images"][0]
        _check(image["data"] == upscaled and image["width"] == 2400, "upscale", doc)
        raw = client.post(
            "/v1/upscale",
            content=body,
            headers={"content-type": "application/json", "accept": "image/png"},
        )
        _check(raw.status_code == 200 and raw.content == payloads.upscaled_png, "upscale bytes", {})
    if "litellm" in targets:
        lt = targets["litellm"]
        answer = httpx.post(
            lt.url + "/v1/images/generations",
            timeout=60,
            content=lt.bodies["generate"].read_bytes(),
            headers={"content-type": "application/json", "authorization": lt.authorization},
        )
        _check(_ok(answer)["data"][0]["b64_json"] == expected, "litellm", answer.json())


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise RuntimeError(
            f"{response.request.url} answered {response.status_code}: {response.text[:500]}"
        )
    doc: dict[str, Any] = response.json()
    return doc


def _check(ok: bool, what: str, doc: dict[str, Any]) -> None:
    if not ok:
        shown = {k: (v if k != "images" else "...") for k, v in doc.items()}
        raise RuntimeError(f"wrong {what} answer: {shown}")


# --------------------------------------------------------------------------- metadata


def describe(
    args: argparse.Namespace, payloads: pl.Payloads, targets: dict[str, Target]
) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions = _versions(
        ["fastapi", "starlette", "uvicorn", "httpx", "pydantic", "uvloop", "httptools"]
    )
    wrk_words = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()
    wrk_version = "wrk " + (wrk_words[1].split("/")[-1] if len(wrk_words) > 1 else "?")
    access = "off" if args.no_access_log else "on"
    gen_kib = len(payloads.generate_image) / 1024
    return {
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {mem_kib / 1024**2:.1f} GiB RAM, "
        f"Linux {platform.release()}",
        "software": f"Python {platform.python_version()}, {versions}; {wrk_version}",
        "gateway": f"{args.workers} worker(s), access log {access}, log level {args.log_level}"
        + (f", extra env {' '.join(args.env)}" if args.env else "")
        + f"; {_git()}",
        "command": " ".join([".venv/bin/python", "bench/run.py", *sys.argv[1:]]),
        "rounds": args.rounds,
        "duration": args.duration,
        "generate_answer": f"one {gen_kib:.1f} KiB {payloads.generate_mime} as base64 JSON",
        "upscale_payload": (
            f"{len(payloads.upscale_png) / 1e6:.2f} MB PNG (1200x1000 noise) sent as "
            f"{len(payloads.upscale_b64) / 1e6:.2f} MB of base64 JSON, scale 2; the fake answers "
            f"a {len(payloads.upscaled_png) / 1e6:.2f} MB PNG (2400x2000); payload = the input PNG"
        ),
        "payload_bytes": len(payloads.upscale_png),
        "memory_reps": args.memory_reps,
        "targets": list(targets),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def _versions(names: list[str]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(found)


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "app"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "commit unknown"
    return f"commit {head or 'unknown'}" + (" with uncommitted changes in app/" if dirty else "")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="image-gateway benchmark (see bench/README.md)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run (default 4)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds per warm-up run (default 2)")
    parser.add_argument(
        "--memory-reps", type=int, default=3, help="fresh gateways per upscale RSS figure (3)"
    )
    parser.add_argument("--workers", type=int, default=1, help="IMAGE_GATEWAY_WORKERS (default 1)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s: a smoke run")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--no-access-log", action="store_true", help="IMAGE_GATEWAY_ACCESS_LOG=false"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the gateway (repeatable)",
    )
    parser.add_argument(
        "--scenarios",
        default="",
        help="comma-separated subset of: " + ", ".join(s.name for s in SCENARIOS),
    )
    parser.add_argument(
        "--generate-kb",
        type=int,
        default=None,
        help="make the fake's generate image a noise PNG of about this many KiB",
    )
    parser.add_argument("--litellm", default=None, help="path of a litellm binary (optional)")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM even if installed")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, bodies)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.memory_reps = 2, 2, 1, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed: `make system-deps` or `apt-get install -y wrk`", file=sys.stderr
        )
        return 2
    work = Path(tempfile.mkdtemp(prefix="image-gateway-bench-"))
    targets: dict[str, Target] = {}
    try:
        print(
            "building payloads, starting the fake and the gateway ...", file=sys.stderr, flush=True
        )
        payloads = pl.make_payloads(args.generate_kb)
        targets = start_targets(args, work, payloads)
        verify(targets, payloads)
        meta = describe(args, payloads, targets)
        fake_url = targets["fake"].url
        bench = Bench(args, targets, lambda: start_gateway(args, work, fake_url, "memory.log"))
        bench.warm_up(args.warmup)
        bench.rounds()
        meta["long_lived_gateway"] = long_lived_memory(bench)
        bench.memory_phase()
        meta["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        names = [s.name for s in bench._scenarios()]
        summary = report.summarize(
            bench.runs, bench.memory_runs, names, list(targets), meta["payload_bytes"]
        )
        print(report.markdown(summary, meta, list(targets)))
        save(meta, summary, bench.runs + bench.memory_runs, targets)
    finally:
        for target in reversed(list(targets.values())):
            target.service.stop()
        if args.keep:
            print(f"work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def long_lived_memory(bench: Bench) -> dict[str, int]:
    """The RSS of the gateway that served every round: after start-up, now, and its peak."""
    pids = bench.targets["gateway"].service.pids()
    return {
        "idle_after_start_kib": bench.idle_rss_kib,
        "after_rounds_kib": _rss(pids),
        "lifetime_peak_kib": sum(memory_kib(pid).get("VmHWM", 0) for pid in pids),
    }


def save(
    meta: dict[str, Any],
    summary: dict[str, Any],
    runs: list[dict[str, Any]],
    targets: dict[str, Target],
) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / time.strftime("bench-%Y%m%d-%H%M%S.json")
    log_lines = sum(1 for _ in targets["gateway"].service.log_path.open("rb"))
    doc = {"meta": meta, "summary": summary, "runs": runs, "gateway_log_lines": log_lines}
    path.write_text(json.dumps(doc, indent=1))
    print(f"raw figures: {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
