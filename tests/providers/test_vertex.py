"""The vertex provider over real HTTP against the Vertex emulator (vendors.md §1).

google-auth runs for real: each test module generates a service-account key whose
``token_uri`` is the emulator's ``/token``, so every token the provider sends was obtained
through the JWT-bearer grant and checked by the emulator. Covered: one passing call per
model of the limits table, every rejection of the table (422 with no request sent), both
upscale shapes of §1.5, the response mapping (pass-through base64, filtered images, the
positive-prompt entry, Cloud Storage output), token caching and the one 401 refresh-and-retry,
the mapped error table, and the gateway end to end."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app.errors import (
    ContentFiltered,
    GatewayError,
    NotAcceptable,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    ValidationFailed,
)
from app.images import sniff
from app.providers.base import CallContext, Deadline, GenerateJob, InputImage, Job, UpscaleJob
from app.providers.vertex import VertexCall, VertexProvider
from app.providers.vertex_limits import LIMITS_BY_MODEL
from app.schemas import GenerateParams, UpscaleParams
from tests.conftest import gateway, make_settings, png_bytes
from tests.emulators.common import EmulatorServer, Fault
from tests.emulators.vertex import (
    JWT_BEARER,
    PROMPT_BLOCKED,
    SEED_WITH_WATERMARK,
    VertexState,
    create_app,
    new_service_account,
    rpc_error,
)

pytestmark = pytest.mark.anyio

PNG = png_bytes(32, 24)
JPEG = png_bytes(32, 24, fmt="JPEG")
WEBP = png_bytes(32, 24, fmt="WEBP")
# fmt: off
SIZES_1K = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896), "9:16": (768, 1408),
            "16:9": (1408, 768)}
UPSCALE_4 = "imagen-4.0-upscale-preview"
IMAGEN_4 = ("imagen-4.0-generate-001", "imagen-4.0-ultra-generate-001",
            "imagen-4.0-fast-generate-001")
GENERATE_MODELS = (*IMAGEN_4, "imagen-3.0-generate-002", "imagen-3.0-generate-001",
                   "imagen-3.0-fast-generate-001", "imagegeneration@006", "imagegeneration@005",
                   "imagegeneration@002")
WATERMARKED = tuple(m for m in GENERATE_MODELS
                    if m not in ("imagegeneration@005", "imagegeneration@002"))
# fmt: on


def padded_png(total_bytes: int) -> bytes:
    """A valid PNG grown to ``total_bytes`` with a private ancillary chunk (for size limits)."""
    payload = b"\0" * (total_bytes - len(PNG) - 12)
    chunk = struct.pack(">I", len(payload)) + b"prVt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"prVt" + payload))
    return PNG[:-12] + chunk + PNG[-12:]


def flat_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    state = VertexState()
    with EmulatorServer(create_app(state), state) as running:
        yield running


@pytest.fixture(scope="module")
def keyfile(server: EmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert isinstance(server.state, VertexState)
    path = tmp_path_factory.mktemp("vertex") / "service-account.json"
    path.write_text(json.dumps(new_service_account(server.state, server.url + "/token")))
    return path


@pytest.fixture
def state(server: EmulatorServer) -> VertexState:
    assert isinstance(server.state, VertexState)
    server.state.reset()
    return server.state


def settings_for(url: str, keyfile: Path | None, **vertex: Any) -> Any:
    return make_settings(
        vertex={
            "project": "p",
            "location": "us-central1",
            "base_url": url,
            "credentials_file": str(keyfile) if keyfile else None,
            **vertex,
        }
    )


@pytest.fixture
async def provider(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> AsyncIterator[VertexProvider]:
    running = VertexProvider(settings_for(server.url, keyfile))
    await running.start()
    yield running
    await running.aclose()


def ctx(seconds: float = 10.0, wants_bytes: bool = False) -> CallContext:
    return CallContext(request_id="test", deadline=Deadline(seconds), wants_bytes=wants_bytes)


def generate(**params: Any) -> GenerateJob:
    return GenerateJob(GenerateParams(**{"prompt": "a lighthouse at dusk", **params}))


def upscale(data: bytes = PNG, **params: Any) -> UpscaleJob:
    return UpscaleJob(
        UpscaleParams(**params), InputImage(data, sniff(data), base64.b64encode(data).decode())
    )


async def run(provider: VertexProvider, job: Job, context: CallContext | None = None) -> Any:
    """What routing does: prepare (validation), then execute."""
    return await provider.execute(provider.prepare(job), context or ctx())


def sent(state: VertexState) -> dict[str, Any]:
    [request] = state.predict_requests()
    body: dict[str, Any] = request.json()
    return body


def tokens_requested(state: VertexState) -> int:
    return len(state.requests_to("/token"))


# --------------------------------------------------------------------------- auth


async def test_google_auth_obtains_a_real_token_and_every_request_carries_it(
    provider: VertexProvider, state: VertexState
) -> None:
    await run(provider, generate(n=2))
    await run(provider, upscale(scale=2))
    await run(provider, generate(model="imagen-4.0-fast-generate-001"))
    [grant] = state.requests_to("/token")
    assert grant.headers["content-type"] == "application/x-www-form-urlencoded"
    assert f"grant_type={JWT_BEARER}".replace(":", "%3A") in grant.body.decode()
    [token] = state.tokens  # issued once, after the emulator verified the signed assertion
    predicts = state.predict_requests()
    assert len(predicts) == 3
    for request in predicts:
        assert request.headers["authorization"] == f"Bearer {token}"
        assert request.headers["content-type"] == "application/json; charset=utf-8"
        assert request.path.startswith(
            "/v1/projects/p/locations/us-central1/publishers/google/models/"
        )
        assert request.path.endswith(":predict")


async def test_concurrent_first_calls_share_one_token_refresh(
    provider: VertexProvider, state: VertexState
) -> None:
    results = await asyncio.gather(*(run(provider, generate()) for _ in range(5)))
    assert all(len(result.images) == 1 for result in results)
    assert tokens_requested(state) == 1
    assert len({r.headers["authorization"] for r in state.predict_requests()}) == 1


async def test_revoked_token_gets_one_refresh_and_one_retry(
    provider: VertexProvider, state: VertexState
) -> None:
    await run(provider, generate())
    state.revoke_tokens()
    result = await run(provider, generate())
    assert len(result.images) == 1
    first, refused, retried = (r.headers["authorization"] for r in state.predict_requests())
    assert first == refused != retried
    assert tokens_requested(state) == 2


async def test_a_second_401_is_a_502_saying_the_credentials_were_refused(
    provider: VertexProvider, state: VertexState
) -> None:
    body = rpc_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
    state.add_fault(Fault(kind="status", status=401, body=body, path=":predict", times=2))
    with pytest.raises(UpstreamError) as caught:
        await run(provider, generate())
    assert caught.value.status == 502
    assert "gateway's Google credentials" in caught.value.detail
    assert (len(state.predict_requests()), tokens_requested(state)) == (2, 2)


async def test_tokens_are_cached_until_near_expiry(
    provider: VertexProvider, state: VertexState
) -> None:
    assert provider.tokens is not None
    now = [1000.0]
    provider.tokens.clock = lambda: now[0]
    await run(provider, generate())
    now[0] += 3599 - 301  # still more than the 300 s margin before expiry
    await run(provider, generate())
    assert tokens_requested(state) == 1
    now[0] += 2
    await run(provider, generate())
    assert tokens_requested(state) == 2
    auth = [r.headers["authorization"] for r in state.predict_requests()]
    assert auth[0] == auth[1] != auth[2]


async def test_a_short_lived_token_is_refreshed_at_half_its_lifetime(
    provider: VertexProvider, state: VertexState
) -> None:
    assert provider.tokens is not None
    state.token_lifetime_s = 60
    now = [0.0]
    provider.tokens.clock = lambda: now[0]
    await run(provider, generate())
    now[0] = 29.0
    await run(provider, generate())
    now[0] = 31.0
    await run(provider, generate())
    assert tokens_requested(state) == 2


async def test_a_key_the_token_endpoint_does_not_trust_is_a_502(
    server: EmulatorServer, state: VertexState, tmp_path: Path
) -> None:
    untrusted = tmp_path / "untrusted.json"
    untrusted.write_text(
        json.dumps(new_service_account(state, server.url + "/token", trusted=False))
    )
    provider = VertexProvider(settings_for(server.url, untrusted))
    await provider.start()
    try:
        with pytest.raises(UpstreamError) as caught:
            await run(provider, generate())
    finally:
        await provider.aclose()
    assert "refused the gateway's Google credentials" in caught.value.detail
    assert "invalid_grant" in caught.value.detail
    assert state.predict_requests() == []


async def test_application_default_credentials_honour_google_application_credentials(
    server: EmulatorServer, state: VertexState, keyfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(keyfile))
    provider = VertexProvider(settings_for(server.url, None))
    await provider.start()
    try:
        result = await run(provider, generate())
    finally:
        await provider.aclose()
    assert len(result.images) == 1
    assert (
        state.predict_requests()[0].headers["authorization"] == f"Bearer {next(iter(state.tokens))}"
    )


async def test_an_unreadable_key_file_fails_start_naming_the_setting(tmp_path: Path) -> None:
    provider = VertexProvider(settings_for("http://127.0.0.1:9", tmp_path / "missing.json"))
    with pytest.raises(RuntimeError, match="IMAGE_GATEWAY_VERTEX__CREDENTIALS_FILE"):
        await provider.start()


async def test_unreachable_token_endpoint_is_503_retryable(
    state: VertexState, tmp_path: Path
) -> None:
    closed = tmp_path / "closed.json"
    closed.write_text(json.dumps(new_service_account(state, "http://127.0.0.1:9/token")))
    provider = VertexProvider(settings_for("http://127.0.0.1:9", closed))
    await provider.start()
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await run(provider, generate())
    finally:
        await provider.aclose()
    assert caught.value.retryable and caught.value.status == 503


# --------------------------------------------------------------------------- one pass per model


@pytest.mark.parametrize("model", GENERATE_MODELS)
async def test_each_generate_model_passes(
    provider: VertexProvider, state: VertexState, model: str
) -> None:
    ratio = LIMITS_BY_MODEL[model].aspect_ratios[-1]  # type: ignore[index]
    n = 8 if model == "imagegeneration@002" else 4  # the top of each documented range
    result = await run(provider, generate(model=model, n=n, aspect_ratio=ratio))
    assert sent(state) == {
        "instances": [{"prompt": "a lighthouse at dusk"}],
        "parameters": {"sampleCount": n, "aspectRatio": ratio},
    }
    assert state.predict_requests()[0].path.endswith(f"/models/{model}:predict")
    assert result.model == model
    assert [(i.mime_type, i.width, i.height) for i in result.images] == [
        ("image/png", *SIZES_1K[ratio])
    ] * n


@pytest.mark.parametrize(
    ("model", "data", "scale", "size"),
    [
        ("imagegeneration@002", PNG, 2, (64, 48)),
        ("imagegeneration@002", JPEG, 4, (128, 96)),
        ("imagen-4.0-upscale-preview", PNG, 2, (64, 48)),
        ("imagen-4.0-upscale-preview", JPEG, 3, (96, 72)),
        ("imagen-4.0-upscale-preview", PNG, 4, (128, 96)),
    ],
)
async def test_each_upscale_model_and_factor_passes(
    provider: VertexProvider,
    state: VertexState,
    model: str,
    data: bytes,
    scale: int,
    size: tuple[int, int],
) -> None:
    result = await run(provider, upscale(data, model=model, scale=scale))
    [image] = result.images
    assert (image.mime_type, image.width, image.height) == ("image/png", *size)
    assert Image.open(io.BytesIO(image.as_bytes())).size == size
    assert sent(state)["parameters"]["upscaleConfig"] == {"upscaleFactor": f"x{scale}"}


# --------------------------------------------------------------------------- the table's rejections

_LONG = "word " * 500  # 2500 characters: certainly over 64 and 128 tokens (16 chars/token)
G4, U4, F4 = IMAGEN_4
G32, G31, F31 = "imagen-3.0-generate-002", "imagen-3.0-generate-001", "imagen-3.0-fast-generate-001"
I6, I5, I2, UP4 = "imagegeneration@006", "imagegeneration@005", "imagegeneration@002", UPSCALE_4
_11MB = padded_png(11 * 1024 * 1024)


def vertex(**options: Any) -> dict[str, Any]:
    return {"vertex": options}


# fmt: off
REJECTIONS: list[tuple[str, Job, str]] = [
    *[(m, generate(model=m, n=5), "n must be >= 1 and <= 4") for m in GENERATE_MODELS if m != I2],
    *[(m, generate(model=m, aspect_ratio="2:3"), "aspect_ratio must be one of")
      for m in GENERATE_MODELS],
    (I5, generate(model=I5, aspect_ratio="16:9"), "aspect_ratio must be one of ['1:1', '9:16']"),
    (I2, generate(model=I2, aspect_ratio="9:16"), "aspect_ratio must be one of ['1:1']"),
    *[(m, generate(model=m, negative_prompt="fog"), f"negative_prompt is not supported by {m}")
      for m in (*IMAGEN_4, G32)],
    *[(m, generate(model=m, seed=7), "seed needs options.vertex.addWatermark=false")
      for m in WATERMARKED],
    (I5, generate(model=I5, seed=7, options=vertex(addWatermark=True)), "addWatermark=false"),
    (I2, generate(model=I2, prompt=_LONG), "prompt must be <= 64 tokens"),
    (I6, generate(model=I6, prompt=_LONG), "prompt must be <= 128 tokens"),
    (G31, generate(model=G31, prompt="x" * 7681), "prompt must be <= 480 tokens"),
    (I6, generate(model=I6, negative_prompt=_LONG), "negative_prompt must be <= 128 tokens"),
    (F4, generate(model=F4, options=vertex(sampleImageSize="2K")),
     "sampleImageSize is not supported"),
    (G4, generate(model=G4, options=vertex(sampleImageSize="4K")),
     "sampleImageSize must be one of ['1K', '2K']"),
    (G31, generate(model=G31, options=vertex(enhancePrompt=True)),
     "enhancePrompt is not supported"),
    (G32, generate(options=vertex(language="ja")), "language is not supported"),
    (I6, generate(model=I6, options=vertex(sampleImageStyle="sketch")),
     "sampleImageStyle is not supported"),
    (I5, generate(model=I5, options=vertex(personGeneration="allow_all")),
     "personGeneration is not supported"),
    (G4, generate(model=G4, width=1000, height=1000),
     "width and height must be one of ['1024x1024'"),
    (G32, generate(width=1024, height=1024), "takes aspect_ratio, not width/height"),
    (G32, generate(seed=0, options=vertex(addWatermark=False)), "seed must be >= 1"),
    (G32, generate(output={"format": "webp"}), "output.format must be one of ['png', 'jpeg']"),
    (G32, generate(output={"quality": 80}), "applies to jpeg only"),
    (G32, generate(output={"format": "jpeg"},
                   options=vertex(outputOptions={"mimeType": "image/jpeg"})), "not both"),
    (G32, generate(options=vertex(personGeneration="everyone")), "Input should be 'dont_allow'"),
    (G32, generate(options=vertex(sampleCount=2)), "Extra inputs are not permitted"),
    (G32, generate(model="imagen-9.9"), "model must be one of"),
    (I2, upscale(scale=3), "scale must be one of [2, 4] on imagegeneration@002"),
    (I2, upscale(scale=2.5), "scale must be one of [2, 4]"),
    (UP4, upscale(model=UP4, scale=5), "scale must be one of [2, 3, 4]"),
    (I2, upscale(width=100), "width must be one of [64, 128]"),
    (UP4, upscale(model=UP4, height=50), "height must be one of [48, 72, 96]"),
    (I2, upscale(_11MB, scale=2), "input must be <= 10 MB"),
    (UP4, upscale(_11MB, model=UP4), "input must be <= 10 MB"),
    (UP4, upscale(flat_png(2100, 2100), model=UP4), "output must be <= 17000000 px"),
    (UP4, upscale(WEBP, model=UP4), "input format must be one of ['png', 'jpeg']"),
    (I2, upscale(prompt="sharper"), "upscale takes no prompt"),
    (UP4, upscale(model=UP4, creativity=0.3), "see options.vertex.imagePreservationFactor"),
    (I2, upscale(options=vertex(enhanceInputImage=True)),
     "enhanceInputImage is not supported by imagegeneration@002 for upscale"),
    (UP4, upscale(model=UP4, options=vertex(imagePreservationFactor=1.5)),
     "less than or equal to 1"),
]
# fmt: on


@pytest.mark.parametrize(
    ("model", "job", "rule"), REJECTIONS, ids=[f"{c[0]}:{c[2][:40]}" for c in REJECTIONS]
)
async def test_the_table_refuses_before_any_request(
    provider: VertexProvider, state: VertexState, model: str, job: Job, rule: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await run(provider, job)
    assert caught.value.status == 422 and caught.value.code == "validation_failed"
    assert any(rule in (error.limit or "") for error in caught.value.errors), caught.value.errors
    assert state.requests == []  # not even a token request


@pytest.mark.parametrize(
    ("job", "parameters"),
    [
        (generate(model="imagegeneration@005", seed=7), {"sampleCount": 1, "seed": 7}),
        (generate(model="imagegeneration@002", seed=7, n=8), {"sampleCount": 8, "seed": 7}),
        (
            generate(seed=7, options={"vertex": {"addWatermark": False, "enhancePrompt": False}}),
            {"sampleCount": 1, "seed": 7, "addWatermark": False, "enhancePrompt": False},
        ),
    ],
)
async def test_seed_passes_where_the_watermark_is_off(
    provider: VertexProvider, state: VertexState, job: GenerateJob, parameters: dict[str, Any]
) -> None:
    result = await run(provider, job)
    assert sent(state)["parameters"] == parameters
    assert len(result.images) == parameters["sampleCount"]


async def test_the_17_mp_cap_admits_4096_square(provider: VertexProvider) -> None:
    call = provider.prepare(upscale(flat_png(2048, 2048), model="imagen-4.0-upscale-preview"))
    assert isinstance(call, VertexCall) and b'"upscaleFactor":"x2"' in call.body


async def test_seed_with_enhance_prompt_on_is_sent_with_a_warning(
    provider: VertexProvider, state: VertexState
) -> None:
    job = generate(seed=7, options={"vertex": {"addWatermark": False}})
    result = await run(provider, job)
    assert "seed has no effect while enhancePrompt is on" in result.warnings[0]


# --------------------------------------------------------------------------- request mapping


async def test_generate_maps_every_field_and_option(
    provider: VertexProvider, state: VertexState
) -> None:
    options = {
        "addWatermark": False,
        "enhancePrompt": False,
        "personGeneration": "ALLOW_ALL",
        "safetySetting": "Block_Only_High",
        "language": "en",
        "sampleImageSize": "2k",
        "includeRaiReason": True,
        "includeSafetyAttributes": True,
        "labels": {"team": "imaging"},
    }
    job = generate(
        model="imagen-4.0-generate-001",
        n=3,
        aspect_ratio="3:4",
        seed=42,
        output={"format": "jpeg", "quality": 80},
        options={"vertex": options},
    )
    result = await run(provider, job)
    assert sent(state) == {
        "instances": [{"prompt": "a lighthouse at dusk"}],
        "parameters": {
            "sampleCount": 3,
            "aspectRatio": "3:4",
            "seed": 42,
            "addWatermark": False,
            "enhancePrompt": False,
            "personGeneration": "allow_all",
            "safetySetting": "block_only_high",
            "language": "en",
            "sampleImageSize": "2K",
            "includeRaiReason": True,
            "includeSafetyAttributes": True,
            "outputOptions": {"mimeType": "image/jpeg", "compressionQuality": 80},
        },
        "labels": {"team": "imaging"},
    }
    # Three images: the extra "Positive Prompt" safety entry is not an image (§1.6).
    assert [(i.mime_type, i.width, i.height) for i in result.images] == [
        ("image/jpeg", 1792, 2560)
    ] * 3
    assert result.warnings == []


async def test_documented_width_and_height_become_ratio_and_size(
    provider: VertexProvider, state: VertexState
) -> None:
    result = await run(
        provider, generate(model="imagen-4.0-ultra-generate-001", width=2816, height=1536)
    )
    assert sent(state)["parameters"] == {
        "sampleCount": 1,
        "aspectRatio": "16:9",
        "sampleImageSize": "2K",
    }
    assert (result.images[0].width, result.images[0].height) == (2816, 1536)


async def test_negative_prompt_is_sent_where_supported(
    provider: VertexProvider, state: VertexState
) -> None:
    await run(provider, generate(model="imagen-3.0-fast-generate-001", negative_prompt="fog"))
    assert sent(state)["parameters"] == {"sampleCount": 1, "negativePrompt": "fog"}


async def test_legacy_upscale_sends_request_shape_a(
    provider: VertexProvider, state: VertexState
) -> None:
    text = base64.b64encode(JPEG).decode()
    job = UpscaleJob(
        UpscaleParams(
            width=128,
            output={"format": "jpeg", "quality": 90},
            options={"vertex": {"storageUri": None}},
        ),
        InputImage(JPEG, sniff(JPEG), text),
    )
    result = await run(provider, job)
    assert sent(state) == {  # S000, §1.5 A
        "instances": [{"prompt": "", "image": {"bytesBase64Encoded": text}}],
        "parameters": {
            "sampleCount": 1,
            "mode": "upscale",
            "upscaleConfig": {"upscaleFactor": "x4"},
            "outputOptions": {"mimeType": "image/jpeg", "compressionQuality": 90},
        },
    }
    assert (result.images[0].mime_type, result.images[0].width) == ("image/jpeg", 128)


async def test_imagen_4_upscale_sends_request_shape_b(
    provider: VertexProvider, state: VertexState
) -> None:
    options = {"enhanceInputImage": True, "imagePreservationFactor": 0.6, "addWatermark": False}
    await run(
        provider,
        upscale(JPEG, model="imagen-4.0-upscale-preview", height=72, options={"vertex": options}),
    )
    assert sent(state) == {  # V-UPAPI / python-genai, §1.5 B
        "instances": [
            {
                "image": {
                    "bytesBase64Encoded": base64.b64encode(JPEG).decode(),
                    "mimeType": "image/jpeg",
                }
            }
        ],
        "parameters": {
            "sampleCount": 1,
            "mode": "upscale",
            "addWatermark": False,
            "upscaleConfig": {
                "upscaleFactor": "x3",
                "enhanceInputImage": True,
                "imagePreservationFactor": 0.6,
            },
        },
    }


async def test_base64_is_passed_through_both_ways(
    provider: VertexProvider, state: VertexState, server: EmulatorServer
) -> None:
    text = base64.b64encode(PNG).decode()
    result = await run(provider, UpscaleJob(UpscaleParams(), InputImage(PNG, sniff(PNG), text)))
    [request] = state.predict_requests()
    assert f'"bytesBase64Encoded":"{text}"'.encode() in request.body
    [image] = result.images
    assert not image.has_bytes  # kept as the vendor's base64, never decoded for JSON callers
    async with httpx.AsyncClient(
        base_url=server.url, trust_env=False
    ) as http:  # the same call again
        answer = await http.post(
            request.path,
            content=request.body,
            headers={
                "authorization": request.headers["authorization"],
                "content-type": "application/json",
            },
        )
    assert image.as_base64() == answer.json()["predictions"][0]["bytesBase64Encoded"]


# --------------------------------------------------------------------------- response mapping


async def test_fewer_images_than_asked_is_a_warning(
    provider: VertexProvider, state: VertexState
) -> None:
    state.filter_images = 1
    result = await run(provider, generate(n=3, options={"vertex": {"includeRaiReason": True}}))
    assert len(result.images) == 2
    assert result.warnings[0].startswith(
        "vertex filtered 1 of 3 images with its safety filters: 1 generated"
    )


@pytest.mark.parametrize("rai_reason", [False, True])
async def test_every_image_filtered_is_content_filtered(
    provider: VertexProvider, state: VertexState, rai_reason: bool
) -> None:
    state.filter_images = 4
    with pytest.raises(ContentFiltered) as caught:
        await run(provider, generate(n=2, options={"vertex": {"includeRaiReason": rai_reason}}))
    assert (caught.value.status, caught.value.code) == (422, "content_filtered")
    assert ("Unable to show generated images" in caught.value.detail) is rai_reason


async def test_a_blocked_prompt_is_content_filtered(
    provider: VertexProvider, state: VertexState
) -> None:
    with pytest.raises(ContentFiltered) as caught:
        await run(provider, generate(prompt="a forbidden-word scene"))
    assert "Support codes: 61493863" in caught.value.detail
    assert caught.value.reason == "content_filtered"


async def test_enhanced_prompt_is_reported(provider: VertexProvider, state: VertexState) -> None:
    result = await run(provider, generate(model="imagen-4.0-generate-001"))
    assert result.warnings == [
        "vertex rewrote the prompt (enhancePrompt): "
        "a lighthouse at dusk, highly detailed, soft natural light"
    ]


async def test_cloud_storage_output_is_listed_in_warnings(
    provider: VertexProvider, state: VertexState
) -> None:
    job = generate(
        n=2, options={"vertex": {"storageUri": "gs://bucket/out/", "enhancePrompt": False}}
    )
    result = await run(provider, job)
    assert result.images == []
    assert result.warnings == [
        "vertex stored the images in Cloud Storage (storageUri): "
        "gs://bucket/out/sample_0.png, gs://bucket/out/sample_1.png"
    ]
    with pytest.raises(NotAcceptable):
        await run(provider, job, ctx(wants_bytes=True))


# --------------------------------------------------------------------------- the error table

_JSON = {"content-type": "application/json; charset=UTF-8"}


def rpc_fault(code: int, status: str, message: str, **headers: str) -> Fault:
    body = rpc_error(code, status, message)
    return Fault(
        kind="status", status=code, body=body, headers={**_JSON, **headers}, path=":predict"
    )


def body_fault(kind: Any, body: Any = None) -> Fault:
    return Fault(kind=kind, body=body, path=":predict")


QUOTA = (
    "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
    "with base model: imagen-3.0-generate-002. Please submit a quota increase request."
)
NOT_FOUND = (
    "Publisher Model `projects/p/locations/us-central1/publishers/google/models/"
    "imagen-3.0-generate-002` not found."
)
POLICY = (
    "Image generation failed with the following error: The response is blocked, as it may "
    "violate our policies. Error Code: 58061214"
)
GIF_B64 = '{"predictions":[{"bytesBase64Encoded":"R0lGODlhAQABAAAAACw="}]}'
_UE, _VF, _CF = UpstreamError, ValidationFailed, ContentFiltered
# fmt: off
ERROR_TABLE: list[tuple[str, Fault, type[GatewayError], int, str, bool]] = [
    ("rai-400", rpc_fault(400, "INVALID_ARGUMENT", PROMPT_BLOCKED),
     _CF, 422, "content_filtered", False),
    ("rai-400-policy", rpc_fault(400, "INVALID_ARGUMENT", POLICY),
     _CF, 422, "content_filtered", False),
    ("seed-400", rpc_fault(400, "INVALID_ARGUMENT", SEED_WITH_WATERMARK),
     _VF, 422, "client_error", False),
    ("403", rpc_fault(403, "PERMISSION_DENIED", "Permission denied"),
     _UE, 502, "client_error", False),
    ("404", rpc_fault(404, "NOT_FOUND", NOT_FOUND), _VF, 422, "client_error", False),
    ("429", rpc_fault(429, "RESOURCE_EXHAUSTED", QUOTA), RateLimited, 429, "rate_limited", True),
    ("500", rpc_fault(500, "INTERNAL", "Internal error encountered."),
     _UE, 502, "server_error", False),
    ("503", rpc_fault(503, "UNAVAILABLE", "The service is currently unavailable."),
     ProviderUnavailable, 503, "server_error", True),
    ("504", rpc_fault(504, "DEADLINE_EXCEEDED", "Deadline expired."),
     UpstreamTimeout, 504, "timeout", True),
    ("502-html", Fault(kind="status", status=502, body="<html>Bad Gateway</html>", path=":predict"),
     _UE, 502, "server_error", True),
    ("malformed", body_fault("malformed"), _UE, 502, "bad_response", False),
    ("not-an-object", body_fault("malformed", "[1, 2]"), _UE, 502, "bad_response", False),
    ("not-an-image", body_fault("malformed", GIF_B64), _UE, 502, "bad_response", False),
    ("bytes-not-string", body_fault("malformed", '{"predictions":[{"bytesBase64Encoded":7}]}'),
     _UE, 502, "bad_response", False),
    ("empty-object", body_fault("malformed", "{}"), _CF, 422, "content_filtered", False),
    ("truncated", body_fault("truncate", b"{" * 64), _UE, 502, "bad_response", False),
    ("reset", body_fault("reset"), _UE, 502, "bad_response", False),
]
# fmt: on


@pytest.mark.parametrize(
    ("fault", "error", "status", "reason", "retryable"),
    [case[1:] for case in ERROR_TABLE],
    ids=[case[0] for case in ERROR_TABLE],
)
async def test_vendor_failures_map_to_the_error_table(
    provider: VertexProvider,
    state: VertexState,
    fault: Fault,
    error: type[GatewayError],
    status: int,
    reason: str,
    retryable: bool,
) -> None:
    fault.times = 1
    state.add_fault(fault)
    with pytest.raises(GatewayError) as caught:
        await run(provider, generate())
    assert type(caught.value) is error
    assert (caught.value.status, caught.value.reason, caught.value.retryable) == (
        status,
        reason,
        retryable,
    )
    assert caught.value.provider == "vertex"
    [token] = state.tokens
    assert token not in caught.value.detail and "Bearer" not in caught.value.detail
    assert len(state.predict_requests()) == 1  # no retry here: routing decides that


async def test_429_keeps_a_retry_after_header(provider: VertexProvider, state: VertexState) -> None:
    state.add_fault(rpc_fault(429, "RESOURCE_EXHAUSTED", QUOTA, **{"retry-after": "7"}))
    with pytest.raises(RateLimited) as caught:
        await run(provider, generate())
    assert caught.value.retry_after == 7
    assert "Quota exceeded" in caught.value.detail


async def test_404_names_the_model(provider: VertexProvider, state: VertexState) -> None:
    state.add_fault(rpc_fault(404, "NOT_FOUND", NOT_FOUND))
    with pytest.raises(ValidationFailed) as caught:
        await run(provider, generate())
    assert [(e.loc, e.limit) for e in caught.value.errors] == [
        (("model",), "vertex: model imagen-3.0-generate-002 was not found")
    ]


async def test_a_real_403_from_the_emulator_is_not_retried(
    provider: VertexProvider, state: VertexState
) -> None:
    state.project = "another-project"
    with pytest.raises(UpstreamError) as caught:
        await run(provider, generate())
    assert (
        "vertex refused the gateway's Google credentials (HTTP 403 PERMISSION_DENIED)"
        in caught.value.detail
    )
    assert len(state.predict_requests()) == 1


async def test_a_token_echoed_in_a_vendor_message_is_redacted(
    provider: VertexProvider, state: VertexState
) -> None:
    await run(provider, generate())
    [token] = state.tokens
    state.add_fault(rpc_fault(400, "INVALID_ARGUMENT", f"bad request with Bearer {token}"))
    with pytest.raises(ValidationFailed) as caught:
        await run(provider, generate())
    assert token not in caught.value.detail and "[redacted]" in caught.value.detail


async def test_an_unanswered_call_times_out_at_the_deadline(
    provider: VertexProvider, state: VertexState
) -> None:
    state.add_fault(Fault(kind="hang", path=":predict"))
    with pytest.raises(UpstreamTimeout) as caught:
        await run(provider, generate(), ctx(seconds=0.5))
    assert (caught.value.status, caught.value.reason) == (504, "timeout")


async def test_a_refused_connection_is_503_retryable(
    state: VertexState, keyfile: Path, server: EmulatorServer
) -> None:
    provider = VertexProvider(settings_for(server.url, keyfile))
    await provider.start()
    try:
        await run(provider, generate())  # gets a token from the emulator
        provider._client.base_url = "http://127.0.0.1:9"  # type: ignore[union-attr]
        with pytest.raises(ProviderUnavailable) as caught:
            await run(provider, generate())
    finally:
        await provider.aclose()
    assert (caught.value.status, caught.value.reason, caught.value.retryable) == (
        503,
        "connect",
        True,
    )


# --------------------------------------------------------------------------- end to end


def gateway_settings(server: EmulatorServer, keyfile: Path) -> Any:
    return make_settings(
        vertex={
            "project": "p",
            "location": "us-central1",
            "base_url": server.url,
            "credentials_file": str(keyfile),
        },
        routing={"upscale": ["vertex"], "generate": ["vertex"]},
        local={"enabled": False},
    )


async def test_gateway_generate_json(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    async with gateway(gateway_settings(server, keyfile)) as client:
        response = await client.post(
            "/v1/generate",
            json={
                "prompt": "a red kite",
                "n": 2,
                "aspect_ratio": "9:16",
                "model": "imagen-4.0-fast-generate-001",
                "options": {"vertex": {"enhancePrompt": False}},
            },
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["provider"], body["model"]) == ("vertex", "imagen-4.0-fast-generate-001")
    assert [(i["mime_type"], i["width"], i["height"]) for i in body["images"]] == [
        ("image/png", 768, 1408)
    ] * 2
    assert Image.open(io.BytesIO(base64.b64decode(body["images"][0]["data"]))).size == (768, 1408)
    assert sent(state)["parameters"] == {
        "sampleCount": 2,
        "aspectRatio": "9:16",
        "enhancePrompt": False,
    }


async def test_gateway_upscale_raw_png(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    async with gateway(gateway_settings(server, keyfile)) as client:
        response = await client.post(
            "/v1/upscale",
            json={"image": base64.b64encode(PNG).decode(), "scale": 4},
            headers={"accept": "image/png"},
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-image-gateway-provider"] == "vertex"
    assert response.headers["x-image-gateway-model"] == "imagegeneration@002"
    assert Image.open(io.BytesIO(response.content)).size == (128, 96)
    assert sent(state)["parameters"]["outputOptions"] == {"mimeType": "image/png"}


async def test_gateway_generate_raw_png(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    async with gateway(gateway_settings(server, keyfile)) as client:
        response = await client.post(
            "/v1/generate",
            json={"prompt": "a red kite", "aspect_ratio": "3:4", "model": "imagegeneration@006"},
            headers={"accept": "image/png"},
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-image-gateway-model"] == "imagegeneration@006"
    assert Image.open(io.BytesIO(response.content)).size == (896, 1280)
    assert sent(state)["parameters"] == {
        "sampleCount": 1,
        "aspectRatio": "3:4",
        "outputOptions": {"mimeType": "image/png"},
    }


async def test_gateway_upscale_json_passes_the_vendor_base64_through(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    image = base64.b64encode(JPEG).decode()
    async with gateway(gateway_settings(server, keyfile)) as client:
        response = await client.post(
            "/v1/upscale",
            json={"image": image, "model": UPSCALE_4, "scale": 3, "output": {"format": "jpeg"}},
        )
    assert response.status_code == 200, response.text
    [result] = response.json()["images"]
    assert (result["mime_type"], result["width"], result["height"]) == ("image/jpeg", 96, 72)
    assert sent(state)["instances"] == [
        {"image": {"bytesBase64Encoded": image, "mimeType": "image/jpeg"}}
    ]
    assert Image.open(io.BytesIO(base64.b64decode(result["data"]))).size == (96, 72)


async def test_gateway_refuses_a_table_violation_without_calling_vertex(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    async with gateway(gateway_settings(server, keyfile)) as client:
        response = await client.post(
            "/v1/upscale", json={"image": base64.b64encode(PNG).decode(), "scale": 3}
        )
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "validation_failed"
    assert (
        problem["errors"][0]["limit"]
        == "vertex: scale must be one of [2, 4] on imagegeneration@002 (upscaleFactor x2/x4)"
    )
    assert state.requests == []


async def test_gateway_problem_never_carries_the_token(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    body = rpc_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
    state.add_fault(Fault(kind="status", status=401, body=body, path=":predict", times=2))
    async with gateway(gateway_settings(server, keyfile)) as client:
        response = await client.post("/v1/generate", json={"prompt": "a kite"})
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_error"
    assert "Google credentials" in response.json()["detail"]
    for token in state.tokens:
        assert token not in response.text
    assert len(state.tokens) == 2  # the first token and the one forced refresh


async def test_gateway_lists_the_vertex_table(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    async with gateway(gateway_settings(server, keyfile)) as client:
        response = await client.get("/v1/providers")
    assert response.status_code == 200
    [vertex] = [p for p in response.json() if p["id"] == "vertex"]
    assert {m["model"] for m in vertex["models"]} == set(LIMITS_BY_MODEL)
    assert vertex["default_models"] == {
        "generate": "imagen-3.0-generate-002",
        "upscale": "imagegeneration@002",
    }
    assert "addWatermark" in vertex["options_schema"]["properties"]
