"""Nothing dropped silently (issue: "nothing dropped silently, for every provider"): each
normalized field is honoured on the vendor's wire, refused with 422 naming it, or reported in
``warnings``; skipped providers appear in ``X-Image-Gateway-Attempts`` and ``warnings`` with
the reason; a vendor that ignored a size is reported. Every case runs through the gateway
against the vendor emulators."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.callers.vendors import Vendors, vendor_emulators
from tests.conftest import gateway, png_bytes
from tests.emulators.common import Fault

pytestmark = pytest.mark.anyio
IMAGE = base64.b64encode(png_bytes(256, 256)).decode()


@pytest.fixture(scope="module")
def vendors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vendors]:
    with vendor_emulators(tmp_path_factory.mktemp("sa")) as running:
        yield running


@pytest.fixture
def fresh(vendors: Vendors) -> Vendors:
    for server in vendors.all():
        server.state.requests.clear()
        server.state.clear_faults()
    return vendors


def last_body(vendors: Vendors, provider: str, part: str) -> Any:
    server = getattr(vendors, provider)
    requests = [r for r in server.state.requests if part in r.path and r.method == "POST"]
    return requests[-1].json() if requests else None


def size_of(answer: Any) -> tuple[int, int]:
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0]["data"])))
    return image.size


# --------------------------------------------------------------------------- the README example


async def test_the_readme_generate_example_is_honoured_on_the_default_venice_model(
    fresh: Vendors,
) -> None:
    settings = fresh.settings(routing={"generate": ["venice"]})
    async with gateway(settings) as client:
        answer = await client.post(
            "/v1/generate", json={"prompt": "a lighthouse at dusk", "n": 2, "aspect_ratio": "16:9"}
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "venice-sd35"
    assert [(i["width"], i["height"]) for i in body["images"]] == [(1280, 720)] * 2
    sent = last_body(fresh, "venice", "/image/generate")
    assert (sent["width"], sent["height"]) == (1280, 720) and "aspect_ratio" not in sent
    assert body["warnings"] == [
        "venice: venice-sd35 takes width/height, so aspect_ratio 16:9 was sent as 1280x720"
    ]


async def test_a_venice_aspect_ratio_model_refuses_width_and_honours_a_ratio(
    fresh: Vendors,
) -> None:
    async with gateway(fresh.settings()) as client:
        sized = await client.post(
            "/v1/generate",
            json={"prompt": "x", "provider": "venice", "model": "nano-banana-pro", "width": 800},
        )
        ratio = await client.post(
            "/v1/generate",
            json={"prompt": "x", "provider": "venice", "model": "nano-banana-pro",
                  "aspect_ratio": "16:9"},
        )  # fmt: skip
    assert (sized.status_code, sized.json()["errors"][0]["loc"]) == (422, ["width"])
    assert "use aspect_ratio" in sized.json()["errors"][0]["limit"]
    assert ratio.status_code == 200 and size_of(ratio) == (1024, 576)
    assert ratio.json()["warnings"] == []


async def test_a_size_the_vendor_ignored_is_reported(fresh: Vendors) -> None:
    fresh.venice.state.add_fault(Fault("status", status=500, body={"error": "x"}, path="/models"))
    async with gateway(fresh.settings()) as client:
        answer = await client.post(
            "/v1/generate", json={"prompt": "x", "provider": "venice", "aspect_ratio": "16:9"}
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["warnings"] == [
        "venice: the model list is unavailable, so aspect_ratio 16:9 was sent unchecked "
        "(models without aspect ratios ignore it)",
        "venice returned 1024x1024, not the 16:9 asked for",
    ]


# --------------------------------------------------------------------------- skipped providers


async def test_the_newcomer_upscale_says_why_it_went_to_local(fresh: Vendors) -> None:
    settings = fresh.settings(routing={"upscale": ["venice", "local"]})
    small = base64.b64encode(png_bytes(40, 30)).decode()  # under Venice's 65,536 px
    async with gateway(settings) as client:
        answer = await client.post("/v1/upscale", json={"image": small, "scale": 2})
    assert answer.status_code == 200, answer.text
    assert answer.json()["provider"] == "local"
    assert answer.headers["x-image-gateway-attempts"] == (
        "venice:skipped:validation_failed, local:ok"
    )
    assert answer.json()["warnings"] == [
        "venice skipped: its limits refuse this request (venice: input must be >= 65536 px)"
    ]
    assert last_body(fresh, "venice", "/image/upscale") is None


async def test_an_unconfigured_provider_and_an_open_circuit_are_named(fresh: Vendors) -> None:
    values = fresh.provider_settings()
    del values["deepimage"]
    circuit = {"min_requests": 1, "failure_ratio": 0.5, "window_s": 60, "cooldown_s": 60}
    settings = fresh.settings(
        **{k: v for k, v in values.items() if k != "deepimage"},
        deepimage={},
        circuit=circuit,
        routing={"upscale": ["deepimage", "venice", "local"]},
    )
    fresh.venice.state.add_fault(Fault("status", status=500, body={"error": "x"}, times=5))
    async with gateway(settings) as client:
        first = await client.post("/v1/upscale", json={"image": IMAGE, "provider": "venice"})
        answer = await client.post("/v1/upscale", json={"image": IMAGE})
    assert first.status_code == 502
    assert answer.headers["x-image-gateway-attempts"] == (
        "deepimage:skipped:not_configured, venice:skipped:circuit_open, local:ok"
    )
    warnings = answer.json()["warnings"]
    assert warnings[0] == "deepimage skipped: not configured (set IMAGE_GATEWAY_DEEPIMAGE__API_KEY)"
    assert warnings[1].startswith("venice skipped: its circuit is open (failing; retry in ")


# --------------------------------------------------------------------------- every field

G = "/v1/generate"
U = "/v1/upscale"
# (provider, path, extra fields, how: "wire:<vendor field>=<value>" | "422:<loc>" | "warn:<text>"
#  | "path:<part of the vendor URL path>" | "size:<answer width>" | "ratio:<w:h of the sent size>"
#  | "mime:<answer type>" | "model:<answer model>")
# fmt: off
FIELDS: list[tuple[str, str, dict[str, Any], str]] = [
    # vertex generate (Gemini): every normalized field
    ("vertex", G, {"aspect_ratio": "4:3"}, "wire:generationConfig.imageConfig.aspectRatio=4:3"),
    ("vertex", G, {"width": 1376, "height": 768},
     "wire:generationConfig.imageConfig.aspectRatio=16:9"),
    ("vertex", G, {"width": 1000, "height": 700}, "422:width"),
    ("vertex", G, {"seed": 7}, "wire:generationConfig.seed=7"),
    ("vertex", G, {"negative_prompt": "fog"}, "422:negative_prompt"),
    ("vertex", G, {"output": {"format": "jpeg"}},
     "wire:generationConfig.imageConfig.imageOutputOptions.mimeType=image/jpeg"),
    ("vertex", G, {"output": {"format": "webp"}}, "422:output.format"),
    ("vertex", G, {"n": 5}, "422:n"),
    ("vertex", G, {"model": "gemini-2.5-flash-image"}, "path:/gemini-2.5-flash-image:"),
    ("vertex", G, {"model": "gemini-9-image"}, "422:model"),
    ("vertex", G, {"options": {"vertex": {"personGeneration": "ALLOW_NONE"}}},
     "wire:generationConfig.imageConfig.personGeneration=ALLOW_NONE"),
    # vertex upscale
    ("vertex", U, {"scale": 3}, "wire:parameters.upscaleConfig.upscaleFactor=x3"),
    ("vertex", U, {"width": 768}, "wire:parameters.upscaleConfig.upscaleFactor=x3"),
    ("vertex", U, {"height": 1024}, "wire:parameters.upscaleConfig.upscaleFactor=x4"),
    ("vertex", U, {"model": "imagegeneration@002"}, "422:model"),
    ("vertex", U, {"prompt": "sharp"}, "422:prompt"),
    ("vertex", U, {"creativity": 0.2}, "422:creativity"),
    ("vertex", U, {"output": {"format": "jpeg", "quality": 70}},
     "wire:parameters.outputOptions.compressionQuality=70"),
    # venice generate
    ("venice", G, {"negative_prompt": "fog"}, "wire:negative_prompt=fog"),
    ("venice", G, {"seed": 7}, "wire:seed=7"),
    ("venice", G, {"width": 512, "height": 768}, "wire:height=768"),
    ("venice", G, {"aspect_ratio": "1:1"}, "wire:width=1280"),
    ("venice", G, {"n": 2, "seed": 7},
     "warn:venice: seed 7 applies to the first of the 2 images only"),
    ("venice", G, {"output": {"format": "png"}}, "wire:format=png"),
    ("venice", G, {"output": {"quality": 50}}, "422:output.quality"),
    ("venice", G, {"n": 5}, "422:n"),
    ("venice", G, {"model": "z-image-turbo"}, "wire:model=z-image-turbo"),
    ("venice", G, {"model": "no-such-model"}, "422:model"),
    # venice upscale
    ("venice", U, {"scale": 3}, "wire:scale=3"),
    ("venice", U, {"width": 512}, "422:width"),
    ("venice", U, {"height": 512}, "422:height"),
    ("venice", U, {"model": "z-image-turbo"}, "422:model"),
    ("venice", U, {"prompt": "gold"}, "wire:enhancePrompt=gold"),
    ("venice", U, {"creativity": 0.3}, "wire:enhanceCreativity=0.3"),
    ("venice", U, {"output": {"format": "jpeg"}}, "422:output.format"),
    # deepimage generate
    ("deepimage", G, {"negative_prompt": "fog"},
     "wire:background.generate.negative_prompt=fog"),
    ("deepimage", G, {"seed": 7}, "wire:background.generate.sample_num=7"),
    ("deepimage", G, {"width": 640, "height": 480}, "wire:width=640"),
    ("deepimage", G, {"n": 2}, "422:n"),
    ("deepimage", G, {"aspect_ratio": "16:9"}, "ratio:16:9"),
    ("deepimage", G, {"output": {"format": "jpeg", "quality": 80}}, "wire:quality=80"),
    ("deepimage", G, {"model": "fantasy"}, "wire:background.generate.model_type=fantasy"),
    ("deepimage", G, {"model": "no-such-model"}, "422:model"),
    # deepimage upscale
    ("deepimage", U, {"scale": 2}, "wire:width=512"),
    ("deepimage", U, {"prompt": "sharp"}, "wire:background.generate.description=sharp"),
    ("deepimage", U, {"width": 600}, "wire:width=600"),
    ("deepimage", U, {"height": 600}, "wire:height=600"),
    ("deepimage", U, {"creativity": 0.5}, "wire:upscale_strength=5"),
    ("deepimage", U, {"output": {"format": "jpeg"}}, "wire:output_format=jpeg"),
    ("deepimage", U, {"model": "text_x4"}, "wire:upscale_parameters.type=text_x4"),
    ("deepimage", U, {"model": "no-such-model"}, "422:model"),
    # local upscale
    ("local", U, {"prompt": "sharp"}, "422:prompt"),
    ("local", U, {"creativity": 0.5}, "422:creativity"),
    ("local", U, {"scale": 3}, "size:768"),
    ("local", U, {"width": 600}, "size:600"),
    ("local", U, {"height": 300}, "size:300"),
    ("local", U, {"model": "lanczos"}, "model:lanczos"),
    ("local", U, {"model": "no-such-model"}, "422:model"),
    ("local", U, {"output": {"format": "jpeg", "quality": 80}}, "mime:image/jpeg"),
]
# fmt: on


def dig(body: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        body = body.get(key) if isinstance(body, dict) else None
    return body


@pytest.mark.parametrize(
    ("provider", "path", "fields", "how"), FIELDS,
    ids=[f"{p}-{u[4:]}-{'-'.join(f)}" for p, u, f, _ in FIELDS],
)  # fmt: skip
async def test_each_field_is_honoured_refused_or_reported(
    fresh: Vendors, provider: str, path: str, fields: dict[str, Any], how: str
) -> None:
    base = {"prompt": "a fox"} if path == G else {"image": IMAGE}
    async with gateway(fresh.settings()) as client:
        answer = await client.post(path, json={**base, "provider": provider, **fields})
    kind, _, what = how.partition(":")
    if kind == "422":
        assert answer.status_code == 422, answer.text
        assert next(e["loc"] for e in answer.json()["errors"]) == what.split(".")
        assert answer.json()["errors"][0].get("limit")
        return
    assert answer.status_code == 200, answer.text
    if kind == "warn":
        assert what in answer.json()["warnings"]
    elif kind == "size":
        assert answer.json()["images"][0]["width"] == int(what)
    elif kind == "mime":
        assert answer.json()["images"][0]["mime_type"] == what
    elif kind == "model":
        assert answer.json()["model"] == what
    elif kind == "path":
        assert any(what in r.path for r in getattr(fresh, provider).state.requests)
    elif kind == "ratio":
        sent = last_body(fresh, provider, "/process")
        across, down = (int(part) for part in what.split(":"))
        assert sent["width"] * down == sent["height"] * across, sent
    else:
        field, _, value = what.partition("=")
        sent = last_body(fresh, provider, "/process" if provider == "deepimage" else "")
        assert str(dig(sent, field)) == value, sent


async def test_a_fallback_to_local_drops_guidance_with_a_warning(fresh: Vendors) -> None:
    fresh.venice.state.add_fault(
        Fault("status", status=503, body={"error": "busy"}, path="/image/upscale", times=5)
    )
    settings = fresh.settings(routing={"upscale": ["venice", "local"]})
    async with gateway(settings) as client:
        answer = await client.post("/v1/upscale", json={"image": IMAGE, "prompt": "gold"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["provider"] == "local"
    assert (
        "local: prompt and creativity were dropped; the local upscaler takes neither"
        in answer.json()["warnings"]
    )


# --------------------------------------------------------------------------- Venice key limits


async def test_venice_key_limits_reach_providers_and_metrics(fresh: Vendors) -> None:
    async with gateway(fresh.settings(routing={"generate": ["venice"]})) as client:
        await client.post("/v1/generate", json={"prompt": "x"})
        await client.post("/v1/generate", json={"prompt": "y"})
        providers = (await client.get("/v1/providers")).json()
        scrape = (await client.get("/metrics")).text
    [venice_entry] = [p for p in providers if p["id"] == "venice"]
    account = venice_entry["account"]
    assert account["apiTier"] == {"id": "paid", "isCharged": True}
    sd35 = [m for m in account["rateLimits"] if m["apiModelId"] == "venice-sd35"]
    assert sd35 == [
        {"apiModelId": "venice-sd35", "rateLimits": [
            {"amount": 20.0, "type": "RPM"}, {"amount": 14400.0, "type": "RPD"}]}
    ]  # fmt: skip
    assert (
        'image_gateway_vendor_rate_limit{model="venice-sd35",provider="venice",type="RPM"} 20.0'
        in scrape
    )
    assert 'image_gateway_vendor_balance{currency="USD",provider="venice"} 12.5' in scrape
    fetched = [r for r in fresh.venice.state.requests if r.path.endswith("/rate_limits")]
    assert len(fetched) == 1  # cached: the second request did not fetch again
