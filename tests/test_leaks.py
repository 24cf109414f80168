"""Nothing leaks, nothing reaches where it should not (issue 14): a canary key inside
vendor errors and headers of every shape reaches no answer, log or metric; a forged
Deep-Image ``result_url`` is refused without a request to its host; caller-supplied URLs
are forwarded only when public https."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.conftest import gateway, make_settings, png_bytes
from tests.emulators import deepimage, venice
from tests.emulators.common import EmulatorServer, Fault

pytestmark = pytest.mark.anyio

#: The key the gateway holds: unlike any other text of the suite (metrics are shared by
#: the whole session), so that any 6-character piece of it found is a leak.
CANARY = "vK9-i14-4f1d9a7c2b8e6d3f0a5c-QzX"


def fragments(secret: str, size: int = 6) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def leaked(text: str) -> list[str]:
    return [piece for piece in fragments(CANARY) if piece in text]


@pytest.fixture(scope="module")
def venice_server() -> Iterator[EmulatorServer]:
    state = venice.VeniceState(api_key=CANARY)
    with EmulatorServer(venice.create_app(state), state) as server:
        yield server


def png_b64() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def at(position: int) -> str:
    """Vendor text with the key starting at ``position`` (around the 300-character cut)."""
    return "x" * position + CANARY + " and more text after it"


SHAPES: list[tuple[str, int, Any, dict[str, str]]] = [
    ("StandardError, key at 291", 400, {"error": at(291)}, {}),
    ("StandardError, key at 0", 400, {"error": at(0)}, {}),
    ("coded error", 401, {"code": "AUTH", "error": at(280)}, {}),
    ("zod tree", 400, {"details": {"prompt": {"_errors": [at(292)]}}}, {}),
    ("issues list", 400, {"issues": [{"path": ["prompt"], "message": at(290)}]}, {}),
    ("unknown model", 404, {"error": at(290)}, {}),
    ("rate limited", 429, {"error": at(290)}, {"retry-after": "1"}),
    ("at capacity", 503, {"error": at(1)}, {}),
    ("inference failed", 500, {"error": at(291)}, {}),
    ("plain text body", 502, at(292), {}),
    (
        "deprecation headers on a success",
        200,
        {"id": "g", "images": [png_b64()], "timing": {}},
        {
            "x-venice-deprecated": "true",
            "x-venice-model-deprecation-warning": at(292),
            "x-venice-model-deprecation-date": at(56),
            "x-venice-deprecated-replacement": at(120),
        },
    ),
]


@pytest.mark.parametrize(("name", "status", "body", "headers"), SHAPES, ids=[s[0] for s in SHAPES])
async def test_a_canary_key_in_vendor_text_reaches_no_answer_log_or_metric(
    venice_server: EmulatorServer,
    caplog: pytest.LogCaptureFixture,
    name: str,
    status: int,
    body: Any,
    headers: dict[str, str],
) -> None:
    venice_server.state.add_fault(
        Fault("status", status=status, body=body, headers=headers, path="/image/generate", times=1)
    )
    settings = make_settings(
        venice={"api_key": CANARY, "base_url": venice_server.url + "/api/v1"},
        routing={"generate": ["venice"]},
        retry={"max_attempts": 1},
    )
    with caplog.at_level(logging.DEBUG):
        async with gateway(settings) as client:
            response = await client.post("/v1/generate", json={"prompt": "a fox"})
            metrics = (await client.get("/metrics")).text
    answer = response.text + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
    logs = "\n".join(record.getMessage() for record in caplog.records)
    assert status != 200 or response.status_code == 200, response.text
    if status == 200:
        assert response.json()["warnings"], "the deprecation warning is still reported"
    assert (leaked(answer), leaked(logs), leaked(metrics)) == ([], [], [])


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[EmulatorServer]:
    """Another server that a forged result_url names (as ``localhost``: another host name
    than the API's ``127.0.0.1``, and loopback, as an attacker would pick)."""
    state = deepimage.DeepImageState()
    with EmulatorServer(deepimage.create_app(state), state) as server:
        yield server


async def test_a_forged_deepimage_result_url_on_another_host_is_never_fetched(
    elsewhere: EmulatorServer,
) -> None:
    state = deepimage.DeepImageState()
    with EmulatorServer(deepimage.create_app(state), state) as server:
        # the answer names a host the vendor does not use
        state.result_base = elsewhere.url.replace("127.0.0.1", "localhost")
        settings = make_settings(
            deepimage={"api_key": deepimage.DEFAULT_API_KEY, "base_url": server.url},
            routing={"upscale": ["deepimage"]},
            retry={"max_attempts": 1},
        )
        image = base64.b64encode(png_bytes(64, 48)).decode()
        async with gateway(settings) as client:
            response = await client.post("/v1/upscale", json={"image": image, "scale": 2})
    assert (response.status_code, response.json()["code"]) == (502, "upstream_error")
    assert "a host it does not use (localhost)" in response.json()["detail"]
    assert elsewhere.state.requests == []  # no request reached the forged host
    assert len(state.requests_to("/rest_api/process_result")) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1/a.png",
        "https://10.1.2.3/a.png",
        "https://[::1]/a.png",
        "https://localhost/a.png",
        "https://metadata.google.internal/a.png",
        "http://example.com/a.png",
    ],
)
async def test_caller_style_reference_urls_must_be_public_https(
    venice_server: EmulatorServer, url: str
) -> None:
    before = len(venice_server.state.requests_to("/image/generate"))
    settings = make_settings(
        venice={"api_key": CANARY, "base_url": venice_server.url + "/api/v1"},
        routing={"generate": ["venice"]},
    )
    body = {
        "prompt": "a fox",
        "model": "krea-v2-large",
        "options": {"venice": {"style_references": [{"image": url}]}},
    }
    async with gateway(settings) as client:
        response = await client.post("/v1/generate", json=body)
    assert (response.status_code, response.json()["code"]) == (422, "validation_failed")
    [error] = response.json()["errors"]
    assert error["loc"] == ["options", "venice", "style_references", 0, "image"]
    assert error["limit"] == "venice: style reference URLs must be public https"
    assert len(venice_server.state.requests_to("/image/generate")) == before


async def test_a_public_https_style_reference_and_the_private_setting_pass(
    venice_server: EmulatorServer,
) -> None:
    from app.url_rules import url_problem

    assert url_problem("https://example.com/a.png") is None
    assert url_problem("http://10.1.2.3/a.png", allow_private=True) is None
    settings = make_settings(
        venice={"api_key": CANARY, "base_url": venice_server.url + "/api/v1"},
        routing={"generate": ["venice"]},
        caller_urls={"allow_private": True},
    )
    body = {
        "prompt": "a fox",
        "model": "krea-v2-large",
        "options": {"venice": {"style_references": [{"image": "https://10.1.2.3/a.png"}]}},
    }
    async with gateway(settings) as client:
        response = await client.post("/v1/generate", json=body)
    assert response.status_code == 200, response.text
