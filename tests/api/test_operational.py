"""GET /v1/providers, /healthz, /readyz, /metrics, unknown routes and methods."""

import base64

import pytest

from tests.conftest import gateway, make_settings, png_bytes

pytestmark = pytest.mark.anyio


async def test_providers_shows_the_tables_validation_reads() -> None:
    from app.providers.local import LIMITS

    async with gateway(make_settings()) as client:
        response = await client.get("/v1/providers")
    assert response.status_code == 200
    [local] = response.json()
    assert local["id"] == "local" and local["operations"] == ["upscale"]
    assert local["circuit"] == "closed"
    assert local["models"][0] == LIMITS.model_dump(mode="json")


async def test_health_and_readiness() -> None:
    async with gateway(make_settings()) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["providers"] == ["local"]


async def test_not_ready_without_providers() -> None:
    async with gateway(make_settings(local={"enabled": False})) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503


async def test_metrics_count_requests_by_status_and_code() -> None:
    image = base64.b64encode(png_bytes(20, 20)).decode()
    async with gateway(make_settings()) as client:
        before = await client.get("/metrics")
        await client.post("/v1/upscale", json={"image": image, "scale": 2})
        await client.post("/v1/upscale", json={"image": image, "scale": 99})
        after = (await client.get("/metrics")).text
    ok = _series(code="ok", provider="local", status_code="200")
    bad = _series(code="validation_failed", provider="none", status_code="422")
    assert _value(after, ok) == _value(before.text, ok) + 1
    assert _value(after, bad) == _value(before.text, bad) + 1
    assert 'image_gateway_request_duration_seconds_bucket{le="0.005",operation="upscale"' in after


def _series(code: str, provider: str, status_code: str) -> str:
    labels = f'code="{code}",operation="upscale",provider="{provider}",status_code="{status_code}"'
    return "image_gateway_requests_total{" + labels + "}"


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v2/upscale", 404, "not_found"),
        ("GET", "/v1/upscale", 405, "method_not_allowed"),
        ("DELETE", "/healthz", 405, "method_not_allowed"),
    ],
)
async def test_unknown_routes_and_methods_are_problems(
    method: str, path: str, status: int, code: str
) -> None:
    async with gateway(make_settings()) as client:
        response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert response.headers["x-request-id"] and response.headers["server-timing"]
