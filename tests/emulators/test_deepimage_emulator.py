"""The Deep-Image emulator itself enforces vendors.md §3: the x-api-key statuses, the sync
window, job states, result files, the documented fields, and every failure mode."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import png_bytes
from tests.emulators.common import EmulatorServer
from tests.emulators.deepimage import DEFAULT_API_KEY, DeepImageState, JobPlan, create_app

PNG = png_bytes(32, 24)
AUTH = {"x-api-key": DEFAULT_API_KEY}
SUBMIT = "/rest_api/process_result"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    state = DeepImageState()
    with EmulatorServer(create_app(state), state) as running:
        yield running


@pytest.fixture
def state(server: EmulatorServer) -> DeepImageState:
    assert isinstance(server.state, DeepImageState)
    server.state.reset()
    return server.state


@pytest.fixture
def client(server: EmulatorServer, state: DeepImageState) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, trust_env=False) as http:
        yield http


def inline(payload: dict[str, Any], data: bytes = PNG) -> dict[str, Any]:
    return {"url": "base64," + base64.b64encode(data).decode(), **payload}


def submit(client: httpx.Client, payload: dict[str, Any], path: str = SUBMIT) -> httpx.Response:
    return client.post(path, json=payload, headers=AUTH)


def image_of(response: httpx.Response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


# --------------------------------------------------------------------------- auth


def test_missing_key_is_403_and_unknown_key_is_404(client: httpx.Client) -> None:
    missing = client.post(SUBMIT, json=inline({"width": 64}))
    unknown = client.post(SUBMIT, json=inline({"width": 64}), headers={"x-api-key": "nope"})
    assert (missing.status_code, missing.json()) == (
        403,
        {"message": "No x-api-key header is provided"},
    )
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"message": "No user found for provided token"},
    )
    assert client.get("/rest_api/result/x").status_code == 403


def test_header_name_is_case_insensitive(client: httpx.Client) -> None:
    response = client.post(SUBMIT, json=inline({"width": 64}), headers={"X-API-KEY": "x"})
    assert response.status_code == 404  # the header was seen; the key is unknown


# --------------------------------------------------------------------------- sync window and jobs


def test_fast_job_completes_within_the_sync_window(client: httpx.Client) -> None:
    response = submit(client, inline({"width": 64}))
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "complete" and body["job"]
    assert body["result_url"].startswith(str(client.base_url) + "/images/")
    result = client.get(body["result_url"])
    assert result.headers["content-type"] == "image/png"
    assert image_of(result).size == (64, 48)  # one side given: the aspect ratio is kept


def test_slow_job_moves_through_its_states(client: httpx.Client, state: DeepImageState) -> None:
    state.plan = JobPlan(polls=3)
    first = submit(client, inline({"height": 48})).json()
    assert first["status"] == "in_progress" and "result_url" not in first
    statuses = [client.get(f"/rest_api/result/{first['job']}", headers=AUTH).json() for _ in "abc"]
    assert [s["status"] for s in statuses] == ["in_progress", "in_progress", "complete"]
    assert image_of(client.get(statuses[-1]["result_url"])).size == (64, 48)


def test_async_process_is_received_then_polled(client: httpx.Client, state: DeepImageState) -> None:
    first = submit(client, inline({"width": 40}), path="/rest_api/process").json()
    assert first["status"] == "received"
    second = client.get(f"/rest_api/result/{first['job']}", headers=AUTH).json()
    assert second["status"] == "complete"


def test_unknown_job_and_unfinished_result(client: httpx.Client, state: DeepImageState) -> None:
    assert client.get("/rest_api/result/nope", headers=AUTH).json() == {"message": "Job not found"}
    state.plan = JobPlan(polls=2)
    job = submit(client, inline({"width": 64})).json()["job"]
    assert client.get(f"/images/2025-01-01/{job}.png").status_code == 404
    state.jobs[job].deleted = True
    deleted = client.get(f"/rest_api/result/{job}", headers=AUTH)
    assert (deleted.status_code, deleted.json()["message"]) == (404, "Image deleted")


# --------------------------------------------------------------------------- submissions


def test_multipart_with_image_and_parameters(client: httpx.Client, state: DeepImageState) -> None:
    jpeg = png_bytes(20, 10, fmt="JPEG")
    response = client.post(
        SUBMIT,
        files={"image": ("in.jpg", jpeg, "image/jpeg")},
        data={"parameters": json.dumps({"width": 40, "quality": 80})},
        headers=AUTH,
    )
    body = response.json()
    [job] = state.jobs.values()
    assert (job.upload, job.input_size, job.payload) == (
        "multipart",
        (20, 10),
        {"width": 40, "quality": 80},
    )
    result = client.get(body["result_url"])
    assert (result.headers["content-type"], image_of(result).size) == ("image/jpeg", (40, 20))


def test_base64_url_needs_the_literal_prefix(client: httpx.Client) -> None:
    data_uri = {"url": "data:image/png;base64," + base64.b64encode(PNG).decode(), "width": 64}
    assert submit(client, data_uri).json() == {
        "message": "Unidentified image",
        "code": "BAD_REQUEST",
    }
    remote = submit(client, {"url": "https://example.com/a.png", "width": 64})
    assert remote.status_code == 400
    assert submit(client, {"width": 64}).json() == {"message": "File or image url is required"}


def test_text_to_image_needs_a_size(client: httpx.Client, state: DeepImageState) -> None:
    generate = {"background": {"generate": {"description": "a fox", "model_type": "fantasy"}}}
    assert submit(client, generate).status_code == 400
    body = submit(client, {"width": 96, "height": 64, **generate}).json()
    result = client.get(body["result_url"])
    assert (result.headers["content-type"], image_of(result).size) == ("image/jpeg", (96, 64))


@pytest.mark.parametrize(
    "payload",
    [
        {"widht": 64},
        {"width": 64, "upscale_strength": 0},
        {"width": 64, "upscale_strength": 10},
        {"width": 64, "upscale_strength": "5"},
        {"width": 64, "generative_upscale": "yes"},
        {"width": 64, "output_format": "gif"},
        {"width": 64, "quality": 101},
        {"width": 64, "enhancements": ["sharpen"]},
        {"width": 64, "background": {"generate": {"description": "x", "adapter": "upscale"}}},
        {"width": 64, "background": {"generate": {"description": "x", "adapter_type": "zoom"}}},
        {"width": 64, "upscale_parameters": {"type": "v9"}},
        {"width": "wide"},
    ],
)
def test_documented_fields_are_enforced(client: httpx.Client, payload: dict[str, Any]) -> None:
    response = submit(client, inline(payload))
    assert response.status_code == 400
    assert response.json()["message"]


def test_percent_width_and_output_format(client: httpx.Client) -> None:
    body = submit(client, inline({"width": "200%", "output_format": "webp"})).json()
    result = client.get(body["result_url"])
    assert body["result_url"].endswith(".webp")
    assert (result.headers["content-type"], image_of(result).size) == ("image/webp", (64, 48))


# --------------------------------------------------------------------------- failure modes


def test_credits_run_out(client: httpx.Client, state: DeepImageState) -> None:
    state.credits = 1
    assert submit(client, inline({"width": 64})).status_code == 200
    refused = submit(client, inline({"width": 64}))
    assert (refused.status_code, refused.json()["code"]) == (400, "NOT_ENOUGH_CREDITS")
    assert client.get("/rest_api/me", headers=AUTH).json()["credits"] == 0


def test_concurrency_limit_is_429(client: httpx.Client, state: DeepImageState) -> None:
    state.plan, state.max_active_jobs = JobPlan(polls=5), 1
    assert submit(client, inline({"width": 64})).json()["status"] == "in_progress"
    refused = submit(client, inline({"width": 64}))
    assert refused.status_code == 429
    assert refused.json()["code"] == "TOO_MANY_REQUESTS"
    assert (
        "Your rate limit is 1 and you are currently processing 1 images"
        in refused.json()["message"]
    )


def test_over_limit_is_400(client: httpx.Client, state: DeepImageState) -> None:
    state.max_output = (50, 50)
    refused = submit(client, inline({"width": 64}))
    assert refused.json() == {
        "message": "Image cannot be upscaled above 50 x 50 pixels limit.",
        "code": "BAD_REQUEST",
    }


def test_failed_jobs_refund_credits(client: httpx.Client, state: DeepImageState) -> None:
    state.credits, state.plan = 5, JobPlan(fail_on_poll=0)
    failed = submit(client, inline({"width": 64}))
    assert (failed.status_code, failed.json()["status"]) == (500, "failed")
    assert "No credits were lost" in failed.json()["message"]
    state.plan = JobPlan(polls=3, fail_on_poll=2)
    job = submit(client, inline({"width": 64})).json()["job"]
    polls = [client.get(f"/rest_api/result/{job}", headers=AUTH) for _ in range(3)]
    assert [p.status_code for p in polls] == [200, 500, 500]
    assert state.credits == 5


def test_runs_alone_from_the_command_line() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "tests.emulators.deepimage", "--help"],
        cwd=root, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert "--port" in done.stdout and "Deep-Image" in done.stdout
