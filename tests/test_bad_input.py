"""The bad-input corpus (issue 14): every probe that once got a 500 now gets a specific
4xx or the correct image, and nothing is recorded as a 500 in the logs or the metrics."""

from __future__ import annotations

import base64
import io
import json
import logging
from typing import Any

import pytest
from PIL import Image
from prometheus_client import REGISTRY

from app.main import create_app
from app.transport.response import MAX_RETRY_AFTER_S
from tests.conftest import gateway, make_settings, png_bytes
from tests.emulators.common import EmulatorServer, Fault
from tests.images_corpus import animated, zip_archive
from tests.test_fault_matrix import GENERATE, Vendor, settings_for, vendor

__all__ = ["vendor"]  # the fault matrix's fixture: each vendor's emulator

pytestmark = pytest.mark.anyio


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def cmyk_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(buffer, format="JPEG")
    return buffer.getvalue()


PNG = png_bytes(16, 12)
#: (name, JSON body as text, expected status, expected code)
JSON_CASES: list[tuple[str, str, int, str]] = [
    ("JSON nested 10,000 deep", deep(10_000), 400, "invalid_request"),
    (
        "options nested 10,000 deep",
        f'{{"image": "{b64(PNG)}", "options": {{"local": {deep(10_000)}}}}}',
        400,
        "invalid_request",
    ),
    (
        "an escaped image with deep options",
        f'{{"image": "{b64(PNG)[:-1]}\\/", "options": {deep(10_000)}}}',
        400,
        "invalid_request",
    ),
    ("animated webp", json.dumps({"image": b64(animated("WEBP"))}), 422, "validation_failed"),
    ("apng", json.dumps({"image": b64(animated("PNG"))}), 422, "validation_failed"),
    ("png+zip polyglot", json.dumps({"image": b64(PNG + zip_archive())}), 400, "invalid_request"),
]


def requests_500() -> float:
    """Every request the metrics counted as a 500, whatever its other labels."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == "image_gateway_requests_total"
        and sample.labels.get("status_code") == "500"
    )


@pytest.mark.parametrize(
    ("name", "body", "status", "code"), JSON_CASES, ids=[c[0] for c in JSON_CASES]
)
async def test_json_corpus(
    name: str, body: str, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    before = requests_500()
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale", content=body.encode(), headers={"content-type": "application/json"}
        )
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert requests_500() == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_deep_json_in_a_multipart_part_is_400() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale",
            files={"image": ("a.png", PNG, "image/png")},
            data={"options": deep(10_000)},
        )
    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")
    assert "too deeply" in response.json()["detail"]


async def test_cmyk_jpeg_asked_for_png_is_the_correct_image() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale",
            json={"image": b64(cmyk_jpeg()), "scale": 2, "output": {"format": "png"}},
        )
    assert response.status_code == 200, response.text
    [image] = response.json()["images"]
    decoded = Image.open(io.BytesIO(base64.b64decode(image["data"])))
    assert (decoded.format, decoded.mode, decoded.size) == ("PNG", "RGB", (32, 32))


async def test_a_client_leaving_mid_body_is_499_in_logs_and_metrics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The caller sends half of its body and disconnects: nothing is answered (no one is
    there), the access log and the metrics say 499, and no error is logged."""
    app = create_app(make_settings())
    body = json.dumps({"image": b64(PNG), "scale": 2}).encode()
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": body[:20], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/upscale",
        "raw_path": b"/v1/upscale",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "root_path": "",
    }
    sample = ("image_gateway_requests_total", {"operation": "upscale", "provider": "none"})
    labels = {**sample[1], "status_code": "499", "code": "client_closed_request"}
    before = REGISTRY.get_sample_value(sample[0], labels) or 0
    with caplog.at_level(logging.INFO):
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)
    assert sent == []
    assert REGISTRY.get_sample_value(sample[0], labels) == before + 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("access")]
    assert [(a["status"], a["code"]) for a in access] == [(499, "client_closed_request")]


@pytest.mark.parametrize("value", ["inf", "1e400", "1e12", "nan", "-5"])
async def test_a_vendor_retry_after_out_of_range_is_clamped(
    vendor: tuple[Vendor, EmulatorServer], value: str
) -> None:
    spec, server = vendor
    server.state.add_fault(
        Fault(
            "status",
            status=429,
            body=spec.error_body(429),
            headers={"retry-after": value},
            path=spec.submit_path,
            times=5,
        )
    )
    async with gateway(settings_for(spec, server)) as client:
        response = await client.post("/v1/generate", json=GENERATE)
    assert (response.status_code, response.json()["code"]) == (429, "rate_limited")
    assert 1 <= int(response.headers["retry-after"]) <= MAX_RETRY_AFTER_S
