"""Two gateway processes sharing one real redis-server: a job accepted by one is polled,
fetched and canceled through the other, and when the first is killed (SIGKILL) mid-job the
second takes its resumable jobs over (XAUTOCLAIM once the heartbeat lease lapses) and
finishes them at the vendor without submitting them again."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.emulators.common import EmulatorServer
from tests.emulators.deepimage import DeepImageState, JobPlan
from tests.jobs.test_crash import (
    _all_final,
    _submit,
    gateway_env,
    gateway_factory,  # noqa: F401  (a fixture)
    polled_jobs,
    submissions_by_prompt,
    until,
)
from tests.process import GatewayProcess


def replica_env(
    emulator: EmulatorServer, redis_url: str, prefix: str, name: str, tmp: Path
) -> dict[str, str]:
    return gateway_env(
        emulator,
        tmp / name,  # unused with Redis: proves nothing is kept locally
        IMAGE_GATEWAY_STATE__URL=redis_url,
        IMAGE_GATEWAY_STATE__PREFIX=prefix,
        IMAGE_GATEWAY_JOBS__CONSUMER=name,
        IMAGE_GATEWAY_JOBS__LEASE_S="2",
    )


def test_two_replicas_share_jobs_and_take_over_from_a_dead_one(
    deepimage_server: EmulatorServer,
    deepimage: DeepImageState,
    redis_server: Any,
    tmp_path: Path,
    gateway_factory: Callable[[dict[str, str]], GatewayProcess],  # noqa: F811
) -> None:
    prefix = f"replicas-{uuid.uuid4().hex}:"
    env = {n: replica_env(deepimage_server, redis_server.url, prefix, n, tmp_path) for n in "ab"}
    deepimage.plan = JobPlan(polls=10**6)
    a = gateway_factory(env["a"])
    prompts = [f"replica-job-{i}" for i in range(5)]
    with httpx.Client(base_url=a.url, timeout=30) as client:
        ids = [_submit(client, prompt) for prompt in prompts]
    until(lambda: polled_jobs(deepimage) == 5, what="five jobs polling, all on replica a")

    b = gateway_factory(env["b"])
    with httpx.Client(base_url=b.url, timeout=30) as through_b:
        seen = through_b.get(f"/v1/jobs/{ids[0]}")
        assert seen.status_code == 200 and seen.json()["status"] == "running"
        canceled = through_b.delete(f"/v1/jobs/{ids[4]}")
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
        assert through_b.get(f"/v1/jobs/{ids[0]}/result").json()["code"] == "job_conflict"

        assert a.proc is not None
        a.proc.kill()
        a.proc.wait(10)
        deepimage.plan.polls = 0
        jobs = until(lambda: _all_final(through_b, ids), timeout=90, what="b finishing a's jobs")
        results = [through_b.get(f"/v1/jobs/{job_id}/result") for job_id in ids[:4]]

    assert [job["status"] for job in jobs] == ["succeeded"] * 4 + ["canceled"]
    assert all(job["attempts"] == 2 for job in jobs[:4])  # resumed by b, not resubmitted
    assert all(result.status_code == 200 for result in results)
    assert submissions_by_prompt(deepimage) == Counter({prompt: 1 for prompt in prompts})
    assert not any((tmp_path / name).exists() for name in "ab")


def test_a_job_accepted_by_one_replica_is_fetched_through_the_other(
    deepimage_server: EmulatorServer,
    deepimage: DeepImageState,
    redis_server: Any,
    tmp_path: Path,
    gateway_factory: Callable[[dict[str, str]], GatewayProcess],  # noqa: F811
) -> None:
    prefix = f"replicas-{uuid.uuid4().hex}:"
    env = {n: replica_env(deepimage_server, redis_server.url, prefix, n, tmp_path) for n in "ab"}
    a, b = gateway_factory(env["a"]), gateway_factory(env["b"])
    with httpx.Client(base_url=a.url, timeout=30) as via_a:
        job_id = _submit(via_a, "fetched elsewhere")
    with httpx.Client(base_url=b.url, timeout=30) as via_b:
        until(lambda: _all_final(via_b, [job_id]), what="the job finishing")
        answer = via_b.get(f"/v1/jobs/{job_id}/result", headers={"accept": "image/*"})
        assert answer.status_code == 200 and answer.content[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0")
        assert answer.headers["x-image-gateway-provider"] == "deepimage"
        waited = via_b.post(
            "/v1/generate",
            json={"prompt": "waited for", "provider": "deepimage"},
            headers={"prefer": "wait=60", "idempotency-key": "rk"},
        )
        assert waited.status_code == 200
    with httpx.Client(base_url=a.url, timeout=30) as via_a:
        again = via_a.post(
            "/v1/generate",
            json={"prompt": "waited for", "provider": "deepimage"},
            headers={"idempotency-key": "rk"},
        )
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert again.content == waited.content
    assert submissions_by_prompt(deepimage)["waited for"] == 1
