"""Webhooks: signed as Standard Webhooks describes (verified by the ``standardwebhooks``
reference library), retried after the receiver fails twice, attempts recorded on the job;
a destination outside the allowlist is refused at submission."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.jobs import webhooks
from tests.conftest import gateway, make_settings, png_bytes
from tests.emulators.common import EmulatorServer, EmulatorState, Fault

pytestmark = pytest.mark.anyio
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


@pytest.fixture(scope="module")
def receiver() -> Iterator[EmulatorServer]:
    async def hook(request: Request) -> Response:
        return Response(status_code=204)

    state = EmulatorState()
    app = Starlette(routes=[Route("/hooks/{name}", hook, methods=["POST"])])
    with EmulatorServer(app, state) as server:
        yield server


def settings(tmp_path: Path, receiver: EmulatorServer) -> Any:
    jobs = {"consumer": "t", "webhook_secret": SECRET, "webhook_allow": receiver.url + "/hooks/"}
    return make_settings(state={"data_dir": str(tmp_path)}, jobs=jobs)


async def test_delivered_signed_and_retried_after_two_failures(
    tmp_path: Path, receiver: EmulatorServer
) -> None:
    receiver.state.requests.clear()
    receiver.state.add_fault(Fault("status", status=500, path="/hooks/", times=2))
    sleeps: list[float] = []
    async with gateway(settings(tmp_path, receiver)) as client:
        jobs = client._transport.app.state.jobs  # type: ignore[attr-defined]
        repo = await jobs.ensure_started()

        async def no_wait(seconds: float) -> None:  # the backoff is recorded, not waited
            sleeps.append(seconds)
            await asyncio.sleep(0)

        jobs.deliverer.sleep = no_wait
        image = base64.b64encode(png_bytes(32, 24)).decode()
        body = {"image": image, "provider": "local", "scale": 2}
        body["callback_url"] = receiver.url + "/hooks/done"
        job = (
            await client.post("/v1/upscale", json=body, headers={"prefer": "respond-async"})
        ).json()
        assert (await jobs.wait_for(repo, job["id"], 30))["status"] == "succeeded"
        await asyncio.gather(*jobs._background)  # the delivery task, however long it takes
        final = (await client.get(f"/v1/jobs/{job['id']}")).json()

    deliveries = receiver.state.requests_to("/hooks/done")
    assert len(deliveries) == 3
    assert sleeps == [1.0, 2.0]
    ids = {d.headers["webhook-id"] for d in deliveries}
    assert len(ids) == 1  # one message, retried: receivers deduplicate on it
    verifier = Webhook(SECRET)
    for delivery in deliveries:
        event = verifier.verify(delivery.body, delivery.headers)
        assert event["type"] == "job.succeeded"
        assert event["data"]["id"] == job["id"] and event["data"]["status"] == "succeeded"
    tampered = json.loads(deliveries[-1].body)
    tampered["data"]["status"] = "failed"
    with pytest.raises(WebhookVerificationError):
        verifier.verify(json.dumps(tampered), deliveries[-1].headers)
    attempts = final["webhook"]["deliveries"]
    assert [(a["attempt"], a["ok"], a.get("status")) for a in attempts] == [
        (1, False, 500),
        (2, False, 500),
        (3, True, 204),
    ]


async def test_gives_up_after_the_retry_window() -> None:
    recorded: list[dict[str, Any]] = []
    sleeps: list[float] = []

    async def record(attempt: dict[str, Any]) -> None:
        recorded.append(attempt)

    async def no_wait(seconds: float) -> None:
        sleeps.append(seconds)

    deliverer = webhooks.Deliverer("secret", retry_for_s=10, timeout_s=1, sleep=no_wait)
    try:  # a port nothing listens on: every attempt fails to connect
        delivered = await deliverer.deliver("http://127.0.0.1:9/x", "msg_1", {"a": 1}, record)
    finally:
        await deliverer.aclose()
    assert delivered is False
    assert sleeps == [1.0, 2.0, 4.0]  # 7 s of backoff; the next 8 s would pass the 10 s window
    assert len(recorded) == 4 and not any(a["ok"] for a in recorded)


def test_allowlist_matching() -> None:
    allow = ["https://hooks.internal/jobs/", "http://10.0.0.5:8080/"]
    assert webhooks.allowed("https://hooks.internal/jobs/done", allow)
    assert webhooks.allowed("https://HOOKS.internal:443/jobs/x", allow)
    assert webhooks.allowed("http://10.0.0.5:8080/anything", allow)
    for url in (
        "https://hooks.internal/other",
        "http://hooks.internal/jobs/done",
        "https://hooks.internal.evil.com/jobs/",
        "https://hooks.internal@evil.com/jobs/",
        "http://10.0.0.5/",
        "http://10.0.0.5:8081/",
        "file:///etc/passwd",
        "not a url",
    ):
        assert not webhooks.allowed(url, allow), url
