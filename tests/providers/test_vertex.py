"""The vertex provider over real HTTP against the Vertex emulator: auth (google-auth for
real: a generated service-account key whose ``token_uri`` is the emulator's ``/token``),
hosts and locations, the upscale preview, the error table, and the gateway end to end.
Gemini generate rules are in ``test_vertex_gemini.py``."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.errors import (
    ContentFiltered,
    GatewayError,
    ModelDiscontinued,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    ValidationFailed,
)
from app.providers.vertex import VertexProvider
from tests.conftest import gateway, png_bytes
from tests.emulators.common import EmulatorServer, Fault
from tests.emulators.vertex import (
    GLOBAL_PREFIX,
    JWT_BEARER,
    VertexState,
    new_service_account,
    rpc_error,
)
from tests.emulators.vertex_gemini import RESOURCE_EXHAUSTED
from tests.providers import vertex_support
from tests.providers.vertex_support import (
    G25,
    G31,
    JPEG,
    PNG,
    UP,
    ctx,
    gateway_settings,
    generate,
    model_calls,
    run,
    sent,
    settings_for,
    tokens_requested,
    upscale,
)

pytestmark = pytest.mark.anyio
server, keyfile, state, provider = (
    vertex_support.server,
    vertex_support.keyfile,
    vertex_support.state,
    vertex_support.provider,
)


def padded_png(total_bytes: int) -> bytes:
    """A valid PNG grown to ``total_bytes`` with a private ancillary chunk (for size limits)."""
    payload = b"\0" * (total_bytes - len(PNG) - 12)
    chunk = struct.pack(">I", len(payload)) + b"prVt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"prVt" + payload))
    return PNG[:-12] + chunk + PNG[-12:]


# --------------------------------------------------------------------------- auth


async def test_google_auth_obtains_a_real_token_and_every_request_carries_it(
    provider: VertexProvider, state: VertexState
) -> None:
    await run(provider, generate(n=2))
    await run(provider, upscale(scale=2))
    await run(provider, generate(model=G25))
    [grant] = state.requests_to("/token")
    assert grant.headers["content-type"] == "application/x-www-form-urlencoded"
    assert f"grant_type={JWT_BEARER}".replace(":", "%3A") in grant.body.decode()
    [token] = state.tokens  # issued once, after the emulator verified the signed assertion
    calls = model_calls(state)
    assert [r.path for r in calls] == [
        f"{GLOBAL_PREFIX}/v1/projects/p/locations/global/publishers/google/models/{G31}"
        ":generateContent"
    ] * 2 + [
        f"/v1/projects/p/locations/us-central1/publishers/google/models/{UP}:predict",
        f"/v1/projects/p/locations/us-central1/publishers/google/models/{G25}:generateContent",
    ]
    for request in calls:
        assert request.headers["authorization"] == f"Bearer {token}"
        assert request.headers["content-type"] == "application/json; charset=utf-8"


async def test_concurrent_first_calls_share_one_token_refresh(
    provider: VertexProvider, state: VertexState
) -> None:
    results = await asyncio.gather(*(run(provider, generate()) for _ in range(5)))
    assert all(len(result.images) == 1 for result in results)
    assert tokens_requested(state) == 1
    assert len({r.headers["authorization"] for r in model_calls(state)}) == 1


async def test_revoked_token_gets_one_refresh_and_one_retry(
    provider: VertexProvider, state: VertexState
) -> None:
    await run(provider, generate())
    state.revoke_tokens()
    result = await run(provider, generate())
    assert len(result.images) == 1
    first, refused, retried = (r.headers["authorization"] for r in model_calls(state))
    assert first == refused != retried
    assert tokens_requested(state) == 2


async def test_a_second_401_is_a_502_saying_the_credentials_were_refused(
    provider: VertexProvider, state: VertexState
) -> None:
    body = rpc_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
    state.add_fault(Fault(kind="status", status=401, body=body, path=":generateContent", times=2))
    with pytest.raises(UpstreamError) as caught:
        await run(provider, generate())
    assert caught.value.status == 502
    assert "gateway's Google credentials" in caught.value.detail
    assert (len(model_calls(state)), tokens_requested(state)) == (2, 2)


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
    auth = [r.headers["authorization"] for r in model_calls(state)]
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
    assert model_calls(state) == []


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
    assert model_calls(state)[0].headers["authorization"] == f"Bearer {next(iter(state.tokens))}"


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


# --------------------------------------------------------------------------- upscale


@pytest.mark.parametrize("factor", [2, 3, 4])
async def test_upscale_sends_the_preview_shape_with_mode(
    provider: VertexProvider, state: VertexState, factor: int
) -> None:
    result = await run(
        provider, upscale(JPEG, scale=factor, options={"vertex": {"addWatermark": False}})
    )
    [image] = result.images
    assert (image.width, image.height) == (32 * factor, 24 * factor)
    body = sent(state)
    assert body["instances"] == [
        {"image": {"bytesBase64Encoded": base64.b64encode(JPEG).decode(), "mimeType": "image/jpeg"}}
    ]
    assert body["parameters"] == {
        "sampleCount": 1,
        "mode": "upscale",
        "upscaleConfig": {"upscaleFactor": f"x{factor}"},
        "addWatermark": False,
    }


async def test_upscale_width_maps_to_the_factor_and_output_to_output_options(
    provider: VertexProvider, state: VertexState
) -> None:
    result = await run(provider, upscale(width=96, output={"format": "jpeg", "quality": 70}))
    assert (result.images[0].mime_type, result.images[0].width) == ("image/jpeg", 96)
    assert sent(state)["parameters"]["outputOptions"] == {
        "mimeType": "image/jpeg",
        "compressionQuality": 70,
    }


# fmt: off
UPSCALE_REFUSALS: list[tuple[Any, dict[str, Any], tuple[Any, ...], str]] = [
    (PNG, {"scale": 5}, ("scale",), "scale must be one of [2, 3, 4]"),
    (PNG, {"scale": 2.5}, ("scale",), "scale must be one of [2, 3, 4]"),
    (PNG, {"width": 50}, ("width",), "width must be one of [64, 96, 128]"),
    (PNG, {"prompt": "sharper"}, ("prompt",), "upscale takes no prompt"),
    (PNG, {"creativity": 0.3}, ("creativity",), "upscale takes no creativity"),
    (png_bytes(32, 24, fmt="WEBP"), {}, ("image",), "input format must be one of"),
    (png_bytes(1031, 1031), {"scale": 4}, ("scale",), "output must be <= 17000000 px"),
    (padded_png(7_864_321), {}, ("image",), "input must be <= 10 MB as base64"),
    (PNG, {"options": {"vertex": {"thinkingLevel": "HIGH"}}},
     ("options", "vertex", "thinkingLevel"), "not supported by imagen-4.0-upscale-preview"),
    (PNG, {"output": {"format": "png", "quality": 50}}, ("output", "quality"), "jpeg only"),
    (PNG, {"output": {"format": "webp"}}, ("output", "format"), "must be one of"),
]
# fmt: on


@pytest.mark.parametrize(("data", "params", "loc", "limit"), UPSCALE_REFUSALS)
async def test_upscale_refusals_happen_before_any_request(
    provider: VertexProvider, state: VertexState, data: bytes, params: dict[str, Any],
    loc: tuple[Any, ...], limit: str,
) -> None:  # fmt: skip
    with pytest.raises(ValidationFailed) as caught:
        await run(provider, upscale(data, **params))
    assert any(e.loc == loc and limit in (e.limit or "") for e in caught.value.errors), caught.value
    assert state.requests == []


async def test_17_mp_and_10_mb_edges_are_admitted(
    provider: VertexProvider, state: VertexState
) -> None:
    await run(provider, upscale(png_bytes(1030, 1031), scale=4))  # 16,990,880 px
    await run(provider, upscale(padded_png(7_864_320)))  # exactly 10 MiB of base64
    assert len(model_calls(state)) == 2


# --------------------------------------------------------------------------- errors

_JSON = {"content-type": "application/json; charset=UTF-8"}


def rpc_fault(code: int, status: str, message: str, **headers: str) -> Fault:
    body = rpc_error(code, status, message)
    return Fault(
        kind="status", status=code, body=body, headers={**_JSON, **headers}, path=":generate"
    )


def body_fault(kind: Any, body: Any = None) -> Fault:
    return Fault(kind=kind, body=body, path=":generate")


NOT_FOUND = (
    "Publisher Model `projects/p/locations/global/publishers/google/models/"
    "gemini-3.1-flash-image` not found."
)
POLICY = (
    "Image generation failed with the following error: The response is blocked, as it may "
    "violate our policies. Error Code: 58061214"
)
GIF = (
    '{"candidates":[{"content":{"parts":[{"inlineData":'
    '{"mimeType":"image/gif","data":"R0lGODlhAQABAAAAACw="}}]}}]}'
)
PNG_GIF = GIF.replace("image/gif", "image/png")
_UE, _VF, _CF = UpstreamError, ValidationFailed, ContentFiltered
# fmt: off
ERROR_TABLE: list[tuple[str, Fault, type[GatewayError], int, str, bool]] = [
    ("rai-400", rpc_fault(400, "INVALID_ARGUMENT", POLICY), _CF, 422, "content_filtered", False),
    ("400", rpc_fault(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
     _VF, 422, "client_error", False),
    ("403", rpc_fault(403, "PERMISSION_DENIED", "Permission denied"),
     _UE, 502, "client_error", False),
    ("404", rpc_fault(404, "NOT_FOUND", NOT_FOUND), ModelDiscontinued, 422, "client_error", False),
    ("429", rpc_fault(429, "RESOURCE_EXHAUSTED", RESOURCE_EXHAUSTED),
     RateLimited, 429, "rate_limited", True),
    ("500", rpc_fault(500, "INTERNAL", "Internal error encountered."),
     _UE, 502, "server_error", False),
    ("503", rpc_fault(503, "UNAVAILABLE", "The service is currently unavailable."),
     ProviderUnavailable, 503, "server_error", True),
    ("504", rpc_fault(504, "DEADLINE_EXCEEDED", "Deadline expired."),
     UpstreamTimeout, 504, "timeout", True),
    ("502-html", Fault(kind="status", status=502, body="<html>Bad Gateway</html>",
                       path=":generate"), _UE, 502, "server_error", True),
    ("malformed", body_fault("malformed"), _UE, 502, "bad_response", False),
    ("not-an-object", body_fault("malformed", "[1, 2]"), _UE, 502, "bad_response", False),
    ("not-an-image", body_fault("malformed", PNG_GIF), _UE, 502, "bad_response", False),
    ("gif", body_fault("malformed", GIF), _UE, 502, "bad_response", False),
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
    provider: VertexProvider, state: VertexState, fault: Fault, error: type[GatewayError],
    status: int, reason: str, retryable: bool,
) -> None:  # fmt: skip
    fault.times = 1
    state.add_fault(fault)
    with pytest.raises(GatewayError) as caught:
        await run(provider, generate())
    assert type(caught.value) is error, caught.value.detail
    assert (caught.value.status, caught.value.reason, caught.value.retryable) == (
        status,
        reason,
        retryable,
    )
    assert caught.value.provider == "vertex"
    [token] = state.tokens
    assert token not in caught.value.detail and "Bearer" not in caught.value.detail
    assert len(model_calls(state)) == 1  # no retry here: routing decides that


async def test_429_keeps_a_retry_after_header(provider: VertexProvider, state: VertexState) -> None:
    state.add_fault(
        rpc_fault(429, "RESOURCE_EXHAUSTED", RESOURCE_EXHAUSTED, **{"retry-after": "7"})
    )
    with pytest.raises(RateLimited) as caught:
        await run(provider, generate())
    assert caught.value.retry_after == 7
    assert "Resource exhausted" in caught.value.detail


async def test_a_404_names_the_model_and_a_replacement(
    provider: VertexProvider, state: VertexState
) -> None:
    state.add_fault(rpc_fault(404, "NOT_FOUND", NOT_FOUND))
    with pytest.raises(ModelDiscontinued) as caught:
        await run(provider, generate())
    assert caught.value.code == "model_discontinued"
    assert [(e.loc, e.limit) for e in caught.value.errors] == [
        (("model",), f"vertex: model {G31} was not found (retired, or not served here); use {G31}")
    ]


async def test_a_real_403_from_the_emulator_is_not_retried(
    provider: VertexProvider, state: VertexState
) -> None:
    state.project = "another-project"
    with pytest.raises(UpstreamError) as caught:
        await run(provider, generate())
    assert "Google credentials (HTTP 403 PERMISSION_DENIED)" in caught.value.detail
    assert len(model_calls(state)) == 1


async def test_a_token_echoed_in_a_vendor_message_is_redacted(
    provider: VertexProvider, state: VertexState
) -> None:
    await run(provider, generate())
    [token] = state.tokens
    state.add_fault(rpc_fault(400, "INVALID_ARGUMENT", f"bad request with Bearer {token}"))
    with pytest.raises(ValidationFailed) as caught:
        await run(provider, generate())
    assert token not in caught.value.detail and "***" in caught.value.detail


async def test_an_unanswered_call_times_out_at_the_deadline(
    provider: VertexProvider, state: VertexState
) -> None:
    state.add_fault(Fault(kind="hang", path=":generate"))
    with pytest.raises(UpstreamTimeout) as caught:
        await run(provider, generate(), ctx(seconds=0.5))
    assert (caught.value.status, caught.value.reason) == (504, "timeout")


async def test_a_refused_connection_is_503_retryable(
    state: VertexState, keyfile: Path, server: EmulatorServer
) -> None:
    provider = VertexProvider(
        settings_for(server.url, keyfile, global_base_url="http://127.0.0.1:9")
    )
    await provider.start()
    try:
        await run(provider, generate(model=G25))  # regional: gets a token from the emulator
        with pytest.raises(ProviderUnavailable) as caught:
            await run(provider, generate())  # global host: nothing listens there
    finally:
        await provider.aclose()
    assert (caught.value.status, caught.value.reason, caught.value.retryable) == (
        503,
        "connect",
        True,
    )


# --------------------------------------------------------------------------- end to end


async def test_gateway_upscale_json_and_multipart(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    image = base64.b64encode(JPEG).decode()
    async with gateway(gateway_settings(server, keyfile)) as client:
        as_json = await client.post(
            "/v1/upscale", json={"image": image, "scale": 3, "output": {"format": "jpeg"}}
        )
        multipart = await client.post(
            "/v1/upscale",
            files={"image": ("in.png", PNG, "image/png")},
            data={"scale": "4"},
            headers={"accept": "image/png"},
        )
    assert as_json.status_code == 200, as_json.text
    [result] = as_json.json()["images"]
    assert (result["mime_type"], result["width"], result["height"]) == ("image/jpeg", 96, 72)
    assert as_json.json()["model"] == UP
    assert multipart.status_code == 200, multipart.text
    assert multipart.headers["x-image-gateway-model"] == UP
    assert Image.open(io.BytesIO(multipart.content)).size == (128, 96)
    first, second = (r.json() for r in model_calls(state))
    assert first["instances"][0]["image"]["bytesBase64Encoded"] == image
    assert second["parameters"]["upscaleConfig"] == {"upscaleFactor": "x4"}


async def test_gateway_refuses_17_mp_and_10_mb_without_calling_vertex(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    async with gateway(gateway_settings(server, keyfile)) as client:
        big = await client.post(
            "/v1/upscale",
            files={"image": ("in.png", png_bytes(1031, 1031), "image/png")},
            data={"scale": "4"},
        )
        heavy = await client.post(
            "/v1/upscale", json={"image": base64.b64encode(padded_png(7_864_321)).decode()}
        )
    assert (big.status_code, big.json()["code"]) == (422, "validation_failed")
    assert "17000000 px" in big.json()["errors"][0]["limit"]
    assert (heavy.status_code, heavy.json()["code"]) == (422, "validation_failed")
    assert "10 MB" in heavy.json()["errors"][0]["limit"]
    assert state.requests == []


async def test_gateway_problem_never_carries_the_token(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    body = rpc_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
    state.add_fault(Fault(kind="status", status=401, body=body, path=":generate", times=2))
    async with gateway(gateway_settings(server, keyfile)) as client:
        response = await client.post("/v1/generate", json={"prompt": "a kite"})
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_error"
    for token in state.tokens:
        assert token not in response.text
    assert len(state.tokens) == 2  # the first token and the one forced refresh


async def test_gateway_lists_models_limits_and_lifecycle(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> None:
    async with gateway(gateway_settings(server, keyfile)) as client:
        response = await client.get("/v1/providers")
    assert response.status_code == 200
    [vertex] = [p for p in response.json() if p["id"] == "vertex"]
    assert vertex["default_models"] == {"generate": G31, "upscale": UP}
    rows = {(m["model"], tuple(m["operations"])): m for m in vertex["models"]}
    flash = rows[(G31, ("generate",))]
    assert flash["locations"] == ["global"] and flash["image_sizes"] == ["512", "1K", "2K", "4K"]
    assert flash["lifecycle"]["status"] == "ga"
    assert rows[(UP, ("upscale",))]["lifecycle"]["status"] == "preview"
    gone = rows[("imagen-4.0-generate-001", ("generate",))]["lifecycle"]
    assert gone == {
        "status": "discontinued", "released": None, "deprecated": None,
        "sunset": "2026-06-30", "replacement": G31, "note": "V-IMG4; FB-MIG",
    }  # fmt: skip
    assert rows[("imagegeneration@002", ("upscale",))]["lifecycle"]["replacement"] == UP
