"""A/B of the synchronous path: this checkout against a baseline, same machine, same rounds.

    .venv/bin/python bench/ab.py                 # baseline: this tree without the jobs layer
    .venv/bin/python bench/ab.py --ref main~3    # baseline: any git ref
    .venv/bin/python bench/ab.py --rounds 7 --duration 5

The default baseline is this very commit with the operation endpoints calling the service
directly instead of through ``app.jobs.serve`` (the only change jobs make to a request
without ``Prefer`` or ``Idempotency-Key``), so other work that landed meanwhile does not
blur the comparison. Both gateways run side by side (``python -m app`` from each tree, the
same settings and the same fake Venice as bench/run.py), every round measures each scenario
against the fake, this checkout and the baseline (the order alternating), and the report
gives medians and the ratio this/baseline for requests/s, p50, p99 and gateway CPU per
request. CPU per request is the figure least disturbed by other load on the machine; a
ratio within the rounds' own spread is "unchanged".
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import payloads as pl  # noqa: E402
import report  # noqa: E402
from procs import Service, free_port  # noqa: E402
from run import ROOT, Bench, Target, clean_env, gateway_env, parse_args, write_bodies  # noqa: E402

FIGURES = (("rps", "req/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"))
PREFER = {"prefer": "respond-async"}


JOBS_CALL = "jobs.serve(request, "
DIRECT_CALL = "request.app.state.service.serve(request, "


def without_jobs_layer(tree: Path) -> None:
    """The baseline tree's endpoints call the service directly, as before app/jobs."""
    operations = tree / "app" / "api" / "operations.py"
    text = operations.read_text()
    if text.count(JOBS_CALL) != 2:
        raise SystemExit(f"{operations}: expected two calls of {JOBS_CALL!r}")
    operations.write_text(text.replace(JOBS_CALL, DIRECT_CALL))


def start_gateway(
    name: str, tree: Path, args: argparse.Namespace, work: Path, fake_url: str
) -> Target:
    port = free_port()
    env = {**gateway_env(args, port, fake_url), "PYTHONPATH": str(tree)}
    service = Service(name, [sys.executable, "-m", "app"], env, work, work / f"{name}.log")
    service.start(f"http://127.0.0.1:{port}/healthz")
    paths = {"generate": "/v1/generate", "upscale": "/v1/upscale"}
    return Target(name, service, f"http://127.0.0.1:{port}", paths)


def start(args: argparse.Namespace, work: Path, baseline: Path) -> dict[str, Target]:
    fake_port = free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    command = [sys.executable, str(BENCH / "fake_venice.py"), "--port", str(fake_port)]
    fake = Service("fake", command, clean_env(), work, work / "fake.log")
    fake.start(fake_url + "/__stats")
    targets = {
        "fake": Target(
            "fake",
            fake,
            fake_url,
            {"generate": "/api/v1/image/generate", "upscale": "/api/v1/image/upscale"},
        )
    }
    targets["gateway"] = start_gateway("gateway", ROOT, args, work, fake_url)
    targets["baseline"] = start_gateway("baseline", baseline, args, work, fake_url)
    write_bodies({"fake": targets["fake"], "gateway": targets["gateway"]}, work, pl.make_payloads())
    targets["baseline"].bodies = dict(targets["gateway"].bodies)
    return targets


def check_trees(targets: dict[str, Target]) -> None:
    """Both answer a plain call; the baseline answers ``Prefer: respond-async`` with 200,
    which proves it runs the tree without the jobs layer (this checkout would answer 202;
    it is not asked, so that it never starts its job machinery during the measurement)."""
    headers = {"content-type": "application/json"}
    for name in ("gateway", "baseline"):
        body = targets[name].bodies["generate"].read_bytes()
        url = targets[name].url + "/v1/generate"
        asked = {**headers, **PREFER} if name == "baseline" else headers
        answer = httpx.post(url, content=body, timeout=30, headers=asked)
        if answer.status_code != 200:
            raise SystemExit(f"{name}: {answer.status_code}: {answer.text}")


def table(runs: list[dict[str, Any]], scenarios: list[str]) -> list[str]:
    lines = [
        "| scenario | figure | this checkout | baseline | ratio | spread of per-round ratios |",
        "|---|---|---|---|---|---|",
    ]
    for scenario in scenarios:
        this, base = (
            report.select(runs, scenario, "gateway"),
            report.select(runs, scenario, "baseline"),
        )
        for key, label in (*FIGURES, ("cpu_us_per_request", "CPU µs/request")):
            a, b = _median(this, key), _median(base, key)
            ratios = _round_ratios(this, base, key)
            spread = f"{min(ratios):.3f} .. {max(ratios):.3f}" if ratios else "n/a"
            ratio = f"{a / b:.3f}" if a and b else "n/a"
            lines.append(f"| {scenario} | {label} | {_fmt(a)} | {_fmt(b)} | {ratio} | {spread} |")
    return lines


def _value(run: dict[str, Any], key: str) -> float | None:
    cell = report.cell_summary([run])
    return None if cell is None else cell[key]


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [v for v in (_value(r, key) for r in runs) if v is not None]
    return statistics.median(values) if values else None


def _round_ratios(this: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> list[float]:
    by_round = {r["round"]: _value(r, key) for r in base}
    ratios = []
    for run in this:
        a, b = _value(run, key), by_round.get(run["round"])
        if a and b:
            ratios.append(a / b)
    return ratios


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--ref", default=None)
    own, rest = parser.parse_known_args()
    args = parse_args([*rest, "--no-litellm"])
    args.scenarios = args.scenarios or "generate_c32,generate_c1,upscale_c4"
    ref = own.ref or "HEAD"
    work = Path(tempfile.mkdtemp(prefix="image-gateway-ab-"))
    tree = work / "baseline-tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), ref], cwd=ROOT, check=True)
    if own.ref is None:
        without_jobs_layer(tree)
    targets: dict[str, Target] = {}
    try:
        targets = start(args, work, tree)
        if own.ref is None:
            check_trees(targets)
        bench = Bench(args, targets, lambda: targets["gateway"])
        bench.warm_up(args.warmup)
        bench.rounds()
        scenarios = [s.name for s in bench._scenarios()]
        described = subprocess.run(
            ["git", "log", "-1", "--format=%h %s", ref], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        if own.ref is None:
            described = f"{described}, without the jobs layer"
        print(f"## Synchronous path: this checkout vs `{described}`\n")
        print(
            f"{args.rounds} interleaved rounds of {args.duration} s, no Prefer and no "
            "Idempotency-Key; medians; ratio = this / baseline.\n"
        )
        print("\n".join(table(bench.runs, scenarios)))
        failed = sum(report.failures(r) for r in bench.runs)
        print(f"\nfailed requests: {failed}")
    finally:
        for target in reversed(list(targets.values())):
            target.service.stop()
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
