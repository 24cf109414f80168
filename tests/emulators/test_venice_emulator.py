"""The Venice emulator itself enforces vendors.md §2.8, so a wrong field fails a test."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from PIL import Image

from tests.conftest import png_bytes
from tests.emulators.common import EmulatorServer
from tests.emulators.venice import DEFAULT_API_KEY, VeniceState, create_app, venice_fault
from tests.process import free_port

AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
SMALL = png_bytes(256, 256)
SMALL_B64 = base64.b64encode(SMALL).decode()


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    state = VeniceState()
    with EmulatorServer(create_app(state), state) as running:
        yield running


@pytest.fixture
def state(server: EmulatorServer) -> VeniceState:
    venice = cast(VeniceState, server.state)
    venice.reset()
    return venice


@pytest.fixture
def client(server: EmulatorServer, state: VeniceState) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30, trust_env=False) as http:
        yield http


def solid_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (1, 2, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def details(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.content[:200]
    body = response.json()
    assert body["error"] == "Invalid request parameters"
    tree: dict[str, Any] = body["details"]
    return tree


def upscale(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post("/image/upscale", json={"image": SMALL_B64, **fields}, headers=AUTH)


def generate(client: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"model": "venice-sd35", "prompt": "a fox", "width": 32, "height": 32, **fields}
    return client.post("/image/generate", json=body, headers=AUTH)


# --------------------------------------------------------------------------- auth, headers


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": DEFAULT_API_KEY}]
)
def test_inference_needs_the_bearer_key(client: httpx.Client, headers: dict[str, str]) -> None:
    answer = client.post("/image/upscale", json={"image": SMALL_B64}, headers=headers)
    assert (answer.status_code, answer.json()) == (401, {"error": "Authentication failed"})
    assert answer.headers["x-ratelimit-limit-requests"] == "20"


def test_rate_limit_headers_on_every_response(client: httpx.Client) -> None:
    answers = [client.get("/image/styles"), upscale(client, scale=9), upscale(client)]
    assert [a.status_code for a in answers] == [200, 400, 200]
    remaining = [int(a.headers["x-ratelimit-remaining-requests"]) for a in answers]
    assert remaining == [19, 18, 17]
    for answer in answers:
        assert int(answer.headers["x-ratelimit-reset-requests"]) > time.time() * 1000
        assert {"x-ratelimit-remaining-tokens", "x-venice-balance-usd"} <= set(answer.headers)


@pytest.mark.parametrize(
    ("status", "message"),
    [(402, "Insufficient USD or Diem balance"), (429, "Rate limit exceeded"), (503, "at capacity")],
)
def test_vendor_faults_have_venice_bodies(
    client: httpx.Client, state: VeniceState, status: int, message: str
) -> None:
    state.add_fault(venice_fault(status, path="/image/upscale", retry_after=7))
    answer = upscale(client)
    assert answer.status_code == status and message in answer.json()["error"]
    assert (
        answer.headers["retry-after"] == "7" and "x-ratelimit-remaining-requests" in answer.headers
    )
    assert upscale(client).status_code == 200  # one fault, one answer


def test_requests_are_recorded(client: httpx.Client, state: VeniceState) -> None:
    upscale(client, scale=2)
    [recorded] = state.requests_to("/image/upscale")
    assert (
        recorded.json()["scale"] == 2 and recorded.headers["authorization"] == AUTH["Authorization"]
    )


# --------------------------------------------------------------------------- catalog (§2.5)


def test_models_and_styles_need_no_key(client: httpx.Client) -> None:
    models = client.get("/models", params={"type": "image"})
    styles = client.get("/image/styles")
    assert models.status_code == 200 and models.json()["type"] == "image"
    sd35 = next(m for m in models.json()["data"] if m["id"] == "venice-sd35")
    assert sd35["model_spec"]["constraints"]["promptCharacterLimit"] == 1500
    assert sd35["model_spec"]["constraints"]["steps"] == {"default": 25, "max": 30}
    assert styles.json() == {"object": "list", "data": cast(list[str], styles.json()["data"])}
    assert "3D Model" in styles.json()["data"]


def test_an_invalid_model_type_is_a_detailed_error(client: httpx.Client) -> None:
    tree = details(client.get("/models", params={"type": "pictures"}))
    assert tree["type"]["_errors"][0].startswith("Invalid enum value. Expected 'asr' | ")


# --------------------------------------------------------------------------- /image/upscale


def test_json_upscale_answers_a_png_of_the_new_size(client: httpx.Client) -> None:
    answer = upscale(client, scale=2, enhance=False, replication=0.35)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert size_of(answer.content) == (512, 512)
    assert answer.headers["x-venice-is-content-violation"] == "false"


def test_multipart_upscale_takes_text_fields(client: httpx.Client) -> None:
    files = {"image": ("in.png", SMALL, "image/png")}
    fields = {"scale": "1", "enhance": "true", "enhancePrompt": "gold", "enhanceCreativity": "0.5"}
    answer = client.post("/image/upscale", data=fields, files=files, headers=AUTH)
    assert answer.status_code == 200 and size_of(answer.content) == (256, 256)
    as_text = client.post(
        "/image/upscale",
        data={"image": SMALL_B64, "scale": "2"},
        files={"x": ("", b"", "text/plain")},
        headers=AUTH,
    )
    assert details(as_text)["_errors"] == ["Unrecognized key(s) in object: 'x'"]


def test_upscale_schema_is_strict(client: httpx.Client) -> None:
    assert details(upscale(client, seed=1))["_errors"] == ["Unrecognized key(s) in object: 'seed'"]
    # numbers are coerced (multipart sends text), so only text that is no number is refused
    assert details(upscale(client, scale="two"))["scale"]["_errors"] == [
        "Expected number, received nan"
    ]
    assert details(upscale(client, scale=True))["scale"]["_errors"] == [
        "Expected number, received boolean"
    ]
    assert details(upscale(client, scale=5))["scale"]["_errors"] == [
        "Number must be less than or equal to 4"
    ]
    assert "enhancePrompt" in details(upscale(client, enhancePrompt="g" * 1501))
    assert "replication" in details(upscale(client, replication=1.5))
    assert "enhance" in details(upscale(client, enhance="yes"))
    missing = client.post("/image/upscale", json={"scale": 2}, headers=AUTH)
    assert details(missing)["image"]["_errors"] == ["Required"]


@pytest.mark.parametrize("enhance", [None, False, "false"])
def test_scale_one_requires_enhance(client: httpx.Client, enhance: Any) -> None:
    fields = {"scale": 1} if enhance is None else {"scale": 1, "enhance": enhance}
    assert "scale" in details(upscale(client, **fields))


def test_pixel_and_size_limits(client: httpx.Client) -> None:
    small = client.post(
        "/image/upscale",
        json={"image": base64.b64encode(png_bytes(255, 256)).decode()},
        headers=AUTH,
    )
    assert "image" in details(small)
    huge = SMALL + b"\0" * (25 * 1024 * 1024)
    too_big = client.post(
        "/image/upscale", files={"image": ("a.png", huge, "image/png")}, headers=AUTH
    )
    assert too_big.status_code == 413 and too_big.json()["code"] == "PAYLOAD_TOO_LARGE"
    wrong_type = client.post(
        "/image/upscale", content=b"x", headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert (wrong_type.status_code, wrong_type.json()) == (
        415,
        {"error": "Invalid request content-type"},
    )


def test_scale_four_is_lowered_and_other_scales_must_fit(client: httpx.Client) -> None:
    image = base64.b64encode(solid_png(1025, 1024)).decode()
    lowered = client.post("/image/upscale", json={"image": image, "scale": 4}, headers=AUTH)
    assert size_of(lowered.content) == (4097, 4094)
    big = base64.b64encode(solid_png(1400, 1400)).decode()
    refused = client.post("/image/upscale", json={"image": big, "scale": 3}, headers=AUTH)
    assert "scale" in details(refused)


def test_schema_2026(client: httpx.Client, state: VeniceState) -> None:
    state.upscale_schema = "2026"
    assert details(upscale(client, scale=1))["scale"]["_errors"] == [
        "Number must be greater than or equal to 2"
    ]
    ignored = upscale(client, scale=2, creativity=0.5, enhance=True, anything="goes")
    assert ignored.status_code == 200 and size_of(ignored.content) == (512, 512)
    big = base64.b64encode(solid_png(1400, 1400)).decode()
    lowered = client.post("/image/upscale", json={"image": big, "scale": 3}, headers=AUTH)
    assert size_of(lowered.content) == (4096, 4096)


# --------------------------------------------------------------------------- /image/generate


def test_generate_json_answer(client: httpx.Client) -> None:
    answer = generate(client, variants=2, format="png")
    body = answer.json()
    assert answer.status_code == 200 and set(body) == {"id", "images", "request", "timing"}
    assert len(body["images"]) == 2 and size_of(base64.b64decode(body["images"][0])) == (32, 32)
    assert body["request"]["data"]["variants"] == 2
    assert answer.headers["x-venice-is-blurred"] == "false"


def test_generate_binary_answer(client: httpx.Client) -> None:
    answer = generate(client, return_binary=True, format="jpeg")
    assert answer.headers["content-type"] == "image/jpeg" and answer.content[:3] == b"\xff\xd8\xff"


def test_generate_schema_is_strict(client: httpx.Client) -> None:
    assert details(generate(client, sampler="x"))["_errors"] == [
        "Unrecognized key(s) in object: 'sampler'"
    ]
    assert "width" in details(generate(client, width=1281))
    assert "seed" in details(generate(client, seed=1_000_000_000))
    assert "cfg_scale" in details(generate(client, cfg_scale=0))
    assert "format" in details(generate(client, format="gif"))
    assert "variants" in details(generate(client, variants=2, return_binary=True))
    assert "inpaint" in details(generate(client, inpaint={"strength": 50}))
    assert "safe_mode" in details(generate(client, safe_mode="true"))
    refs = details(
        generate(client, model="krea-v2-large", style_references=[{"image": "a", "strength": 0.01}])
    )
    assert refs["style_references"]["0"]["strength"]["_errors"] == [
        "Number must be greater than or equal to 0.1"
    ]
    no_prompt = client.post("/image/generate", json={"model": "venice-sd35"}, headers=AUTH)
    assert details(no_prompt)["prompt"]["_errors"] == ["Required"]


def test_generate_model_rules(client: httpx.Client) -> None:
    missing = generate(client, model="dall-e-3")
    assert missing.status_code == 404 and "model not found" in missing.json()["error"]
    assert "prompt" in details(generate(client, prompt="p" * 1501))
    assert "steps" in details(generate(client, steps=31))
    assert "style_preset" in details(generate(client, style_preset="Vaporwave"))
    assert "resolution" in details(generate(client, model="nano-banana-pro", resolution="8K"))
    assert generate(client, resolution="8K").status_code == 200  # dropped for models without
    assert "quality" in details(generate(client, model="grok-imagine-image-2-0", quality="high"))
    refs = [{"image": "a"}] * 4
    assert "style_references" in details(
        generate(client, model="krea-v2-large", style_references=refs)
    )


def test_content_violation_and_blur_headers(client: httpx.Client, state: VeniceState) -> None:
    state.content_violation = state.blurred = True
    as_json = generate(client)
    black = Image.open(io.BytesIO(base64.b64decode(as_json.json()["images"][0])))
    assert as_json.status_code == 200 and black.convert("RGB").getpixel((0, 0)) == (0, 0, 0)
    assert as_json.headers["x-venice-is-content-violation"] == "true"
    assert as_json.headers["x-venice-is-blurred"] == "true"
    binary = generate(client, return_binary=True)
    assert binary.status_code == 200 and binary.headers["content-type"] == "image/png"


def test_deprecated_models_carry_the_headers(client: httpx.Client) -> None:
    answer = generate(client, model="old-sd15")
    assert answer.headers["x-venice-deprecated"] == "true"
    assert answer.headers["x-venice-deprecated-replacement"] == "venice-sd35"
    assert answer.headers["x-venice-model-deprecation-date"].startswith("2026-01-15")


def test_runs_alone_from_the_command_line() -> None:
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "tests.emulators.venice", "--port", str(port)]
    proc = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        answer = _first_answer(f"http://127.0.0.1:{port}/api/v1/image/styles", proc)
        assert answer.status_code == 200 and "Anime" in answer.json()["data"]
    finally:
        proc.terminate()
        proc.wait(10)


def _first_answer(url: str, proc: subprocess.Popen[bytes]) -> httpx.Response:
    """Bounded readiness poll of a starting process (as tests/process.py does)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return httpx.get(url, timeout=1, trust_env=False)
        except httpx.TransportError:
            time.sleep(0.05)  # still starting
    raise AssertionError(f"the emulator did not answer (exit code {proc.poll()})")
