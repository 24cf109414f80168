"""The jobs' metrics: jobs by status, queue depth, job age, idempotent replays (webhook
deliveries are counted in test_webhooks' scenario and checked here by name)."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import gateway, make_settings, png_bytes

pytestmark = pytest.mark.anyio


async def samples(
    client: httpx.AsyncClient,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = (await client.get("/metrics")).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_jobs_metrics_move(tmp_path: Path) -> None:
    settings = make_settings(state={"data_dir": str(tmp_path)}, jobs={"consumer": "m"})
    image = base64.b64encode(png_bytes(32, 24)).decode()
    body = {"image": image, "provider": "local", "scale": 2}
    async with gateway(settings) as client:
        jobs = client._transport.app.state.jobs  # type: ignore[attr-defined]
        await jobs.ensure_started()
        before = await samples(client)
        headers = {"prefer": "wait=30", "idempotency-key": "metrics-1"}
        for _ in range(3):
            assert (await client.post("/v1/upscale", json=body, headers=headers)).status_code == 200
        await jobs.runner.beat_once()
        after = await samples(client)
    up = {"operation": "upscale"}
    delta = [
        value(after, name, **labels) - value(before, name, **labels)
        for name, labels in (
            ("image_gateway_jobs_total", {**up, "status": "queued"}),
            ("image_gateway_jobs_total", {**up, "status": "succeeded"}),
            ("image_gateway_idempotent_replays_total", up),
            ("image_gateway_job_age_seconds_count", {**up, "status": "succeeded"}),
        )
    ]
    assert delta == [1, 1, 2, 1]
    assert value(after, "image_gateway_job_queue_depth", state="waiting") == 0
    assert ("image_gateway_job_queue_depth", (("state", "claimed"),)) in after
    for outcome in ("delivered", "failed", "gave_up"):
        key = ("image_gateway_webhook_deliveries_total", (("outcome", outcome),))
        assert key in after
