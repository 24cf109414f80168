"""Asynchronous requests in process, on a real SQLite file, with the local provider."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import gateway, make_settings, png_bytes

pytestmark = pytest.mark.anyio


def settings(tmp_path: Path, **jobs: Any) -> Any:
    return make_settings(
        state={"data_dir": str(tmp_path / "data")}, jobs={"consumer": "test", **jobs}
    )


def upscale_body(**extra: Any) -> dict[str, Any]:
    image = base64.b64encode(png_bytes(32, 24)).decode()
    return {"image": image, "scale": 2, "provider": "local", **extra}


async def poll(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """Wait=N on the job resource is not offered; the job is small, so ask until final."""
    for _ in range(2000):
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job  # type: ignore[no-any-return]
    raise AssertionError("the job did not finish")


async def test_respond_async_then_poll_then_result(tmp_path: Path) -> None:
    async with gateway(settings(tmp_path)) as client:
        sync = await client.post("/v1/upscale", json=upscale_body())
        accepted = await client.post(
            "/v1/upscale", json=upscale_body(), headers={"prefer": "respond-async"}
        )
        assert accepted.status_code == 202
        job = accepted.json()
        assert accepted.headers["location"] == f"/v1/jobs/{job['id']}"
        assert accepted.headers["preference-applied"] == "respond-async"
        assert job["status"] in ("queued", "running", "succeeded")
        assert job["operation"] == "upscale"
        final = await poll(client, job["id"])
        assert final["status"] == "succeeded"
        assert final["attempts"] == 1
        assert final["provider"] == "local" and final["result_url"].endswith("/result")
        result = await client.get(final["result_url"])
        assert result.status_code == 200
        body, expected = result.json(), sync.json()
        assert body["id"] == job["id"]
        assert body["images"] == expected["images"]  # the same pixels, same encoding
        assert (body["provider"], body["model"]) == (expected["provider"], expected["model"])
        assert body["cost"] == expected["cost"] and body["warnings"] == expected["warnings"]
        raw = await client.get(final["result_url"], headers={"accept": "image/png"})
        assert raw.headers["content-type"] == "image/png"
        assert raw.content == base64.b64decode(expected["images"][0]["data"])
        assert raw.headers["x-image-width"] == "64"


async def test_wait_answers_like_a_synchronous_call(tmp_path: Path) -> None:
    async with gateway(settings(tmp_path)) as client:
        answer = await client.post(
            "/v1/upscale", json=upscale_body(), headers={"prefer": "respond-async, wait=30"}
        )
        assert answer.status_code == 200
        assert answer.json()["images"][0]["width"] == 64
        assert answer.headers["preference-applied"] == "respond-async, wait=30"
        assert answer.headers["x-image-gateway-job"].startswith("job_")


async def test_failed_job_keeps_its_problem(tmp_path: Path) -> None:
    async with gateway(settings(tmp_path)) as client:
        body = upscale_body(provider="venice")  # not configured here
        sync = await client.post("/v1/upscale", json=body)
        answer = await client.post("/v1/upscale", json=body, headers={"prefer": "respond-async"})
        final = await poll(client, answer.json()["id"])
        assert final["status"] == "failed"
        assert final["error"]["status"] == sync.status_code >= 400
        assert final["error"]["code"] == sync.json()["code"]
        result = await client.get(f"/v1/jobs/{final['id']}/result")
        assert result.status_code == sync.status_code
        assert result.headers["content-type"] == "application/problem+json"
        assert result.json() == final["error"]


async def test_unknown_job_is_404_with_its_own_code(tmp_path: Path) -> None:
    async with gateway(settings(tmp_path)) as client:
        for path in ("/v1/jobs/job_nope", "/v1/jobs/job_nope/result", "/v1/jobs/x"):
            answer = await client.get(path)
            assert answer.status_code == 404
            assert answer.json()["code"] == "job_not_found"
        assert (await client.delete("/v1/jobs/job_nope")).json()["code"] == "job_not_found"


async def test_no_prefer_no_key_creates_no_state(tmp_path: Path) -> None:
    async with gateway(settings(tmp_path)) as client:
        answer = await client.post("/v1/upscale", json=upscale_body())
        assert answer.status_code == 200
        assert "x-image-gateway-job" not in answer.headers
        lookup = await client.get("/v1/jobs/job_123")
        assert lookup.status_code == 404 and lookup.json()["code"] == "job_not_found"
    assert not (tmp_path / "data").exists()


async def test_callback_url_needs_prefer_and_the_allowlist(tmp_path: Path) -> None:
    jobs = {"webhook_secret": "s3cret", "webhook_allow": "http://127.0.0.1:9/hooks/"}
    async with gateway(settings(tmp_path, **jobs)) as client:
        sync = await client.post(
            "/v1/upscale", json=upscale_body(callback_url="http://127.0.0.1:9/hooks/a")
        )
        assert sync.status_code == 422
        for url in (
            "http://127.0.0.1:9/other",
            "http://127.0.0.1:10/hooks/a",
            "https://127.0.0.1:9/hooks/a",
            "http://user@127.0.0.1:9/hooks/a",
            "ftp://127.0.0.1:9/hooks/a",
        ):
            refused = await client.post(
                "/v1/upscale",
                json=upscale_body(callback_url=url),
                headers={"prefer": "respond-async"},
            )
            assert refused.status_code == 422, url
            assert refused.json()["errors"][0]["loc"] == ["body", "callback_url"]
        ok = await client.post(
            "/v1/upscale",
            json=upscale_body(callback_url="http://127.0.0.1:9/hooks/a"),
            headers={"prefer": "respond-async"},
        )
        assert ok.status_code == 202


async def test_queue_full_is_503_with_retry_after(tmp_path: Path) -> None:
    async with gateway(settings(tmp_path, max_queued=1, max_running=1)) as client:
        app_jobs = client._transport.app.state.jobs  # type: ignore[attr-defined]
        await app_jobs.ensure_started()
        await app_jobs.runner.stop()  # nothing runs, so submissions stay queued
        first = await client.post(
            "/v1/upscale", json=upscale_body(), headers={"prefer": "respond-async"}
        )
        assert first.status_code == 202
        full = await client.post(
            "/v1/upscale", json=upscale_body(), headers={"prefer": "respond-async"}
        )
        assert full.status_code == 503
        assert full.json()["code"] == "queue_full"
        assert int(full.headers["retry-after"]) >= 1


async def test_cancel_a_queued_job_never_runs_it(tmp_path: Path) -> None:
    async with gateway(settings(tmp_path)) as client:
        app_jobs = client._transport.app.state.jobs  # type: ignore[attr-defined]
        await app_jobs.ensure_started()
        await app_jobs.runner.stop()
        job = (
            await client.post(
                "/v1/upscale", json=upscale_body(), headers={"prefer": "respond-async"}
            )
        ).json()
        canceled = await client.delete(f"/v1/jobs/{job['id']}")
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
        again = await client.delete(f"/v1/jobs/{job['id']}")
        assert again.status_code == 409
        result = await client.get(f"/v1/jobs/{job['id']}/result")
        assert result.status_code == 409
        assert (await client.get(f"/v1/jobs/{job['id']}")).json()["attempts"] == 0


async def test_an_unreachable_redis_is_503_for_jobs_and_nothing_else() -> None:
    from tests.process import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with gateway(make_settings(state={"url": url})) as client:
        plain = await client.post("/v1/upscale", json=upscale_body())
        job = await client.post(
            "/v1/upscale", json=upscale_body(), headers={"prefer": "respond-async"}
        )
        lookup = await client.get("/v1/jobs/job_x")
    assert plain.status_code == 200
    for answer in (job, lookup):
        assert answer.status_code == 503
        assert answer.json()["code"] == "state_unavailable"
        assert answer.headers["retry-after"] == "5"


def test_worker_processes_get_distinct_queue_names() -> None:
    import os

    from app.jobs.service import consumer_name

    assert consumer_name("pod-7", 1) == "pod-7"
    assert consumer_name("pod-7", 4) == f"pod-7-{os.getpid()}"
    assert consumer_name(None, 1)
