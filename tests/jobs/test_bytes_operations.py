"""Idempotency-Key on every billed operation, not only the JSON ones: the ``/bytes``
operations and the multipart upload replay a stored answer without a second vendor call,
refuse another body with the key (422) and conflict while running (409); the /bytes ones
answer synchronously whatever Prefer says; the dry runs bill nothing and ignore both
headers. A finished job's image has an operation of its own. Against the Deep-Image
emulator."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import gateway, make_settings, png_bytes
from tests.emulators.common import EmulatorServer, Fault
from tests.emulators.deepimage import DeepImageState
from tests.jobs.conftest import deepimage_settings
from tests.jobs.test_idempotency import body, submissions, until_held

pytestmark = pytest.mark.anyio
PNG = png_bytes(32, 24)
FORM = {"scale": "2", "provider": "deepimage"}


def settings(server: EmulatorServer, tmp_path: Path) -> Any:
    state = {"data_dir": str(tmp_path / "data")}
    return make_settings(
        deepimage=deepimage_settings(server), state=state, jobs={"consumer": "test"}
    )


def upload() -> dict[str, Any]:
    return {"files": {"image": ("a.png", PNG, "image/png")}, "data": FORM}


async def test_upscale_bytes_replays_the_image_and_refuses_another_body(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, tmp_path: Path
) -> None:
    headers = {"idempotency-key": "bytes-1"}
    async with gateway(settings(deepimage_server, tmp_path)) as client:
        first = await client.post("/v1/upscale/bytes", json=body(), headers=headers)
        again = await client.post("/v1/upscale/bytes", json=body(), headers=headers)
        other = await client.post("/v1/upscale/bytes", json=body(scale=3), headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.headers["content-type"] == "image/png" and first.content.startswith(b"\x89PNG")
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    for name in ("x-image-width", "x-image-height", "x-image-gateway-job"):
        assert again.headers[name] == first.headers[name]
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert submissions(deepimage) == 1


async def test_upscale_bytes_with_a_running_key_is_409(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, tmp_path: Path
) -> None:
    deepimage.add_fault(Fault("gated", path="/rest_api/process"))
    headers = {"idempotency-key": "bytes-running"}
    async with gateway(settings(deepimage_server, tmp_path)) as client:
        first = asyncio.create_task(client.post("/v1/upscale/bytes", json=body(), headers=headers))
        await until_held(deepimage)
        repeat = await client.post("/v1/upscale/bytes", json=body(), headers=headers)
        deepimage.open_gate()
        original = await first
    assert repeat.status_code == 409 and repeat.json()["code"] == "idempotency_conflict"
    assert original.status_code == 200 and original.content.startswith(b"\x89PNG")
    assert submissions(deepimage) == 1


async def test_multipart_operations_replay_too(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, tmp_path: Path
) -> None:
    async with gateway(settings(deepimage_server, tmp_path)) as client:

        async def twice(path: str, key: str) -> list[httpx.Response]:
            headers = {"idempotency-key": key}
            return [await client.post(path, headers=headers, **upload()) for _ in "ab"]

        as_json = await twice("/v1/upscale/multipart", "mp-json")
        as_bytes = await twice("/v1/upscale/multipart/bytes", "mp-bytes")
    for first, again in (as_json, as_bytes):
        assert first.status_code == again.status_code == 200
        assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    image = base64.b64decode(as_json[0].json()["images"][0]["data"])
    assert as_bytes[0].content == image
    assert submissions(deepimage) == 2  # one per key


async def test_generate_bytes_replays_without_a_second_call(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, tmp_path: Path
) -> None:
    headers = {"idempotency-key": "gen-bytes"}
    request = {"prompt": "a lighthouse", "provider": "deepimage"}
    async with gateway(settings(deepimage_server, tmp_path)) as client:
        answers = [
            await client.post("/v1/generate/bytes", json=request, headers=headers) for _ in "ab"
        ]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].content == answers[1].content
    assert answers[0].headers["content-type"].startswith("image/")
    assert answers[1].headers["idempotent-replayed"] == "true"
    assert submissions(deepimage) == 1


async def test_bytes_operations_ignore_prefer_and_answer_the_image(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, tmp_path: Path
) -> None:
    """RFC 7240 lets a server ignore a preference: a /bytes operation answers its image
    (no Preference-Applied), with or without a key; the key's job is findable and its
    result_url is the /bytes result."""
    async with gateway(settings(deepimage_server, tmp_path)) as client:
        plain = await client.post(
            "/v1/upscale/bytes", json=body(), headers={"prefer": "respond-async"}
        )
        keyed = await client.post(
            "/v1/upscale/multipart/bytes",
            headers={"prefer": "respond-async, wait=1", "idempotency-key": "p-1"},
            **upload(),
        )
        job = await client.get(f"/v1/jobs/{keyed.headers['x-image-gateway-job']}")
    for answer in (plain, keyed):
        assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG")
        assert "preference-applied" not in answer.headers
    assert job.json()["result_url"] == f"/v1/jobs/{job.json()['id']}/result/bytes"
    assert submissions(deepimage) == 2


async def test_a_jobs_image_has_an_operation_of_its_own(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, tmp_path: Path
) -> None:
    """GET /v1/jobs/{id}/result/bytes answers as the /bytes operations do; /result keeps
    its Accept: image/* convenience."""
    async with gateway(settings(deepimage_server, tmp_path)) as client:
        accepted = await client.post(
            "/v1/upscale", json=body(), headers={"prefer": "respond-async"}
        )
        job = accepted.json()
        done = await client.get(accepted.headers["location"])
        for _ in range(600):  # the job runs on the emulator: polled, bounded
            if done.json()["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.05)
            done = await client.get(accepted.headers["location"])
        result = await client.get(f"/v1/jobs/{job['id']}/result", headers={"accept": "image/*"})
        generated = "image/png, image/jpeg, image/webp, application/octet-stream"
        as_bytes = {
            accept: await client.get(
                f"/v1/jobs/{job['id']}/result/bytes", headers={"accept": accept}
            )
            for accept in (generated, "application/octet-stream", "application/json")
        }
        as_json = await client.get(done.json()["result_url"])
        unknown = await client.get("/v1/jobs/job_nope/result/bytes")
    assert accepted.status_code == 202 and done.json()["status"] == "succeeded"
    assert done.json()["result_url"] == f"/v1/jobs/{job['id']}/result"
    image = base64.b64decode(as_json.json()["images"][0]["data"])
    assert result.status_code == 200 and result.content == image
    assert as_bytes[generated].status_code == 200 and as_bytes[generated].content == image
    assert as_bytes[generated].headers["content-type"] == "image/png"
    assert as_bytes[generated].headers["x-image-width"] == "64"
    untyped = as_bytes["application/octet-stream"]
    assert untyped.content == image
    assert untyped.headers["content-type"] == "application/octet-stream"
    assert as_bytes["application/json"].status_code == 406
    assert unknown.status_code == 404 and unknown.json()["code"] == "job_not_found"


async def test_dry_runs_ignore_the_headers_and_call_no_vendor(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, tmp_path: Path
) -> None:
    """Nothing is billed, so nothing is stored or replayed; ``?dry_run=true`` with a key
    stays a dry run (it must not become a billed job)."""
    headers = {"idempotency-key": "dry-1", "prefer": "respond-async"}
    async with gateway(settings(deepimage_server, tmp_path)) as client:
        answers = [
            await client.post("/v1/upscale/dry-run", json=body(), headers=headers),
            await client.post("/v1/upscale/dry-run", json=body(scale=3), headers=headers),
            await client.post("/v1/upscale?dry_run=true", json=body(), headers=headers),
        ]
    for answer in answers:
        assert answer.status_code == 200 and answer.json()["dry_run"] is True
        assert "idempotent-replayed" not in answer.headers
        assert "preference-applied" not in answer.headers
    assert submissions(deepimage) == 0
    assert not (tmp_path / "data").exists()  # no job, no key stored
