"""Idempotency-Key on both POSTs: one vendor call however often (and however concurrently)
a key is sent, the same answer for every caller, 422 for the same key with another body.
Against the Deep-Image emulator (real HTTP), on SQLite and on a real Redis."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest

from tests.conftest import gateway, make_settings, png_bytes
from tests.emulators.common import EmulatorServer, Fault
from tests.emulators.deepimage import DeepImageState
from tests.jobs.conftest import deepimage_settings

pytestmark = pytest.mark.anyio
PNG = png_bytes(32, 24)


def settings(server: EmulatorServer, state: dict[str, Any]) -> Any:
    return make_settings(
        deepimage=deepimage_settings(server), state=state, jobs={"consumer": "test"}
    )


def body(**extra: Any) -> dict[str, Any]:
    image = base64.b64encode(PNG).decode()
    return {"image": image, "scale": 2, "provider": "deepimage", **extra}


def submissions(state: DeepImageState) -> int:
    return len(state.jobs)


async def until_held(state: DeepImageState) -> None:
    """The vendor call is being held at the emulator's gate."""
    for _ in range(3000):  # a condition the emulator's thread sets: polled, bounded
        if state.requests_to("/rest_api/process"):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the vendor call never arrived")


async def test_ten_concurrent_waits_make_one_vendor_call_and_share_the_answer(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, state_settings: dict[str, Any]
) -> None:
    deepimage.add_fault(Fault("gated", path="/rest_api/process"))
    headers = {"idempotency-key": '"order-42"', "prefer": "wait=60"}
    async with gateway(settings(deepimage_server, state_settings)) as client:

        async def send() -> httpx.Response:
            return await client.post("/v1/upscale", json=body(), headers=headers)

        calls = [asyncio.create_task(send()) for _ in range(10)]
        await until_held(deepimage)
        deepimage.open_gate()
        answers = await asyncio.gather(*calls)
    assert submissions(deepimage) == 1
    assert [a.status_code for a in answers] == [200] * 10
    assert len({a.content for a in answers}) == 1
    replayed = [a.headers.get("idempotent-replayed") for a in answers]
    assert replayed.count("true") == 9 and replayed.count(None) == 1


async def test_ten_concurrent_synchronous_calls_one_vendor_call_then_conflicts(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, state_settings: dict[str, Any]
) -> None:
    deepimage.add_fault(Fault("gated", path="/rest_api/process"))
    headers = {"idempotency-key": "sync-1"}
    async with gateway(settings(deepimage_server, state_settings)) as client:
        first = asyncio.create_task(client.post("/v1/upscale", json=body(), headers=headers))
        await until_held(deepimage)
        repeats = await asyncio.gather(
            *(client.post("/v1/upscale", json=body(), headers=headers) for _ in range(9))
        )
        deepimage.open_gate()
        original = await first
        after = await client.post("/v1/upscale", json=body(), headers=headers)
        as_image = await client.post(
            "/v1/upscale", json=body(), headers={**headers, "accept": "image/*"}
        )
    assert submissions(deepimage) == 1
    assert original.status_code == 200
    for repeat in repeats:
        assert repeat.status_code == 409
        assert repeat.json()["code"] == "idempotency_conflict"
        assert repeat.headers["retry-after"] == "1"
    assert after.status_code == 200 and after.content == original.content
    assert after.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in original.headers
    for name in ("x-image-gateway-provider", "x-image-gateway-model", "x-image-gateway-job"):
        assert after.headers[name] == original.headers[name]
    image = base64.b64decode(original.json()["images"][0]["data"])
    assert as_image.status_code == 200 and as_image.content == image


async def test_same_key_other_body_is_422_and_multipart_same_image_replays(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, state_settings: dict[str, Any]
) -> None:
    headers = {"idempotency-key": "k-1"}
    async with gateway(settings(deepimage_server, state_settings)) as client:
        first = await client.post("/v1/upscale", json=body(), headers=headers)
        other = await client.post("/v1/upscale", json=body(scale=3), headers=headers)
        other_image = await client.post(
            "/v1/upscale",
            json={**body(), "image": base64.b64encode(png_bytes(33, 24)).decode()},
            headers=headers,
        )
        multipart = await client.post(
            "/v1/upscale",
            files={"image": ("a.png", PNG, "image/png")},
            data={"scale": "2", "provider": "deepimage"},
            headers=headers,
        )
        generate = await client.post(
            "/v1/generate", json={"prompt": "a cat", "provider": "deepimage"}, headers=headers
        )
    assert first.status_code == 200
    for refused in (other, other_image, generate):
        assert refused.status_code == 422
        assert refused.json()["code"] == "idempotency_key_reused"
    assert multipart.status_code == 200 and multipart.content == first.content
    assert submissions(deepimage) == 1


async def test_async_repeat_is_the_same_job(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, state_settings: dict[str, Any]
) -> None:
    headers = {"idempotency-key": "a-1", "prefer": "respond-async"}
    async with gateway(settings(deepimage_server, state_settings)) as client:
        first = await client.post("/v1/upscale", json=body(), headers=headers)
        second = await client.post("/v1/upscale", json=body(), headers=headers)
        assert first.status_code == second.status_code == 202
        assert first.json()["id"] == second.json()["id"]
        assert second.headers["idempotent-replayed"] == "true"
        bad = await client.post("/v1/upscale", json=body(), headers={"idempotency-key": "\x01"})
        assert bad.status_code == 400
    assert submissions(deepimage) <= 1


async def test_generate_takes_a_key_too(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, state_settings: dict[str, Any]
) -> None:
    headers = {"idempotency-key": "g-1"}
    request = {"prompt": "a lighthouse", "provider": "deepimage"}
    async with gateway(settings(deepimage_server, state_settings)) as client:
        answers = [await client.post("/v1/generate", json=request, headers=headers) for _ in "ab"]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].content == answers[1].content
    assert submissions(deepimage) == 1


async def test_a_503_releases_the_key_so_a_retry_runs_again(
    deepimage_server: EmulatorServer, deepimage: DeepImageState, state_settings: dict[str, Any]
) -> None:
    deepimage.add_fault(Fault("status", status=503, path="/rest_api/process", times=3))
    headers = {"idempotency-key": "retry-me"}
    async with gateway(settings(deepimage_server, state_settings)) as client:
        first = await client.post("/v1/upscale", json=body(), headers=headers)
        second = await client.post("/v1/upscale", json=body(), headers=headers)
        third = await client.post("/v1/upscale", json=body(), headers=headers)
    assert first.status_code == 503
    assert second.status_code == 200 and "idempotent-replayed" not in second.headers
    assert third.status_code == 200 and third.headers["idempotent-replayed"] == "true"
    assert third.content == second.content
    assert submissions(deepimage) == 1
