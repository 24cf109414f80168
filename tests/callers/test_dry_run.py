"""``?dry_run=true``: full validation and routing, no vendor call. Each refusal of the
vendor-limit suites (tests/providers) gets the same status and code dry as real, and the
dry run reaches no emulator at all."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from app.domain import CallContext, Deadline, Job
from app.errors import GatewayError
from app.providers.registry import build_providers
from app.routing import Router
from tests.callers.vendors import Vendors, vendor_emulators
from tests.conftest import gateway, make_settings, png_bytes
from tests.providers import test_deepimage, test_venice, test_vertex_gemini

pytestmark = pytest.mark.anyio

G31 = "gemini-3.1-flash-image"
IMAGE = base64.b64encode(png_bytes(256, 256)).decode()


@pytest.fixture(scope="module")
def vendors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vendors]:
    with vendor_emulators(tmp_path_factory.mktemp("sa")) as running:
        yield running


# --------------------------------------------------------------------------- over HTTP


async def test_a_dry_run_answers_provider_model_estimate_and_warnings(vendors: Vendors) -> None:
    async with gateway(vendors.settings()) as client:
        # Venice's model list is metadata any first request fetches; then nothing at all.
        await client.post("/v1/upscale?dry_run=true", json={"image": IMAGE, "provider": "venice"})
        vendors.reset()
        upscale = await client.post(
            "/v1/upscale?dry_run=true", json={"image": IMAGE, "scale": 3, "provider": "venice"}
        )
        generate = await client.post(
            "/v1/generate?dry_run=true",
            json={
                "prompt": "a fox",
                "n": 3,
                "provider": "vertex",
                "model": G31,
            },
        )
        assert vendors.requests() == 0
    assert upscale.status_code == 200, upscale.text
    assert upscale.json() == {
        "dry_run": True,
        "provider": "venice",
        "model": "upscaler",
        "cost": {"usd": 0.08, "basis": "1 image(s) x $0.08 (venice/upscaler upscale)"},
        "warnings": [],
    }
    assert upscale.headers["x-image-gateway-cost-usd"] == "0.080000"
    body = generate.json()
    assert (body["provider"], body["model"], body["cost"]["usd"]) == (
        "vertex",
        G31,
        pytest.approx(3 * 1120 * 60 / 1_000_000),  # 3 images of 1120 tokens at $60/1M
    )


async def test_a_dry_run_routes_like_the_real_call(vendors: Vendors) -> None:
    """No provider named: routing picks the first that fits, as the real call would."""
    settings = vendors.settings(routing={"upscale": ["venice", "local"]})
    small = base64.b64encode(png_bytes(40, 30)).decode()  # under Venice's 65,536 px minimum
    async with gateway(settings) as client:
        dry = await client.post("/v1/upscale?dry_run=1", json={"image": small, "scale": 2})
        real = await client.post("/v1/upscale?dry_run=false", json={"image": small, "scale": 2})
    assert dry.json()["provider"] == real.json()["provider"] == "local"
    assert "images" not in dry.json() and real.json()["images"]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "code"),
    [
        ("/v1/upscale", b"{not json", {}, 400, "invalid_request"),
        ("/v1/upscale", {"image": base64.b64encode(b"GIF89a....").decode()}, {}, 415,
         "unsupported_media_type"),
        ("/v1/upscale", {"image": IMAGE, "scale": 99}, {}, 422, "validation_failed"),
        ("/v1/upscale", {"image": IMAGE, "provider": "local", "options": {"local": {"x": 1}}}, {},
         422, "validation_failed"),
        ("/v1/generate", {"prompt": "x", "provider": "local"}, {}, 422, "validation_failed"),
        ("/v1/generate", {"prompt": "x", "n": 2}, {"accept": "image/png"}, 406, "not_acceptable"),
        ("/v1/upscale", {"image": IMAGE}, {"x-request-timeout": "-1"}, 400, "invalid_request"),
    ],
)  # fmt: skip
async def test_http_refusals_are_the_same_dry_and_real(
    path: str, body: Any, headers: dict[str, str], status: int, code: str
) -> None:
    async with gateway(make_settings()) as client:
        answers = []
        for query in ("?dry_run=true", ""):
            content = body if isinstance(body, bytes) else None
            answers.append(
                await client.post(
                    path + query,
                    content=content,
                    json=None if content else body,
                    headers={"content-type": "application/json", **headers},
                )
            )
    assert [(a.status_code, a.json()["code"]) for a in answers] == [(status, code)] * 2


async def test_dry_run_must_be_a_boolean() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post("/v1/upscale?dry_run=maybe", json={"image": IMAGE})
    assert response.status_code == 400
    assert response.json()["errors"] == [{"loc": ["query", "dry_run"], "msg": "not a boolean"}]


# --------------------------------------------------------------------------- the vendor suites


def venice_cases() -> list[Any]:
    return [
        pytest.param("venice", p.values[2], p.values[0], p.values[1], id=f"venice-{p.id}")
        for p in test_venice.REFUSALS
    ]


def vertex_cases() -> list[Any]:
    return [
        pytest.param("vertex", (lambda job=job: job), "2025", False, id=f"vertex-{model}-{i}")
        for i, (model, job, _) in enumerate(test_vertex_gemini.REJECTIONS)
    ]


def deepimage_cases() -> list[Any]:
    return [
        pytest.param(
            "deepimage", make, "2025", False, id=f"deepimage-{i}-{'.'.join(map(str, loc))}"
        )
        for i, (make, loc) in enumerate(test_deepimage.REFUSED_BEFORE_ANY_CALL)
    ]


@asynccontextmanager
async def router_for(vendors: Vendors, vendor: str, schema: str) -> AsyncIterator[Router]:
    values = vendors.provider_settings()
    values["venice"]["upscale_schema"] = schema
    settings = make_settings(
        **values, routing={"upscale": [vendor], "generate": [vendor]}, local={"enabled": False}
    )
    providers = build_providers(settings)
    for provider in providers.values():
        await provider.start()
    try:
        yield Router(settings, {vendor: providers[vendor]})
    finally:
        for provider in providers.values():
            await provider.aclose()


async def refusal(router: Router, job: Job, dry_run: bool) -> GatewayError:
    ctx = CallContext("dry-run-suite", Deadline(20), dry_run=dry_run)
    with pytest.raises(GatewayError) as refused:
        await router.run(job, ctx)
    return refused.value


@pytest.mark.parametrize(
    ("vendor", "make_job", "schema", "catalog"),
    [*venice_cases(), *vertex_cases(), *deepimage_cases()],
)
async def test_each_vendor_limit_refusal_is_the_same_dry_with_no_vendor_call(
    vendors: Vendors, vendor: str, make_job: Any, schema: str, catalog: bool
) -> None:
    vendors.venice.state.reset(schema)  # type: ignore[attr-defined]
    async with router_for(vendors, vendor, schema) as router:
        await router.providers[vendor].refresh_catalog()  # metadata, as any earlier call would
        vendors.reset()
        dry = await refusal(router, make_job(), dry_run=True)
        assert vendors.requests() == 0
        real = await refusal(router, make_job(), dry_run=False)
    assert (dry.status, dry.code) == (real.status, real.code)
    assert 400 <= dry.status < 500
    assert [e.as_dict() for e in dry.errors] == [e.as_dict() for e in real.errors]
