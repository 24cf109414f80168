"""SIGTERM with jobs running: the drain lets them finish within the grace period, and
hands over (leaves in the queue, unacknowledged) the ones still running when it ends; a
restarted gateway resumes those at the vendor. Real processes, Deep-Image emulator."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

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


def test_drain_hands_over_unfinished_jobs_and_finishes_the_rest(
    deepimage_server: EmulatorServer,
    deepimage: DeepImageState,
    tmp_path: Path,
    gateway_factory: Callable[[dict[str, str]], GatewayProcess],  # noqa: F811
) -> None:
    deepimage.plan = JobPlan(polls=10**6)
    short = gateway_env(deepimage_server, tmp_path / "d", IMAGE_GATEWAY_SHUTDOWN_GRACE_S="2")
    first = gateway_factory(short)
    with httpx.Client(base_url=first.url, timeout=30) as client:
        handed = [_submit(client, f"handed-over-{i}") for i in range(2)]
    until(lambda: polled_jobs(deepimage) == 2, what="two jobs polling")
    first.terminate()  # SIGTERM; the jobs cannot finish within 2 s
    assert first.wait(30) == 0

    deepimage.plan.polls = 0
    long = {**short, "IMAGE_GATEWAY_SHUTDOWN_GRACE_S": "60"}
    second = gateway_factory(long)
    with httpx.Client(base_url=second.url, timeout=30) as client:
        jobs = until(lambda: _all_final(client, handed), what="the handed-over jobs")
        assert [(j["status"], j["attempts"]) for j in jobs] == [("succeeded", 2)] * 2

        deepimage.plan = JobPlan(polls=10**6)
        finishing = _submit(client, "finished-in-drain")
        until(lambda: polled_jobs(deepimage) == 3, what="the third job polling")
        second.terminate()
        # The drain closes idle kept-alive connections at once (app/server_limits.py), so a
        # request on the client's pooled connection can race that close: probe and submit on
        # new connections, as a load balancer would.
        until(lambda: httpx.get(second.url + "/readyz").status_code == 503, what="/readyz 503")
        late = httpx.post(
            second.url + "/v1/generate",
            json={"prompt": "late"},
            headers={"prefer": "respond-async"},
        )
        assert late.status_code == 503
        deepimage.plan.polls = 0  # the vendor finishes while the gateway drains
        assert second.wait(60) == 0

    third = gateway_factory(long)
    with httpx.Client(base_url=third.url, timeout=30) as client:
        (job,) = until(lambda: _all_final(client, [finishing]), what="the drained job")
    assert (job["status"], job["attempts"]) == ("succeeded", 1)  # finished by the draining one
    expected = Counter({"handed-over-0": 1, "handed-over-1": 1, "finished-in-drain": 1})
    assert submissions_by_prompt(deepimage) == expected
