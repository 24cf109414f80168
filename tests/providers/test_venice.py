"""The Venice provider over real HTTP against the Venice emulator (vendors.md §2)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from PIL import Image

from app.domain import (
    CallContext,
    Deadline,
    GenerateJob,
    InputImage,
    Job,
    ProviderResult,
    UpscaleJob,
)
from app.errors import (
    ContentFiltered,
    GatewayError,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    ValidationFailed,
)
from app.images import ImageInfo, sniff
from app.providers.venice import VeniceProvider
from app.schemas import GenerateParams, UpscaleParams
from tests.conftest import FakeClock, gateway, make_settings, png_bytes
from tests.emulators.common import EmulatorServer, Fault
from tests.emulators.venice import DEFAULT_API_KEY, VeniceState, create_app, venice_fault

pytestmark = pytest.mark.anyio

API_KEY = DEFAULT_API_KEY


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
def clock() -> FakeClock:
    return FakeClock()


ProviderFactory = Callable[..., Any]


@pytest.fixture
def open_venice(server: EmulatorServer, state: VeniceState, clock: FakeClock) -> ProviderFactory:
    @asynccontextmanager
    async def factory(**venice: Any) -> AsyncIterator[VeniceProvider]:
        values = {"api_key": API_KEY, "base_url": f"{server.url}/api/v1", **venice}
        provider = VeniceProvider(make_settings(venice=values), clock=clock)
        await provider.start()
        try:
            yield provider
        finally:
            await provider.aclose()

    return factory


@pytest.fixture
async def venice(open_venice: ProviderFactory) -> AsyncIterator[VeniceProvider]:
    async with open_venice() as provider:
        yield provider


# --------------------------------------------------------------------------- helpers


def solid_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 60, 90)).save(buffer, "PNG")
    return buffer.getvalue()


SMALL = png_bytes(256, 256)  # exactly the 65,536 px minimum


def upscale_job(data: bytes = SMALL, *, as_base64: bool = True, **params: Any) -> UpscaleJob:
    text = base64.b64encode(data).decode() if as_base64 else None
    return UpscaleJob(UpscaleParams(**params), InputImage(data, sniff(data), text))


def claimed_job(width: int, height: int, size: int = 1000, **params: Any) -> UpscaleJob:
    """An image whose header claims a size (validation reads only the header)."""
    info = ImageInfo("png", width, height, size)
    return UpscaleJob(UpscaleParams(**params), InputImage(b"\x89PNG", info, "iVBORw=="))


def generate_job(**params: Any) -> GenerateJob:
    params.setdefault("prompt", "a red fox in the snow")
    return GenerateJob(GenerateParams(**params))


def context(wants_bytes: bool = False, seen: list[dict[str, str]] | None = None) -> CallContext:
    def record(provider: str, headers: Any) -> None:
        assert provider == "venice"
        if seen is not None:
            seen.append(dict(headers))

    return CallContext("req-1", Deadline(20), wants_bytes=wants_bytes, on_vendor_headers=record)


async def run(provider: VeniceProvider, job: Job, ctx: CallContext | None = None) -> ProviderResult:
    return await provider.execute(provider.prepare(job), ctx or context())


def inference(state: VeniceState) -> list[Any]:
    return [r for r in state.requests if r.method == "POST"]


def assert_no_secret(exc: GatewayError) -> None:
    text = exc.detail + json.dumps([e.as_dict() for e in exc.errors])
    assert API_KEY not in text and "Bearer" not in text


def multipart_fields(body: bytes, content_type: str) -> dict[str, bytes]:
    boundary = content_type.split("boundary=")[1].encode()
    fields = {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, value = part.strip(b"\r\n").partition(b"\r\n\r\n")
        name = head.split(b'name="')[1].split(b'"')[0].decode()
        fields[name] = value
    return fields


# --------------------------------------------------------------------------- upscale


async def test_upscale_sends_json_with_the_callers_base64(
    venice: VeniceProvider, state: VeniceState
) -> None:
    job = upscale_job(scale=2)
    result = await run(venice, job)
    [sent] = inference(state)
    assert sent.path == "/api/v1/image/upscale"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json() == {"image": job.image.base64(), "scale": 2, "enhance": False}
    [image] = result.images
    assert (image.mime_type, image.width, image.height) == ("image/png", 512, 512)
    assert sniff(image.as_bytes()).width == 512 and result.warnings == []


async def test_upscale_sends_multipart_when_the_caller_sent_bytes(
    venice: VeniceProvider, state: VeniceState
) -> None:
    result = await run(
        venice, upscale_job(as_base64=False, scale=3, options={"venice": {"replication": 0.35}})
    )
    [sent] = inference(state)
    assert sent.headers["content-type"].startswith("multipart/form-data")
    fields = multipart_fields(sent.body, sent.headers["content-type"])
    assert fields == {"scale": b"3", "enhance": b"false", "replication": b"0.35", "image": SMALL}
    assert (result.images[0].width, result.images[0].height) == (768, 768)


async def test_scale_one_runs_the_enhancer_only(venice: VeniceProvider, state: VeniceState) -> None:
    options = {"venice": {"enhance": True}}
    result = await run(
        venice, upscale_job(scale=1, prompt="gold", creativity=0.25, options=options)
    )
    assert inference(state)[0].json() == {
        "image": base64.b64encode(SMALL).decode(),
        "scale": 1,
        "enhance": True,
        "enhancePrompt": "gold",
        "enhanceCreativity": 0.25,
    }
    assert (result.images[0].width, result.images[0].height) == (256, 256)


async def test_a_prompt_turns_the_enhancer_on(venice: VeniceProvider, state: VeniceState) -> None:
    await run(venice, upscale_job(as_base64=False, scale=1, prompt="marble"))
    fields = multipart_fields(inference(state)[0].body, inference(state)[0].headers["content-type"])
    assert fields["enhance"] == b"true" and fields["enhancePrompt"] == b"marble"


async def test_enhance_false_with_a_prompt_is_sent_with_a_warning(
    venice: VeniceProvider, state: VeniceState
) -> None:
    result = await run(venice, upscale_job(prompt="gold", options={"venice": {"enhance": "false"}}))
    assert inference(state)[0].json()["enhance"] is False
    assert any("enhancer" in w for w in result.warnings)


async def test_scale_four_is_lowered_to_fit_and_reported(
    venice: VeniceProvider, state: VeniceState
) -> None:
    result = await run(venice, upscale_job(solid_png(1025, 1024), as_base64=False, scale=4))
    assert (
        multipart_fields(inference(state)[0].body, inference(state)[0].headers["content-type"])[
            "scale"
        ]
        == b"4"
    )
    [image] = result.images
    assert image.width is not None and image.height is not None
    assert (image.width, image.height) == (4097, 4094)  # what the emulator really sent back
    assert image.width * image.height <= 16_777_216
    [warning] = result.warnings
    assert "lowers scale 4 to 3.998" in warning and "4097x4094" in warning


async def test_schema_2026_maps_creativity_and_lowers_any_scale(
    open_venice: ProviderFactory, state: VeniceState
) -> None:
    state.reset("2026")
    async with open_venice(upscale_schema="2026") as venice:
        result = await run(venice, upscale_job(scale=2, creativity=0.01))
        big = await run(venice, upscale_job(solid_png(1400, 1400), scale=3))
    assert inference(state)[0].json() == {
        "image": base64.b64encode(SMALL).decode(),
        "scale": 2,
        "creativity": 0.01,
    }
    assert (result.images[0].width, result.images[0].height) == (512, 512)
    assert (big.images[0].width, big.images[0].height) == (4096, 4096)
    assert "lowers scale 3" in big.warnings[0]


# --------------------------------------------------------------------------- validation

BIG_STYLE_REFERENCE = "A" * (8 * 1024 * 1024 * 4 // 3 + 4)


def opts(**fields: Any) -> dict[str, Any]:
    return {"venice": fields}


def at(*path: str | int) -> list[str | int]:
    """A loc under options.venice."""
    return ["options", "venice", *path]


def refusal(
    case: str, job: Callable[[], Job], loc: list[Any], schema: str = "2025", catalog: bool = False
) -> Any:
    """A request Venice would refuse; ``catalog`` fetches the model and style lists first."""
    return pytest.param(schema, catalog, job, loc, id=case)


def refs(*items: dict[str, Any]) -> dict[str, Any]:
    return opts(style_references=list(items))


REFUSALS = [
    refusal("scale-1-needs-enhance", lambda: upscale_job(scale=1), ["scale"]),
    refusal("enhance-false-needs-scale-over-1",
            lambda: upscale_job(scale=1, options=opts(enhance=False)), at("enhance")),
    refusal("scale-over-4", lambda: upscale_job(scale=5), ["scale"]),
    refusal("scale-3-output-over-cap", lambda: claimed_job(1400, 1400, scale=3), ["scale"]),
    refusal("input-under-65536-px", lambda: upscale_job(png_bytes(255, 256)), ["image"]),
    refusal("input-25-mb", lambda: claimed_job(512, 512, size=25 * 1024 * 1024), ["image"]),
    refusal("input-over-output-cap", lambda: claimed_job(4097, 4097, scale=4), ["scale"]),
    refusal("enhance-prompt-over-1500", lambda: upscale_job(prompt="g" * 1501), ["prompt"]),
    refusal("replication-over-1",
            lambda: upscale_job(options=opts(replication=1.5)), at("replication")),
    refusal("enhance-not-a-boolean",
            lambda: upscale_job(options=opts(enhance="yes")), at("enhance")),
    refusal("unknown-upscale-option", lambda: upscale_job(options=opts(seed=1)), at("seed")),
    refusal("enhancePrompt-is-the-normalized-prompt",
            lambda: upscale_job(options=opts(enhancePrompt="x")), at("enhancePrompt")),
    refusal("output-format-is-png-only",
            lambda: upscale_job(output={"format": "jpeg"}), ["output", "format"]),
    refusal("output-quality", lambda: upscale_job(output={"quality": 80}), ["output", "quality"]),
    refusal("target-width", lambda: upscale_job(width=1024), ["width"]),
    refusal("unknown-upscale-model", lambda: upscale_job(model="upscaler-9"), ["model"]),
    refusal("2026-scale-under-2", lambda: upscale_job(scale=1.5), ["scale"], "2026"),
    refusal("2026-creativity-over-0.02",
            lambda: upscale_job(creativity=0.5), ["creativity"], "2026"),
    refusal("2026-no-prompt", lambda: upscale_job(prompt="gold"), ["prompt"], "2026"),
    refusal("2026-no-enhance",
            lambda: upscale_job(options=opts(enhance=True)), at("enhance"), "2026"),
    refusal("2026-side-under-64", lambda: claimed_job(1100, 60), ["image"], "2026"),
    refusal("2026-no-real-upscale-fits", lambda: claimed_job(4096, 4097), ["scale"], "2026"),
    refusal("n-over-4", lambda: generate_job(n=5), ["n"]),
    refusal("variants-with-binary",
            lambda: generate_job(n=2, options=opts(return_binary=True)), at("return_binary")),
    refusal("width-over-1280", lambda: generate_job(width=1281), ["width"]),
    refusal("height-over-1280", lambda: generate_job(height=2048), ["height"]),
    refusal("seed-over-999999999", lambda: generate_job(seed=1_000_000_000), ["seed"]),
    refusal("seed-under-minus-999999999", lambda: generate_job(seed=-1_000_000_000), ["seed"]),
    refusal("cfg-scale-0", lambda: generate_job(options=opts(cfg_scale=0)), at("cfg_scale")),
    refusal("cfg-scale-over-20",
            lambda: generate_job(options=opts(cfg_scale=20.5)), at("cfg_scale")),
    refusal("steps-over-50", lambda: generate_job(options=opts(steps=51)), at("steps")),
    refusal("lora-strength-over-100",
            lambda: generate_job(options=opts(lora_strength=101)), at("lora_strength")),
    refusal("quality-enum", lambda: generate_job(options=opts(quality="ultra")), at("quality")),
    refusal("safe-mode-not-a-boolean",
            lambda: generate_job(options=opts(safe_mode="yes")), at("safe_mode")),
    refusal("style-reference-strength",
            lambda: generate_job(options=refs({"image": "iVBOR", "strength": 0.05})),
            at("style_references", 0, "strength")),
    refusal("style-reference-8-mb",
            lambda: generate_job(options=refs({"image": BIG_STYLE_REFERENCE})),
            at("style_references", 0, "image")),
    refusal("inpaint-is-gone",
            lambda: generate_job(options=opts(inpaint={"strength": 50})), at("inpaint")),
    refusal("unknown-generate-option",
            lambda: generate_job(options=opts(sampler="euler")), at("sampler")),
    refusal("variants-is-the-normalized-n",
            lambda: generate_job(options=opts(variants=2)), at("variants")),
    refusal("generate-output-quality",
            lambda: generate_job(output={"format": "jpeg", "quality": 80}), ["output", "quality"]),
    refusal("model-prompt-limit",
            lambda: generate_job(prompt="p" * 1501), ["prompt"], catalog=True),
    refusal("model-negative-prompt-limit",
            lambda: generate_job(negative_prompt="n" * 1501), ["negative_prompt"], catalog=True),
    refusal("unknown-model", lambda: generate_job(model="dall-e-3"), ["model"], catalog=True),
    refusal("model-steps-max",
            lambda: generate_job(options=opts(steps=31)), at("steps"), catalog=True),
    refusal("model-resolutions",
            lambda: generate_job(model="nano-banana-pro", options=opts(resolution="8K")),
            at("resolution"), catalog=True),
    refusal("model-aspect-ratios",
            lambda: generate_job(model="nano-banana-pro", aspect_ratio="5:4"), ["aspect_ratio"],
            catalog=True),
    refusal("model-qualities",
            lambda: generate_job(model="grok-imagine-image-2-0", options=opts(quality="high")),
            at("quality"), catalog=True),
    refusal("style-preset-from-styles",
            lambda: generate_job(options=opts(style_preset="Vaporwave")), at("style_preset"),
            catalog=True),
    refusal("model-style-reference-count",
            lambda: generate_job(model="krea-v2-large", options=refs(*[{"image": "a"}] * 4)),
            at("style_references"), catalog=True),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "catalog", "job", "loc"), REFUSALS)
async def test_a_request_venice_would_refuse_never_reaches_it(
    open_venice: ProviderFactory,
    state: VeniceState,
    schema: str,
    catalog: bool,
    job: Callable[[], Job],
    loc: list[Any],
) -> None:
    state.reset(schema)
    async with open_venice(upscale_schema=schema) as venice:
        if catalog:
            await venice.refresh_catalog()
        with pytest.raises(ValidationFailed) as refused:
            await run(venice, job())
    assert refused.value.status == 422 and refused.value.provider == "venice"
    assert loc in [list(e.loc) for e in refused.value.errors]
    assert all(e.limit and e.limit.startswith("venice: ") for e in refused.value.errors)
    assert inference(state) == []


# --------------------------------------------------------------------------- generate


async def test_generate_json_passes_venice_base64_through(
    venice: VeniceProvider, state: VeniceState
) -> None:
    result = await run(venice, generate_job(width=64, height=48, output={"format": "png"}))
    [sent] = inference(state)
    assert sent.path == "/api/v1/image/generate"
    assert sent.json() == {
        "model": "venice-sd35",
        "prompt": "a red fox in the snow",
        "format": "png",
        "width": 64,
        "height": 48,
    }
    [image] = result.images
    assert not image.has_bytes  # kept as Venice's base64, never decoded and re-encoded
    assert (image.mime_type, image.width, image.height) == ("image/png", 64, 48)
    assert sniff(image.as_bytes()).width == 64


async def test_generate_asks_for_binary_when_the_caller_wants_bytes(
    venice: VeniceProvider, state: VeniceState
) -> None:
    result = await run(venice, generate_job(width=80, height=64), context(wants_bytes=True))
    assert inference(state)[0].json()["return_binary"] is True
    [image] = result.images
    assert image.has_bytes and (image.mime_type, image.width, image.height) == (
        "image/webp",
        80,
        64,
    )


async def test_generate_variants_come_back_as_json(
    venice: VeniceProvider, state: VeniceState
) -> None:
    result = await run(venice, generate_job(n=3, width=32, height=32), context(wants_bytes=True))
    sent = inference(state)[0].json()
    assert sent["variants"] == 3 and "return_binary" not in sent
    assert len(result.images) == 3 and all(i.width == 32 and not i.has_bytes for i in result.images)


async def test_an_explicit_return_binary_false_is_honoured(
    venice: VeniceProvider, state: VeniceState
) -> None:
    job = generate_job(width=32, height=32, options={"venice": {"return_binary": False}})
    result = await run(venice, job, context(wants_bytes=True))
    assert inference(state)[0].json()["return_binary"] is False and not result.images[0].has_bytes


OPTION_SETS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("venice-sd35", {"negative_prompt": "blur", "width": 64, "height": 64, "seed": -999_999_999,
                     "output": {"format": "jpeg"}},
     {"steps": 30, "cfg_scale": 7.5, "style_preset": "3D Model", "safe_mode": False,
      "hide_watermark": True, "embed_exif_metadata": True, "lora_strength": 100,
      "enable_web_search": False, "disable_prompt_optimization_thinking": True,
      "enhance_prompt": False}),
    ("nano-banana-pro", {"aspect_ratio": "16:9"}, {"resolution": "1K"}),
    ("gpt-image-2", {"aspect_ratio": "3:2", "n": 4}, {"quality": "low"}),
    ("krea-v2-large", {"width": 32, "height": 32},
     {"style_references": [{"image": "iVBORw0KGgo", "strength": 0.8}, {"image": "https://example.test/a.png"}]}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "params", "options"), OPTION_SETS, ids=[o[0] for o in OPTION_SETS]
)
async def test_generate_forwards_every_field_verbatim(
    venice: VeniceProvider,
    state: VeniceState,
    model: str,
    params: dict[str, Any],
    options: dict[str, Any],
) -> None:
    await venice.refresh_catalog()
    result = await run(venice, generate_job(model=model, options={"venice": options}, **params))
    sent = inference(state)[0].json()
    assert {k: sent[k] for k in options} == options
    assert sent["model"] == model and sent.get("variants", 1) == params.get("n", 1)
    for name in ("negative_prompt", "width", "height", "seed", "aspect_ratio"):
        assert sent.get(name) == params.get(name)
    assert sent["format"] == params.get("output", {}).get("format", "webp")
    assert len(result.images) == params.get("n", 1)


async def test_aspect_ratio_models_report_the_real_size(venice: VeniceProvider) -> None:
    await venice.refresh_catalog()
    result = await run(venice, generate_job(model="nano-banana-pro", aspect_ratio="16:9"))
    assert (result.images[0].width, result.images[0].height) == (1024, 576)


# --------------------------------------------------------------------------- the catalog (§2.5)


async def test_the_catalog_is_cached_for_its_ttl(
    venice: VeniceProvider, state: VeniceState, clock: FakeClock
) -> None:
    await venice.refresh_catalog()
    clock.advance(599)
    await venice.refresh_catalog()
    assert len(state.requests_to("/models")) == 1 and len(state.requests_to("/image/styles")) == 1
    assert state.requests_to("/models")[0].query == "type=image"
    assert [r.model for r in venice.model_limits()][:3] == [
        "upscaler",
        "venice-sd35",
        "z-image-turbo",
    ]
    clock.advance(1)
    await venice.refresh_catalog()
    assert len(state.requests_to("/models")) == 2 and len(state.requests_to("/image/styles")) == 2


async def test_without_the_catalog_validation_falls_back_to_the_schema(
    venice: VeniceProvider, state: VeniceState, clock: FakeClock
) -> None:
    state.add_fault(venice_fault(500, path="/models"))
    state.add_fault(Fault(kind="reset", path="/image/styles"))
    await venice.refresh_catalog()  # never raises
    [row] = [r for r in venice.model_limits() if r.model == "venice-sd35"]
    assert row.prompt_max_chars == 7500
    # 1501 characters pass the schema limit; Venice's own per-model check answers.
    with pytest.raises(ValidationFailed) as refused:
        await run(venice, generate_job(prompt="p" * 1501))
    assert [list(e.loc) for e in refused.value.errors] == [["prompt"]]
    assert "1500" in refused.value.errors[0].msg and len(inference(state)) == 1
    clock.advance(29)
    await venice.refresh_catalog()  # a failure is not retried on every request
    assert len(state.requests_to("/models")) == 1
    clock.advance(1)
    await venice.refresh_catalog()
    assert (
        len(state.requests_to("/models")) == 2 and venice.model_limits()[1].prompt_max_chars == 1500
    )


async def test_an_unknown_style_is_refused_by_venice_when_the_styles_are_unknown(
    venice: VeniceProvider, state: VeniceState
) -> None:
    state.add_fault(venice_fault(503, path="/image/styles"))
    await venice.refresh_catalog()
    with pytest.raises(ValidationFailed) as refused:
        await run(venice, generate_job(options={"venice": {"style_preset": "Vaporwave"}}))
    assert [list(e.loc) for e in refused.value.errors] == [["options", "venice", "style_preset"]]
    assert refused.value.retryable is False


async def test_a_failed_refresh_keeps_the_last_good_catalog(
    venice: VeniceProvider, state: VeniceState, clock: FakeClock
) -> None:
    await venice.refresh_catalog()
    clock.advance(600)
    state.add_fault(Fault(kind="malformed", path="/models"))
    await venice.refresh_catalog()
    with pytest.raises(ValidationFailed):
        venice.prepare(generate_job(prompt="p" * 1501))
    assert len(state.requests_to("/models")) == 2


async def test_refresh_never_raises_when_venice_is_unreachable(
    open_venice: ProviderFactory,
) -> None:
    async with open_venice(base_url="http://127.0.0.1:9/api/v1") as venice:
        await venice.refresh_catalog()
        call = venice.prepare(generate_job(model="any-model", prompt="p" * 7500))
    assert call.model == "any-model"


async def test_the_catalog_shows_both_options_models(venice: VeniceProvider) -> None:
    catalog = venice.catalog()
    assert catalog.options_schema is not None
    assert set(catalog.options_schema) == {"upscale", "generate"}
    assert "replication" in catalog.options_schema["upscale"]["properties"]
    assert catalog.default_models == {"generate": "venice-sd35", "upscale": "upscaler"}


# --------------------------------------------------------------------------- headers (§2.4, §2.7)


@pytest.mark.parametrize("kind", ["generate-json", "generate-binary", "upscale"])
async def test_a_content_violation_is_never_a_success(
    venice: VeniceProvider, state: VeniceState, kind: str
) -> None:
    state.content_violation = True
    job = upscale_job() if kind == "upscale" else generate_job(width=32, height=32)
    with pytest.raises(ContentFiltered) as filtered:
        await run(venice, job, context(wants_bytes=kind == "generate-binary"))
    assert filtered.value.status == 422 and filtered.value.code == "content_filtered"
    assert filtered.value.reason == "content_filtered" and filtered.value.retryable is False


async def test_blurred_and_deprecated_become_warnings(
    venice: VeniceProvider, state: VeniceState
) -> None:
    state.blurred = True
    await venice.refresh_catalog()
    result = await run(venice, generate_job(model="old-sd15", width=32, height=32))
    assert result.warnings[0] == "venice: safe_mode blurred the image (x-venice-is-blurred)"
    assert (
        "deprecated from 2026-01-15" in result.warnings[1]
        and "replacement: venice-sd35" in result.warnings[1]
    )


async def test_rate_limit_headers_reach_the_metrics(
    venice: VeniceProvider, state: VeniceState
) -> None:
    seen: list[dict[str, str]] = []
    await run(venice, generate_job(width=32, height=32), context(seen=seen))
    state.add_fault(venice_fault(429, path="/image/generate", retry_after=5))
    with pytest.raises(RateLimited):
        await run(venice, generate_job(width=32, height=32), context(seen=seen))
    assert [s["x-ratelimit-remaining-requests"] for s in seen] == ["19", "0"]
    assert all(k.startswith("x-ratelimit-") for s in seen for k in s)
    assert "x-ratelimit-reset-requests" in seen[0]


# --------------------------------------------------------------------------- errors (§2.6)


async def test_401_means_the_key_was_refused(
    open_venice: ProviderFactory, state: VeniceState
) -> None:
    async with open_venice(api_key="sk-wrong-key-123") as venice:
        with pytest.raises(UpstreamError) as failed:
            await run(venice, upscale_job())
    assert failed.value.status == 502 and "credentials" in failed.value.detail
    assert failed.value.retryable is False and failed.value.reason == "client_error"
    assert "sk-wrong-key-123" not in failed.value.detail
    assert len(inference(state)) == 1


@pytest.mark.parametrize(("status", "cause"), [(402, "balance exhausted"), (403, "refused access")])
async def test_402_and_403_name_the_cause(
    venice: VeniceProvider, state: VeniceState, status: int, cause: str
) -> None:
    state.add_fault(venice_fault(status, path="/image/upscale"))
    with pytest.raises(UpstreamError) as failed:
        await run(venice, upscale_job())
    assert failed.value.status == 502 and cause in failed.value.detail
    assert failed.value.retryable is False
    assert_no_secret(failed.value)


@pytest.mark.parametrize(("retry_after", "expected"), [(7, 7.0), (None, 30.0)])
async def test_429_keeps_retry_after_and_is_never_resent(
    venice: VeniceProvider, state: VeniceState, retry_after: int | None, expected: float
) -> None:
    state.add_fault(venice_fault(429, path="/image/generate", retry_after=retry_after))
    with pytest.raises(RateLimited) as limited:
        await run(venice, generate_job(width=32, height=32))
    assert limited.value.status == 429 and limited.value.retry_after == expected
    assert limited.value.retryable is False and limited.value.reason == "rate_limited"
    assert "Rate limit exceeded" in limited.value.detail


async def test_500_is_an_upstream_error(venice: VeniceProvider, state: VeniceState) -> None:
    state.add_fault(venice_fault(500, path="/image/upscale"))
    with pytest.raises(UpstreamError) as failed:
        await run(venice, upscale_job())
    assert failed.value.status == 502 and failed.value.reason == "server_error"
    assert "Inference processing failed" in failed.value.detail


async def test_503_is_unavailable_and_retryable(venice: VeniceProvider, state: VeniceState) -> None:
    state.add_fault(venice_fault(503, path="/image/generate", retry_after=3))
    with pytest.raises(ProviderUnavailable) as unavailable:
        await run(venice, generate_job(width=32, height=32))
    assert unavailable.value.status == 503 and unavailable.value.retryable is True
    assert unavailable.value.retry_after == 3.0 and unavailable.value.reason == "server_error"


async def test_a_detailed_error_tree_becomes_field_locations(
    venice: VeniceProvider, state: VeniceState
) -> None:
    details = {
        "_errors": ["Unrecognized key(s) in object: 'x'"],
        "variants": {"_errors": ["Number must be less than or equal to 4"]},
        "style_references": {
            "_errors": [],
            "0": {"_errors": [], "strength": {"_errors": ["Too small"]}},
        },
    }
    body = {"error": "Invalid request parameters", "details": details}
    state.add_fault(Fault(kind="status", status=400, body=body, path="/image/generate"))
    with pytest.raises(ValidationFailed) as refused:
        await run(venice, generate_job(width=32, height=32))
    assert [(list(e.loc), e.msg) for e in refused.value.errors] == [
        (["body"], "Unrecognized key(s) in object: 'x'"),
        (["n"], "Number must be less than or equal to 4"),
        (["options", "venice", "style_references", 0, "strength"], "Too small"),
    ]
    assert refused.value.retryable is False and refused.value.errors[1].limit == (
        "venice: variants: Number must be less than or equal to 4"
    )


async def test_flat_issues_are_used_when_there_is_no_tree(
    venice: VeniceProvider, state: VeniceState
) -> None:
    body = {
        "error": "Invalid request parameters",
        "details": "oops",
        "issues": [{"code": "too_big", "path": ["width"], "message": "Too big"}],
    }
    state.add_fault(Fault(kind="status", status=400, body=body, path="/image/generate"))
    with pytest.raises(ValidationFailed) as refused:
        await run(venice, generate_job(width=32, height=32))
    assert [(list(e.loc), e.msg) for e in refused.value.errors] == [(["width"], "Too big")]


@pytest.mark.parametrize(
    ("status", "body", "error", "loc"),
    [
        (404, {"error": "Specified model not found"}, ValidationFailed, ["model"]),
        (
            413,
            {"code": "PAYLOAD_TOO_LARGE", "error": "File exceeds 25 MB."},
            ValidationFailed,
            ["body"],
        ),
        (422, {"error": "Your prompt violates the content policy"}, ContentFiltered, None),
        (415, {"error": "Invalid request content-type"}, UpstreamError, None),
    ],
)
async def test_other_venice_4xx_are_final(
    venice: VeniceProvider,
    state: VeniceState,
    status: int,
    body: Any,
    error: type[GatewayError],
    loc: Any,
) -> None:
    state.add_fault(Fault(kind="status", status=status, body=body, path="/image/generate"))
    with pytest.raises(error) as failed:
        await run(venice, generate_job(width=32, height=32))
    assert failed.value.retryable is False and body["error"] in failed.value.detail
    if loc is not None:
        assert list(failed.value.errors[0].loc) == loc


async def test_a_vendor_message_never_carries_the_key(
    venice: VeniceProvider, state: VeniceState
) -> None:
    body = {"error": f"Authentication failed for Bearer {API_KEY}"}
    state.add_fault(Fault(kind="status", status=401, body=body, path="/image/upscale"))
    with pytest.raises(UpstreamError) as failed:
        await run(venice, upscale_job())
    assert API_KEY not in failed.value.detail and "***" in failed.value.detail


@pytest.mark.parametrize(
    ("fault", "path", "reason"),
    [
        (Fault(kind="reset"), "/image/upscale", "bad_response"),
        (
            Fault(kind="status", status=200, body=b"<html>oops</html>"),
            "/image/upscale",
            "bad_response",
        ),
        (Fault(kind="malformed"), "/image/generate", "bad_response"),
        (
            Fault(kind="status", status=200, body={"id": "x", "images": []}),
            "/image/generate",
            "bad_response",
        ),
        (Fault(kind="status", status=502, body="bad gateway"), "/image/generate", "server_error"),
    ],
)
async def test_broken_answers_are_upstream_errors(
    venice: VeniceProvider, state: VeniceState, fault: Fault, path: str, reason: str
) -> None:
    fault.path = path
    state.add_fault(fault)
    job = upscale_job() if "upscale" in path else generate_job(width=32, height=32)
    with pytest.raises(UpstreamError) as failed:
        await run(venice, job)
    assert failed.value.status == 502 and failed.value.reason == reason
    assert_no_secret(failed.value)


async def test_an_unreachable_venice_is_unavailable(open_venice: ProviderFactory) -> None:
    async with open_venice(base_url="http://127.0.0.1:9/api/v1") as venice:
        with pytest.raises(ProviderUnavailable) as unavailable:
            await run(venice, upscale_job())
    assert unavailable.value.reason == "connect" and unavailable.value.retryable is True
    assert_no_secret(unavailable.value)


async def test_an_expired_deadline_sends_nothing(
    venice: VeniceProvider, state: VeniceState
) -> None:
    ctx = CallContext("req-1", Deadline(0))
    with pytest.raises(UpstreamTimeout):
        await venice.execute(venice.prepare(upscale_job()), ctx)
    assert inference(state) == []


# --------------------------------------------------------------------------- through the gateway


def gateway_settings(server: EmulatorServer) -> Any:
    return make_settings(
        venice={"api_key": API_KEY, "base_url": f"{server.url}/api/v1"},
        routing={"upscale": ["venice"], "generate": ["venice"]},
    )


async def test_gateway_upscale_json_and_multipart(
    server: EmulatorServer, state: VeniceState
) -> None:
    image = base64.b64encode(SMALL).decode()
    async with gateway(gateway_settings(server)) as client:
        as_json = await client.post("/v1/upscale", json={"image": image, "scale": 2})
        files = {"image": ("in.png", SMALL, "image/png")}
        as_form = await client.post("/v1/upscale", data={"scale": "4"}, files=files)
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["provider"] == "venice" and as_json.json()["images"][0]["width"] == 512
    assert as_form.status_code == 200, as_form.text
    assert as_form.json()["images"][0]["height"] == 1024
    [first, second] = inference(state)
    assert first.headers["content-type"] == "application/json"
    assert second.headers["content-type"].startswith("multipart/form-data")


async def test_gateway_generate(server: EmulatorServer, state: VeniceState) -> None:
    body = {"prompt": "a fox", "n": 2, "width": 64, "height": 32, "output": {"format": "png"}}
    async with gateway(gateway_settings(server)) as client:
        answer = await client.post("/v1/generate", json=body)
        raw = await client.post(
            "/v1/generate",
            json={"prompt": "a fox", "width": 32, "height": 32},
            headers={"Accept": "image/*"},
        )
    assert answer.status_code == 200, answer.text
    images = answer.json()["images"]
    assert len(images) == 2 and images[0]["mime_type"] == "image/png" and images[0]["width"] == 64
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/webp"
    assert inference(state)[1].json()["return_binary"] is True


async def test_gateway_problem_json_from_a_detailed_error(
    server: EmulatorServer, state: VeniceState
) -> None:
    state.add_fault(venice_fault(500, path="/image/styles", times=5))
    async with gateway(gateway_settings(server)) as client:
        body = {"prompt": "a fox", "options": {"venice": {"style_preset": "Vaporwave"}}}
        answer = await client.post("/v1/generate", json=body)
        refused = await client.post(
            "/v1/upscale", json={"image": base64.b64encode(SMALL).decode(), "scale": 1}
        )
    assert answer.status_code == 422 and answer.headers["content-type"].startswith(
        "application/problem+json"
    )
    problem = answer.json()
    assert problem["code"] == "validation_failed" and problem["provider"] == "venice"
    assert problem["errors"][0]["loc"] == ["options", "venice", "style_preset"]
    assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["scale"]
    assert len(inference(state)) == 1  # the refused upscale never reached Venice
    assert API_KEY not in answer.text and API_KEY not in refused.text
