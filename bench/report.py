"""Medians over rounds and the Markdown report (made to be pasted into docs/performance.md)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

#: The goals of issue 12 (issue 9 asked for >= 3,500 req/s and <= 4x RSS).
GOAL_LITELLM_RATIO = 15.0
GOAL_ADDED_P50_MS = 0.5
GOAL_UPSCALE_ADDED_MS = 20.0
GOAL_RSS_MULTIPLE = 3.0

Run = dict[str, Any]


def failures(run: Run) -> int:
    w = run["wrk"]
    keys = ("connect_errors", "read_errors", "write_errors", "non_2xx_3xx", "timeouts")
    return sum(int(w[k]) for k in keys)


def rps(run: Run) -> float:
    seconds = float(run["wrk"]["duration_us"]) / 1e6
    return float(run["wrk"]["requests"]) / seconds


def ms(run: Run, key: str) -> float:
    return float(run["wrk"][key]) / 1000


def cpu_us_per_request(run: Run) -> float | None:
    used = run["cpu"].get(run["target"])
    requests = run["wrk"]["requests"]
    return used / requests * 1e6 if used is not None and requests else None


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def select(runs: list[Run], scenario: str, target: str) -> list[Run]:
    return [r for r in runs if r["scenario"] == scenario and r["target"] == target]


def cell_summary(runs: list[Run]) -> dict[str, Any] | None:
    if not runs:
        return None
    return {
        "rounds": len(runs),
        "rps": median(rps(r) for r in runs),
        "p50_ms": median(ms(r, "p50_us") for r in runs),
        "p99_ms": median(ms(r, "p99_us") for r in runs),
        "cpu_us_per_request": median(cpu_us_per_request(r) for r in runs),
        "requests": sum(r["wrk"]["requests"] for r in runs),
        "failed": sum(failures(r) for r in runs),
    }


def added_p50_ms(runs: list[Run], scenario: str, target: str) -> float | None:
    """Median over rounds of (target p50 - fake p50) in the same round."""
    direct = {r["round"]: ms(r, "p50_us") for r in select(runs, scenario, "fake")}
    diffs = [ms(r, "p50_us") - direct[r["round"]] for r in select(runs, scenario, target)]
    return median(d for d in diffs if d is not None) if diffs else None


def rss_growth(runs: list[Run], payload_bytes: int) -> dict[str, float]:
    """Peak RSS growth per in-flight request, in MB and as a multiple of the payload."""
    growths = [r["memory"]["growth_kib"] * 1024 / r["connections"] for r in runs if "memory" in r]
    per_request = median(growths)
    if per_request is None:
        return {}
    return {
        "mb": per_request / 1e6,
        "multiple": per_request / payload_bytes,
        "max_multiple": max(growths) / payload_bytes,
        "runs": len(growths),
    }


def other_load(runs: list[Run]) -> dict[str, float]:
    loads = [r["cpu"]["other"] / r["cpu"]["wall"] for r in runs if r["cpu"]["wall"] > 0]
    return {"median": statistics.median(loads), "max": max(loads)} if loads else {}


def summarize(
    runs: list[Run], memory_runs: list[Run], scenarios: list[str], targets: list[str], payload: int
) -> dict[str, Any]:
    cells = {s: {t: cell_summary(select(runs, s, t)) for t in targets} for s in scenarios}
    added = {s: {t: added_p50_ms(runs, s, t) for t in targets if t != "fake"} for s in scenarios}
    memory = {
        s: rss_growth(select(memory_runs, s, "gateway"), payload)
        for s in scenarios
        if "upscale" in s
    }
    return {"cells": cells, "added_p50_ms": added, "memory": memory, "other_load": other_load(runs)}


# --------------------------------------------------------------------------- formatting


def num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _cell(summary: dict[str, Any], scenario: str, target: str) -> dict[str, Any] | None:
    cell: dict[str, Any] | None = summary["cells"].get(scenario, {}).get(target)
    return cell


def _row(label: str, values: list[str]) -> str:
    return "| " + " | ".join([label, *values]) + " |"


def generate_table(summary: dict[str, Any], targets: list[str]) -> list[str]:
    names = {"fake": "fake direct", "gateway": "image-gateway", "litellm": "LiteLLM proxy"}
    lines = [_row("", [names[t] for t in targets]), "|---" + "|---:" * len(targets) + "|"]

    def row(label: str, scenario: str, fn: Any) -> None:
        cells = [_cell(summary, scenario, t) for t in targets]
        lines.append(
            _row(label, [fn(c, t) if c else "-" for c, t in zip(cells, targets, strict=True)])
        )

    row("c=32 requests/s", "generate_c32", lambda c, t: num(c["rps"]))
    row(
        "c=32 p50 / p99 (ms)",
        "generate_c32",
        lambda c, t: f"{num(c['p50_ms'])} / {num(c['p99_ms'])}",
    )
    row("c=1 requests/s", "generate_c1", lambda c, t: num(c["rps"]))
    row("c=1 p50 (ms)", "generate_c1", lambda c, t: num(c["p50_ms"], 3))
    added = summary["added_p50_ms"].get("generate_c1", {})
    lines.append(
        _row("c=1 added p50 (ms)", ["-" if t == "fake" else num(added.get(t), 3) for t in targets])
    )
    row(
        "CPU per request at c=32 (µs)", "generate_c32", lambda c, t: num(c["cpu_us_per_request"], 1)
    )
    failed = [
        str(
            sum(
                (_cell(summary, s, t) or {}).get("failed", 0)
                for s in ("generate_c32", "generate_c1")
            )
        )
        for t in targets
    ]
    lines.append(_row("failed answers (all runs)", failed))
    return lines


def upscale_table(summary: dict[str, Any], payload: int) -> list[str]:
    lines = [
        _row(
            "c=4",
            [
                "fake direct p50 / p99 (ms)",
                "gateway p50 / p99 (ms)",
                "added p50 (ms)",
                "gateway req/s",
                "peak RSS growth per in-flight request",
                "failed",
            ],
        ),
        "|---" + "|---:" * 6 + "|",
    ]
    labels = {"upscale_c4": "JSON answer (base64)", "upscale_c4_bytes": "Accept: image/png"}
    for scenario, label in labels.items():
        fake, gw = _cell(summary, scenario, "fake"), _cell(summary, scenario, "gateway")
        if not gw or not fake:
            continue
        mem = summary["memory"].get(scenario, {})
        growth = (
            f"{num(mem['mb'], 1)} MB = {num(mem['multiple'], 1)}x payload "
            f"(max {num(mem['max_multiple'], 1)}x)"
            if mem.get("mb") is not None
            else "-"
        )
        lines.append(
            _row(
                label,
                [
                    f"{num(fake['p50_ms'], 1)} / {num(fake['p99_ms'], 1)}",
                    f"{num(gw['p50_ms'], 1)} / {num(gw['p99_ms'], 1)}",
                    num(summary["added_p50_ms"][scenario].get("gateway"), 1),
                    num(gw["rps"], 1),
                    growth,
                    str(gw["failed"] + fake["failed"]),
                ],
            )
        )
    return lines


def generate_section(
    summary: dict[str, Any], meta: dict[str, Any], targets: list[str]
) -> list[str]:
    if not targets:
        return []
    title = f"### POST /v1/generate, provider venice (the fake answers {meta['generate_answer']})"
    return [title, "", *generate_table(summary, targets), ""]


def upscale_section(summary: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    rows = upscale_table(summary, meta["payload_bytes"])
    if len(rows) <= 2:
        return []
    notes = [
        "",
        "Peak RSS growth: VmHWM during the run minus the RSS of a fresh gateway process after "
        "a short generate warm-up, divided by the 4 requests in flight; median of "
        f"{meta['memory_reps']} fresh processes per row.",
    ]
    life = meta.get("long_lived_gateway")
    if life:
        mib = {k: v / 1024 for k, v in life.items()}
        notes.append(
            f"The gateway that served every round: {mib['idle_after_start_kib']:.0f} MiB RSS "
            f"after start-up, {mib['after_rounds_kib']:.0f} MiB after the rounds (memory the "
            f"allocator keeps), {mib['lifetime_peak_kib']:.0f} MiB at its peak."
        )
    title = f"### POST /v1/upscale, provider venice: {meta['upscale_payload']}"
    return [title, "", *rows, *notes, ""]


def goals_table(summary: dict[str, Any]) -> list[str]:
    gen = _cell(summary, "generate_c32", "gateway") or {}
    lite = _cell(summary, "generate_c32", "litellm")
    failed = sum((_cell(summary, s, "gateway") or {}).get("failed", 0) for s in summary["cells"])
    added = summary["added_p50_ms"].get("generate_c1", {}).get("gateway")
    up_added = summary["added_p50_ms"].get("upscale_c4", {}).get("gateway")
    mem = summary["memory"].get("upscale_c4", {}).get("multiple")
    ratio = lite["rps"] / 1 if lite and lite.get("rps") else None
    if ratio is not None and gen.get("rps"):
        ratio = gen["rps"] / ratio
    rows = [
        ("zero failed answers", failed, "failed", 0, 0, False),
        ("≤ 0.5 ms added p50 at c=1", added, "ms", 3, GOAL_ADDED_P50_MS, False),
        (
            "upscale 4.8 MB: ≤ 20 ms added p50 at c=4",
            up_added,
            "ms",
            1,
            GOAL_UPSCALE_ADDED_MS,
            False,
        ),
        (
            "upscale 4.8 MB: peak RSS growth ≤ 3x payload per in-flight request",
            mem,
            "x",
            1,
            GOAL_RSS_MULTIPLE,
            False,
        ),
        (
            "≥ 15x LiteLLM's req/s at c=32",
            ratio if lite else None,
            "x",
            1,
            GOAL_LITELLM_RATIO,
            True,
        ),
    ]
    lines = [_row("goal", ["measured", "met"]), "|---|---:|:---:|"]
    for goal, value, unit, digits, target, at_least in rows:
        if value is None:
            lines.append(_row(goal, ["not measured", "-"]))
            continue
        ok = value >= target if at_least else value <= target
        sep = "" if unit == "x" else " "
        shown = f"{num(value, digits)}{sep}{unit}" if digits else f"{value:,.0f}{sep}{unit}"
        lines.append(_row(goal, [shown, "yes" if ok else "**no**"]))
    return lines


def markdown(summary: dict[str, Any], meta: dict[str, Any], targets: list[str]) -> str:
    load = summary["other_load"]
    gen_targets = [
        t for t in targets if any(_cell(summary, s, t) for s in ("generate_c32", "generate_c1"))
    ]
    out = [
        "## image-gateway benchmark",
        "",
        f"- machine: {meta['machine']}",
        f"- software: {meta['software']}",
        f"- gateway: {meta['gateway']}",
        f"- command: `{meta['command']}`",
        f"- {meta['rounds']} interleaved rounds of {meta['duration']} s per run; "
        "medians over rounds",
        f"- other load on the machine during the runs: median {num(load.get('median'))} cores, "
        f"max {num(load.get('max'))} cores (CPU not used by the fake, the gateway, LiteLLM or wrk)",
        "",
        *generate_section(summary, meta, gen_targets),
        *upscale_section(summary, meta),
        "### Goals (issue 12)",
        "",
        *goals_table(summary),
        "",
    ]
    return "\n".join(out)
