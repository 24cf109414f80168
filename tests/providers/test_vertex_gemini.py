"""Vertex generate on the Gemini image models (vendors-2026 §2) against the emulator: exact
pixel sizes per ratio and tier, n as n calls, the options on the wire, filtered answers,
token usage, the lifecycle (discontinued ids refused before any call, deprecated models
with headers), configured extra models and aliases, and the gateway end to end."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.domain import Usage
from app.errors import ContentFiltered, ModelDiscontinued, ValidationFailed
from app.providers.vertex import VertexProvider
from app.providers.vertex_limits import DISCONTINUED, GEMINI
from tests.conftest import gateway
from tests.emulators.common import EmulatorServer
from tests.emulators.vertex import VertexState
from tests.emulators.vertex_gemini import DISCONTINUED as EMULATED_DISCONTINUED
from tests.emulators.vertex_gemini import GEMINI as EMULATED
from tests.providers import vertex_support
from tests.providers.vertex_support import (
    G3P,
    G25,
    G31,
    UP,
    bodies,
    gateway_settings,
    generate,
    model_calls,
    run,
    sent,
)

pytestmark = pytest.mark.anyio
server, keyfile, state, provider = (
    vertex_support.server,
    vertex_support.keyfile,
    vertex_support.state,
    vertex_support.provider,
)
ROWS = {row.model: row for row in GEMINI}


def documented(model: str) -> list[tuple[str, str, tuple[int, int]]]:
    """Every (tier, ratio, size) the table documents for ``model``; 4K only for 1:1 and
    16:9 (big images take time to encode; 4K is exactly 4x 1K for every ratio)."""
    row = ROWS[model]
    return [
        (tier, ratio, size)
        for tier, table in row.output_sizes.items()
        for ratio, size in table.items()
        if tier != "4K" or ratio in ("1:1", "16:9")
    ]


@pytest.mark.parametrize("model", [G31, G3P, G25])
async def test_width_and_height_give_the_exact_documented_pixels(
    provider: VertexProvider, state: VertexState, model: str
) -> None:
    cases = documented(model)
    results = await asyncio.gather(
        *(run(provider, generate(model=model, width=w, height=h)) for _, _, (w, h) in cases)
    )
    for (tier, ratio, size), result in zip(cases, results, strict=True):
        [image] = result.images
        assert (image.width, image.height) == size, (tier, ratio)
    sent_configs = sorted(
        (c.get("imageSize", ""), c["aspectRatio"])
        for c in (b["generationConfig"]["imageConfig"] for b in bodies(state))
    )
    assert sent_configs == sorted((tier, ratio) for tier, ratio, _ in cases)


@pytest.mark.parametrize(
    ("model", "ratio", "size", "pixels"),
    [(G31, "16:9", "4K", (5504, 3072)), (G31, "1:4", "2K", (1024, 4096)),
     (G3P, "21:9", "2K", (3168, 1344)), (G25, "16:9", None, (1344, 768))],
)  # fmt: skip
async def test_aspect_ratio_and_image_size_reach_the_wire(
    provider: VertexProvider, state: VertexState, model: str, ratio: str, size: str | None,
    pixels: tuple[int, int],
) -> None:  # fmt: skip
    options = {"vertex": {"imageSize": size}} if size else None
    result = await run(provider, generate(model=model, aspect_ratio=ratio, options=options))
    assert (result.images[0].width, result.images[0].height) == pixels


async def test_n_3_is_three_calls_with_three_seeds_and_three_images(
    provider: VertexProvider, state: VertexState
) -> None:
    result = await run(provider, generate(n=3, seed=41))
    assert len(result.images) == 3
    sent_bodies = bodies(state)
    assert len(sent_bodies) == 3
    assert sorted(b["generationConfig"]["seed"] for b in sent_bodies) == [41, 42, 43]
    assert all("candidateCount" not in b["generationConfig"] for b in sent_bodies)
    assert "vertex: the 3 images are 3 calls with seeds 41..43" in result.warnings
    assert result.usage == Usage(
        calls=3, prompt_tokens=3 * 4, output_tokens=3 * 1128, image_output_tokens=3 * 1120,
        thoughts_tokens=3 * 120, total_tokens=3 * (4 + 1120 + 128),
    )  # fmt: skip


async def test_thought_images_are_skipped(provider: VertexProvider, state: VertexState) -> None:
    result = await run(provider, generate(model=G3P))
    [image] = result.images  # the emulator also sent a 64x64 thought image first
    assert (image.width, image.height) == (1024, 1024)


@pytest.mark.parametrize("model", [G31, G3P, G25])
async def test_person_generation_and_output_format_reach_the_wire(
    provider: VertexProvider, state: VertexState, model: str
) -> None:
    options = {"vertex": {"personGeneration": "ALLOW_ADULT"}}
    output = {"format": "jpeg", "quality": 80}
    result = await run(provider, generate(model=model, options=options, output=output))
    assert result.images[0].mime_type == "image/jpeg"
    assert sent(state)["generationConfig"] == {
        "responseModalities": ["IMAGE"],
        "imageConfig": {
            "personGeneration": "ALLOW_ADULT",
            "imageOutputOptions": {"mimeType": "image/jpeg", "compressionQuality": 80},
        },
    }


async def test_thinking_level_reaches_the_wire_where_the_model_has_one(
    provider: VertexProvider, state: VertexState
) -> None:
    await run(provider, generate(options={"vertex": {"thinkingLevel": "MINIMAL"}}))
    assert sent(state)["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "MINIMAL"}


async def test_safety_settings_labels_and_folded_negative_prompt_reach_the_wire(
    provider: VertexProvider, state: VertexState
) -> None:
    setting = {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "threshold": "BLOCK_ONLY_HIGH"}
    options = {"safetySettings": [setting], "labels": {"team": "ads"}, "foldNegativePrompt": True}
    result = await run(
        provider, generate(negative_prompt="text, logos", options={"vertex": options})
    )
    body = sent(state)
    assert body["safetySettings"] == [setting] and body["labels"] == {"team": "ads"}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "a lighthouse at dusk\n\nAvoid: text, logos"}]}
    ]
    assert "vertex: negative_prompt was folded into the prompt as 'Avoid: ...'" in result.warnings


# fmt: off
REFUSALS: list[tuple[dict[str, Any], tuple[Any, ...], str]] = [
    ({"negative_prompt": "blur"}, ("negative_prompt",), "foldNegativePrompt=true"),
    ({"width": 1000, "height": 1000}, ("width",), "width x height must be one of 1024x1024"),
    ({"width": 1024}, ("width",), "width x height must be one of"),
    ({"model": G25, "width": 1376, "height": 768}, ("width",), "1344x768"),
    ({"model": G25, "aspect_ratio": "1:4"}, ("aspect_ratio",), "aspect_ratio must be one of"),
    ({"model": G3P, "aspect_ratio": "9:21"}, ("aspect_ratio",), "aspect_ratio must be one of"),
    ({"model": G25, "options": {"vertex": {"imageSize": "1K"}}},
     ("options", "vertex", "imageSize"), "not supported by gemini-2.5-flash-image"),
    ({"model": G3P, "options": {"vertex": {"imageSize": "512"}}},
     ("options", "vertex", "imageSize"), "must be one of ['1K', '2K', '4K']"),
    ({"model": G3P, "options": {"vertex": {"thinkingLevel": "HIGH"}}},
     ("options", "vertex", "thinkingLevel"), "not supported by gemini-3-pro-image"),
    ({"model": G25, "options": {"vertex": {"thinkingLevel": "HIGH"}}},
     ("options", "vertex", "thinkingLevel"), "not supported by gemini-2.5-flash-image"),
    ({"options": {"vertex": {"thinkingLevel": "MEDIUM"}}},
     ("options", "vertex", "thinkingLevel"), "must be one of ['MINIMAL', 'HIGH']"),
    ({"width": 2752, "height": 1536, "options": {"vertex": {"imageSize": "1K"}}},
     ("options", "vertex", "imageSize"), "2752x1536 is imageSize 2K, not 1K"),
    ({"seed": 2**31}, ("seed",), "seed must be >= -2147483648 and <= 2147483647"),
    ({"output": {"format": "webp"}}, ("output", "format"), "must be one of ['png', 'jpeg']"),
    ({"output": {"quality": 90}}, ("output", "quality"), "jpeg only"),
    ({"options": {"vertex": {"addWatermark": False}}}, ("options", "vertex", "addWatermark"),
     "not supported by gemini-3.1-flash-image for generate"),
]
# fmt: on


#: (model, job, limit) of each refusal, for suites that replay them (tests/callers dry run).
REJECTIONS = [(p.get("model", G31), generate(**p), limit) for p, _, limit in REFUSALS]


@pytest.mark.parametrize(("params", "loc", "limit"), REFUSALS)
async def test_the_table_refuses_before_any_request(
    provider: VertexProvider, state: VertexState, params: dict[str, Any], loc: tuple[Any, ...],
    limit: str,
) -> None:  # fmt: skip
    with pytest.raises(ValidationFailed) as caught:
        await run(provider, generate(**params))
    assert any(e.loc == loc and limit in (e.limit or "") for e in caught.value.errors), [
        e.limit for e in caught.value.errors
    ]
    assert state.requests == []


async def test_options_enums_are_checked_by_the_options_model(
    provider: VertexProvider, state: VertexState
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await run(provider, generate(options={"vertex": {"personGeneration": "DONT_ALLOW"}}))
    assert caught.value.errors[0].loc == ("options", "vertex", "personGeneration")
    assert state.requests == []


# --------------------------------------------------------------------------- filtered answers


async def test_a_blocked_prompt_is_content_filtered(
    provider: VertexProvider, state: VertexState
) -> None:
    with pytest.raises(ContentFiltered) as caught:
        await run(provider, generate(prompt="a forbidden-word", n=2))
    assert caught.value.status == 422
    assert "prompt blocked (PROHIBITED_CONTENT): The prompt was blocked." in caught.value.detail
    assert len(model_calls(state)) == 2


async def test_one_of_three_filtered_gives_two_images_and_a_warning(
    provider: VertexProvider, state: VertexState
) -> None:
    state.gemini.no_image_next = ["IMAGE_SAFETY"]
    result = await run(provider, generate(n=3))
    assert len(result.images) == 2
    assert "vertex filtered 1 of 3 images: no image (IMAGE_SAFETY)" in result.warnings


async def test_every_call_without_an_image_is_content_filtered(
    provider: VertexProvider, state: VertexState
) -> None:
    state.gemini.no_image_next = ["NO_IMAGE"]
    with pytest.raises(ContentFiltered) as caught:
        await run(provider, generate())
    assert "no image (NO_IMAGE)" in caught.value.detail


# --------------------------------------------------------------------------- lifecycle


def test_every_discontinued_id_of_the_reference_is_in_the_table() -> None:
    assert {row.model for row in DISCONTINUED} >= EMULATED_DISCONTINUED
    assert set(EMULATED) == set(ROWS)


@pytest.mark.parametrize("row", DISCONTINUED, ids=lambda r: f"{r.model}-{r.operations[0]}")
async def test_every_discontinued_id_is_refused_before_the_call_naming_its_replacement(
    server: EmulatorServer, state: VertexState, keyfile: Path, row: Any
) -> None:
    replacement = row.lifecycle.replacement
    async with gateway(gateway_settings(server, keyfile)) as client:
        if row.operations[0] == "upscale":
            image = base64.b64encode(vertex_support.PNG).decode()
            response = await client.post("/v1/upscale", json={"image": image, "model": row.model})
        else:
            response = await client.post("/v1/generate", json={"prompt": "x", "model": row.model})
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "model_discontinued"
    assert f"use {replacement}" in problem["detail"] and replacement in (ROWS.keys() | {UP})
    assert problem["errors"][0]["loc"] == ["model"]
    assert state.requests == []  # not even a token request


async def test_a_deprecated_extra_model_is_served_with_a_warning_and_headers(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    state.gemini_models["gemini-nano-banana-2.1"] = EMULATED[G31]
    extra = {
        "model": "gemini-nano-banana-2.1", "like": G31, "status": "deprecated",
        "deprecated": "2026-11-01", "sunset": "2027-03-01", "replacement": G31,
        "image_sizes": ["1K", "2K", "4K"], "thinking_levels": ["MINIMAL", "MEDIUM", "HIGH"],
    }  # fmt: skip
    settings = gateway_settings(server, keyfile, extra_models=[extra])
    async with gateway(settings) as client:
        ok = await client.post(
            "/v1/generate",
            json={"prompt": "x", "model": "gemini-nano-banana-2.1", "width": 2752, "height": 1536,
                  "options": {"vertex": {"thinkingLevel": "MEDIUM"}}},
        )  # fmt: skip
        refused = await client.post(
            "/v1/generate",
            json={"prompt": "x", "model": "gemini-nano-banana-2.1",
                  "options": {"vertex": {"imageSize": "512"}}},
        )  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert ok.headers["deprecation"] == "@1793491200"  # RFC 9745: 2026-11-01T00:00:00Z
    assert ok.headers["sunset"] == "Mon, 01 Mar 2027 00:00:00 GMT"  # RFC 8594
    assert (
        "vertex: model gemini-nano-banana-2.1 is deprecated and stops answering on 2027-03-01; "
        f"move to {G31}" in ok.json()["warnings"]
    )
    assert ok.json()["images"][0]["width"] == 2752
    assert refused.status_code == 422 and "imageSize" in refused.text


async def test_an_operator_alias_maps_an_old_id_with_a_warning_on_each_answer(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    aliases = {"imagen-4.0-generate-001": G31}
    async with gateway(gateway_settings(server, keyfile, model_aliases=aliases)) as client:
        answers = [
            await client.post(
                "/v1/generate", json={"prompt": "x", "model": "imagen-4.0-generate-001"}
            )
            for _ in range(2)
        ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == G31
        assert answer.json()["warnings"][0] == (
            f"vertex: model imagen-4.0-generate-001 is served by {G31} (operator alias, "
            "IMAGE_GATEWAY_VERTEX__MODEL_ALIASES)"
        )
    assert all(G31 in r.path for r in model_calls(state))


def test_an_extra_model_like_an_unknown_model_fails_at_start() -> None:
    settings = vertex_support.settings_for(
        "http://127.0.0.1:9", None, extra_models=[{"model": "x", "like": "imagen-4.0-generate-001"}]
    )
    with pytest.raises(ValueError, match="EXTRA_MODELS: x is like unknown model"):
        VertexProvider(settings)


def test_a_discontinued_default_model_is_refused_too() -> None:
    settings = vertex_support.settings_for(
        "http://127.0.0.1:9", None, generate_model="imagen-3.0-generate-002"
    )
    with pytest.raises(ModelDiscontinued) as caught:
        VertexProvider(settings).prepare_checked(generate())
    assert caught.value.replacement == G25


# --------------------------------------------------------------------------- end to end


async def test_gateway_generate_json_and_raw_png(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    async with gateway(gateway_settings(server, keyfile)) as client:
        as_json = await client.post(
            "/v1/generate", json={"prompt": "a red kite", "n": 2, "aspect_ratio": "9:16"}
        )
        raw = await client.post(
            "/v1/generate",
            json={"prompt": "a red kite", "aspect_ratio": "3:4", "model": G25},
            headers={"accept": "image/png"},
        )
    assert as_json.status_code == 200, as_json.text
    body = as_json.json()
    assert (body["provider"], body["model"]) == ("vertex", G31)
    assert [(i["mime_type"], i["width"], i["height"]) for i in body["images"]] == [
        ("image/png", 768, 1376)
    ] * 2
    assert Image.open(io.BytesIO(base64.b64decode(body["images"][0]["data"]))).size == (768, 1376)
    assert as_json.headers["x-image-gateway-attempts"] == "vertex:ok"
    assert raw.status_code == 200, raw.text
    assert raw.headers["x-image-gateway-model"] == G25
    assert Image.open(io.BytesIO(raw.content)).size == (864, 1184)


async def test_gateway_blocked_prompt_is_422_content_filtered(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    async with gateway(gateway_settings(server, keyfile)) as client:
        response = await client.post("/v1/generate", json={"prompt": "a forbidden-word"})
    assert (response.status_code, response.json()["code"]) == (422, "content_filtered")


async def test_gateway_one_of_three_filtered(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    state.gemini.no_image_next = ["NO_IMAGE"]
    async with gateway(gateway_settings(server, keyfile)) as client:
        response = await client.post("/v1/generate", json={"prompt": "kites", "n": 3})
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 2
    assert "vertex filtered 1 of 3 images: no image (NO_IMAGE)" in response.json()["warnings"]


async def test_n_calls_hold_n_bulkhead_slots(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    settings = gateway_settings(server, keyfile).model_copy(
        update={"bulkhead": gateway_settings(server, keyfile).bulkhead.model_copy(
            update={"max_inflight": 2, "max_wait_s": 0})}
    )  # fmt: skip
    async with gateway(settings) as client:
        too_many = await client.post("/v1/generate", json={"prompt": "kites", "n": 3})
        fits = await client.post("/v1/generate", json={"prompt": "kites", "n": 2})
    assert too_many.status_code == 503 and too_many.json()["code"] == "provider_unavailable"
    assert fits.status_code == 200
    assert len(model_calls(state)) == 2
