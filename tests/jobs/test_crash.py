"""Crash safety against a real gateway process: 20 asynchronous Deep-Image jobs, the
gateway killed with SIGKILL while they run (nine polling at the vendor, one inside its
submission, ten still queued), then restarted on the same SQLite file. Every job ends
succeeded or failed with a reason, none is lost, and the emulator saw exactly one
submission per job."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulators.common import EmulatorServer, Fault
from tests.emulators.deepimage import DEFAULT_API_KEY, DeepImageState, JobPlan
from tests.process import GatewayProcess

FINAL = ("succeeded", "failed", "canceled")


def until(condition: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Poll ``condition`` (state in another process or thread) until it holds, bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


def gateway_env(emulator: EmulatorServer, data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "IMAGE_GATEWAY_DEEPIMAGE__API_KEY": DEFAULT_API_KEY,
        "IMAGE_GATEWAY_DEEPIMAGE__BASE_URL": emulator.url,
        "IMAGE_GATEWAY_STATE__DATA_DIR": str(data_dir),
        "IMAGE_GATEWAY_JOBS__CONSUMER": "gateway-a",
        "IMAGE_GATEWAY_JOBS__MAX_RUNNING": "10",
        "IMAGE_GATEWAY_ACCESS_LOG": "false",
        **extra,
    }


def submissions_by_prompt(state: DeepImageState) -> Counter[str]:
    requests = state.requests_to("/rest_api/process")
    return Counter(r.json()["background"]["generate"]["description"] for r in requests)


def polled_jobs(state: DeepImageState) -> int:
    return sum(1 for job in list(state.jobs.values()) if job.polls >= 1)


@pytest.fixture
def gateway_factory() -> Iterator[Callable[[dict[str, str]], GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(env: dict[str, str]) -> GatewayProcess:
        process = GatewayProcess(env=env).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def test_sigkill_mid_jobs_then_restart_loses_nothing_and_never_resubmits(
    deepimage_server: EmulatorServer,
    deepimage: DeepImageState,
    tmp_path: Path,
    gateway_factory: Callable[[dict[str, str]], GatewayProcess],
) -> None:
    deepimage.plan = JobPlan(polls=10**6)  # in progress until the test says otherwise
    deepimage.add_fault(Fault("hang", path="/rest_api/process"))  # one submission never returns
    env = gateway_env(deepimage_server, tmp_path / "data")
    first = gateway_factory(env)
    prompts = [f"job-{i:02d}" for i in range(20)]
    with httpx.Client(base_url=first.url, timeout=30) as client:
        ids = [_submit(client, prompt) for prompt in prompts]
    until(lambda: polled_jobs(deepimage) == 9, what="nine jobs polling at the vendor")
    assert sum(submissions_by_prompt(deepimage).values()) == 10  # ten ran, ten queued
    assert first.proc is not None
    first.proc.kill()  # SIGKILL: no drain, no cleanup
    first.proc.wait(10)

    deepimage.plan.polls = 0  # the vendor finishes its jobs while the gateway is down
    second = gateway_factory(env)
    with httpx.Client(base_url=second.url, timeout=30) as client:
        jobs = until(lambda: _all_final(client, ids), timeout=90, what="every job final")
        results = [client.get(f"/v1/jobs/{job['id']}/result") for job in jobs]

    statuses = Counter(job["status"] for job in jobs)
    assert statuses == {"succeeded": 19, "failed": 1}, statuses
    (failed,) = [job for job in jobs if job["status"] == "failed"]
    assert failed["error"]["code"] == "job_interrupted"
    assert failed["error"]["status"] == 500
    counts = submissions_by_prompt(deepimage)
    assert counts == Counter({prompt: 1 for prompt in prompts}), counts
    for job, result in zip(jobs, results, strict=True):
        if job["status"] == "succeeded":
            assert result.status_code == 200 and result.json()["images"][0]["data"]
    resumed = [job for job in jobs if job["attempts"] == 2 and job["status"] == "succeeded"]
    assert len(resumed) == 9  # picked up at the vendor, not submitted again


def _submit(client: httpx.Client, prompt: str) -> str:
    answer = client.post(
        "/v1/generate",
        json={"prompt": prompt, "provider": "deepimage"},
        headers={"prefer": "respond-async"},
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _all_final(client: httpx.Client, ids: list[str]) -> list[dict[str, Any]] | None:
    jobs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    return jobs if all(job.get("status") in FINAL for job in jobs) else None
