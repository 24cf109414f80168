"""The OpenAI-compatible routes in process: every OpenAI field honoured or refused naming
it, OpenAI's error shape and statuses, model names and aliases, the upscale route, and the
model list. Venice answers from its emulator over real HTTP; upscales go to ``local``."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from PIL import Image

from app.api.openai_errors import openai_error, should_retry
from app.callers.keys import CallerKey, digest, new_secret, write_key_file
from app.errors import PaymentRequired
from tests.conftest import gateway, make_settings, png_bytes
from tests.emulators.common import EmulatorServer
from tests.emulators.venice import DEFAULT_API_KEY, VeniceState, create_app, venice_fault

pytestmark = pytest.mark.anyio

ALIASES = {"gpt-image-1": "venice/venice-sd35", "dall-e-3": "vertex/imagen-3.0-generate-002"}


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    state = VeniceState()
    with EmulatorServer(create_app(state), state) as running:
        yield running


@pytest.fixture
def venice(server: EmulatorServer) -> VeniceState:
    state = cast(VeniceState, server.state)
    state.reset()
    return state


def settings(server: EmulatorServer, **extra: Any) -> Any:
    values: dict[str, Any] = {
        "venice": {"api_key": DEFAULT_API_KEY, "base_url": f"{server.url}/api/v1"},
        "routing": {"generate": ["venice"], "upscale": ["local"]},
        "openai": {"model_aliases": ALIASES},
        "retry": {"max_attempts": 1},
    }
    return make_settings(**{**values, **extra})


@pytest.fixture
async def client(
    server: EmulatorServer, venice: VeniceState, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway(settings(server, state={"data_dir": tmp_path})) as running:
        yield running


def generations(venice: VeniceState) -> list[dict[str, Any]]:
    return [r.json() for r in venice.requests_to("/image/generate")]


def assert_openai_error(response: httpx.Response, status: int, param: str | None, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["code"]) == (param, code), error
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    return str(error["message"])


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


# --------------------------------------------------------------------------- generations


async def test_generation_maps_every_honoured_field_onto_venice(
    client: httpx.AsyncClient, venice: VeniceState
) -> None:
    body = {
        "model": "venice-sd35",
        "prompt": "a lighthouse at dusk",
        "n": 2,
        "size": "1024x768",
        "output_format": "webp",
        "response_format": "b64_json",
        "quality": "auto",
        "background": "auto",
        "moderation": "auto",
        "stream": False,
        "partial_images": 0,
        "user": "end-user-7",
        "seed": 42,
        "negative_prompt": "fog",
    }
    response = await client.post(
        "/v1/images/generations", json=body, headers={"x-request-id": "req-1"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"created", "data", "output_format", "size"}
    assert (answer["output_format"], answer["size"]) == ("webp", "1024x768")
    assert len(answer["data"]) == 2
    for item in answer["data"]:
        assert set(item) == {"b64_json"}
        image = decode(item["b64_json"])
        assert (image.format, image.size) == ("WEBP", (1024, 768))
    sent = generations(venice)[0]
    assert (sent["model"], sent["variants"], sent["width"], sent["height"]) == (
        "venice-sd35",
        2,
        1024,
        768,
    )
    assert (sent["format"], sent["seed"], sent["negative_prompt"]) == ("webp", 42, "fog")
    assert "user" not in json.dumps(sent)
    headers = response.headers
    assert headers["x-request-id"] == "req-1"
    assert headers["x-image-gateway-provider"] == "venice"
    assert headers["x-image-gateway-model"] == "venice-sd35"


async def test_output_format_defaults_to_png_as_openai_documents(
    client: httpx.AsyncClient, venice: VeniceState
) -> None:
    response = await client.post("/v1/images/generations", json={"prompt": "a fox"})
    assert response.status_code == 200, response.text
    assert decode(response.json()["data"][0]["b64_json"]).format == "PNG"
    assert generations(venice)[0]["format"] == "png"


async def test_an_alias_names_the_operators_model(
    client: httpx.AsyncClient, venice: VeniceState
) -> None:
    response = await client.post(
        "/v1/images/generations", json={"model": "gpt-image-1", "prompt": "a fox"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-image-gateway-model"] == "venice-sd35"
    assert generations(venice)[0]["model"] == "venice-sd35"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quality", "hd"),
        ("quality", "high"),
        ("background", "transparent"),
        ("moderation", "low"),
        ("style", "vivid"),
        ("stream", True),
        ("partial_images", 2),
        ("output_format", "gif"),
        ("complexity", "high"),
        ("frame_count", 4),
        ("svg", {"model": "x"}),
    ],
)
async def test_a_value_no_model_can_honour_is_refused_naming_it(
    client: httpx.AsyncClient, venice: VeniceState, field: str, value: Any
) -> None:
    response = await client.post(
        "/v1/images/generations", json={"prompt": "a fox", "model": "venice-sd35", field: value}
    )
    message = assert_openai_error(response, 400, field, "unsupported_value")
    assert field in message
    assert generations(venice) == []


async def test_url_results_are_kept_and_served_until_they_expire(
    client: httpx.AsyncClient,
) -> None:
    body = {"prompt": "a fox", "n": 2, "output_format": "jpeg", "response_format": "url"}
    response = await client.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text
    urls = [item["url"] for item in response.json()["data"]]
    assert len(urls) == 2 and len(set(urls)) == 2
    for url in urls:
        assert url.startswith("http://gateway/v1/images/results/") and url.endswith(".jpeg")
        fetched = await client.get(url)  # no key: the URL is the secret
        assert fetched.headers["content-type"] == "image/jpeg"
        assert decode(base64.b64encode(fetched.content).decode()).format == "JPEG"
    other_type = await client.get(urls[0].replace(".jpeg", ".png"))
    assert_openai_error(other_type, 404, "url", "not_found")
    guessed = await client.get(urls[0].rsplit("/", 2)[0] + "/not-a-token/0.jpeg")
    assert_openai_error(guessed, 404, "url", "not_found")


async def test_url_results_use_the_public_url_behind_a_proxy(
    server: EmulatorServer, venice: VeniceState, tmp_path: Path
) -> None:
    public = {"public_url": "https://images.example.com/gw/", "model_aliases": ALIASES}
    values = settings(server, openai=public, state={"data_dir": tmp_path})
    async with gateway(values) as proxied:
        response = await proxied.post(
            "/v1/images/generations", json={"prompt": "a fox", "response_format": "url"}
        )
        url = response.json()["data"][0]["url"]
        assert url.startswith("https://images.example.com/gw/v1/images/results/")
        local = await proxied.get(url.removeprefix("https://images.example.com/gw"))
    assert local.status_code == 200


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"prompt": "a fox", "colour": "red"}, "colour", "unknown_parameter"),
        ({"n": 1}, "prompt", "missing_required_parameter"),
        ({"prompt": "a fox", "n": "2"}, "n", "invalid_type"),
        ({"prompt": 7}, "prompt", "invalid_type"),
        ({"prompt": "a fox", "n": 11}, "n", "invalid_value"),
        ({"prompt": "a fox", "size": "big"}, "size", "invalid_value"),
        ({"prompt": "a fox", "quality": "ultra"}, "quality", "invalid_value"),
        ({"prompt": "a fox", "output_compression": 50}, "output_compression", "invalid_value"),
        ({"prompt": "   "}, "prompt", "invalid_value"),
        ({"prompt": "a fox", "n": 9}, "n", "invalid_value"),
        ({"prompt": "a fox", "user": "u" * 257}, "user", "invalid_value"),
    ],
)
async def test_malformed_requests_are_400_in_openai_shape(
    client: httpx.AsyncClient, venice: VeniceState, body: dict[str, Any], param: str, code: str
) -> None:
    response = await client.post("/v1/images/generations", json=body)
    assert_openai_error(response, 400, param, code)
    assert generations(venice) == []


async def test_a_body_that_is_not_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/images/generations", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert_openai_error(response, 400, None, "invalid_request")


async def test_the_models_limits_refuse_naming_the_openai_parameter(
    client: httpx.AsyncClient, venice: VeniceState
) -> None:
    cases = [
        ({"n": 5}, "n"),  # Venice: variants 1..4
        ({"size": "2048x2048"}, "size"),  # Venice: width/height <= 1280
        ({"output_format": "jpeg", "output_compression": 80}, "output_compression"),
    ]
    for extra, param in cases:
        body = {"prompt": "a fox", "model": "venice-sd35", **extra}
        response = await client.post("/v1/images/generations", json=body)
        message = assert_openai_error(response, 400, param, "invalid_value")
        assert message.startswith(f"Invalid '{param}': ") and "venice" in message, message
    assert generations(venice) == []


async def test_unknown_models_are_404_and_aliases_of_disabled_providers_say_so(
    client: httpx.AsyncClient,
) -> None:
    unknown = await client.post(
        "/v1/images/generations", json={"prompt": "a fox", "model": "midjourney-7"}
    )
    assert "GET /v1/models" in assert_openai_error(unknown, 404, "model", "model_not_found")
    disabled = await client.post(
        "/v1/images/generations", json={"prompt": "a fox", "model": "dall-e-3"}
    )
    message = assert_openai_error(disabled, 404, "model", "model_not_found")
    assert "'vertex' is not enabled" in message


async def test_an_upscale_model_cannot_generate(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/images/generations", json={"prompt": "a fox", "model": "lanczos"}
    )
    assert "not generate" in assert_openai_error(response, 400, "model", "invalid_value")


async def test_vendor_failures_keep_openais_statuses_and_say_whether_to_retry(
    client: httpx.AsyncClient, venice: VeniceState
) -> None:
    body = {"prompt": "a fox", "model": "venice-sd35"}
    venice.add_fault(venice_fault(429, path="/image/generate", retry_after=7))
    limited = await client.post("/v1/images/generations", json=body)
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "requests"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited.headers["retry-after"] == "7"
    # Venice locks out keys that repeat 4xx (vendors.md §2.7): the SDKs must not resend.
    assert limited.headers["x-should-retry"] == "false"
    venice.add_fault(venice_fault(500, path="/image/generate"))
    failed = await client.post("/v1/images/generations", json=body)
    assert_openai_error(failed, 502, None, "upstream_error")
    assert failed.headers["x-should-retry"] == "false"
    venice.add_fault(venice_fault(503, path="/image/generate"))
    busy = await client.post("/v1/images/generations", json=body)
    assert_openai_error(busy, 503, None, "provider_unavailable")
    assert busy.headers["x-should-retry"] == "true"


async def test_a_content_violation_is_a_400_content_policy_violation(
    client: httpx.AsyncClient, venice: VeniceState
) -> None:
    venice.content_violation = True
    response = await client.post("/v1/images/generations", json={"prompt": "a fox"})
    assert_openai_error(response, 400, None, "content_policy_violation")


async def test_early_refusals_are_in_openai_shape_too(server: EmulatorServer) -> None:
    async with gateway(settings(server, max_body_bytes=64)) as small:
        response = await small.post("/v1/images/generations", json={"prompt": "x" * 100})
    assert_openai_error(response, 413, None, "payload_too_large")


async def test_the_normalized_routes_keep_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/generate", json={"prompt": "a fox", "n": 9})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


# --------------------------------------------------------------------------- upscale


def form(**fields: str) -> dict[str, str]:
    return fields


async def upscale(
    client: httpx.AsyncClient, image: bytes | None = None, **fields: str
) -> httpx.Response:
    files = {"image": ("in.png", png_bytes() if image is None else image, "image/png")}
    return await client.post("/v1/images/upscale", files=files, data=fields)


async def test_upscale_by_scale_or_size(client: httpx.AsyncClient) -> None:
    by_scale = await upscale(client, scale="2", model="lanczos")
    assert by_scale.status_code == 200, by_scale.text
    assert by_scale.json()["size"] == "128x96"
    assert decode(by_scale.json()["data"][0]["b64_json"]).size == (128, 96)
    assert by_scale.headers["x-image-gateway-provider"] == "local"
    by_size = await upscale(client, size="160x120", output_format="jpeg", output_compression="70")
    assert by_size.status_code == 200, by_size.text
    image = decode(by_size.json()["data"][0]["b64_json"])
    assert (image.format, image.size) == ("JPEG", (160, 120))


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"size": "160x100"}, "size", "invalid_value"),  # not the image's aspect ratio
        ({"size": "160x120", "scale": "2"}, "size", "invalid_value"),
        ({"scale": "9"}, "scale", "invalid_value"),
        ({"scale": "big"}, "scale", "invalid_type"),
        ({"n": "2"}, "n", "invalid_value"),
        ({"response_format": "file"}, "response_format", "invalid_value"),
        ({"mask": "x"}, "mask", "unknown_parameter"),
        ({"model": "venice-sd35"}, "model", "invalid_value"),  # generates, does not upscale
        ({"model": "nope"}, "model", "model_not_found"),
    ],
)
async def test_upscale_refusals_name_the_parameter(
    client: httpx.AsyncClient, fields: dict[str, str], param: str, code: str
) -> None:
    response = await upscale(client, **fields)
    status = 404 if code == "model_not_found" else 400
    assert_openai_error(response, status, param, code)


async def test_upscale_image_faults_name_the_image(client: httpx.AsyncClient) -> None:
    gif = await upscale(client, image=b"GIF89a" + b"\0" * 64, scale="2")
    assert_openai_error(gif, 400, "image", "invalid_image_format")
    missing = await client.post("/v1/images/upscale", files={"scale": (None, "2")})
    assert_openai_error(missing, 400, "image", "invalid_request")


# --------------------------------------------------------------------------- models


async def test_models_lists_every_served_model_and_alias(
    client: httpx.AsyncClient, venice: VeniceState
) -> None:
    response = await client.get("/v1/models")
    assert response.status_code == 200
    listing = response.json()
    assert listing["object"] == "list"
    models = {m["id"]: m for m in listing["data"]}
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in models.values())
    assert models["lanczos"]["owned_by"] == "local"
    assert models["lanczos"]["operations"] == ["upscale"]
    assert models["venice-sd35"]["owned_by"] == "venice"
    assert models["gpt-image-1"]["owned_by"] == "venice"  # an alias, owned by its target
    assert "z-image-turbo" in models  # Venice's live model list, not only the default
    assert "dall-e-3" not in models  # its target's provider is not enabled
    one = await client.get("/v1/models/venice/venice-sd35")
    assert one.json()["owned_by"] == "venice"
    missing = await client.get("/v1/models/nope")
    assert_openai_error(missing, 404, "model", "model_not_found")


# --------------------------------------------------------------------------- keys, cost, dry run


async def test_caller_keys_work_here_and_refusals_are_in_openai_shape(
    server: EmulatorServer, venice: VeniceState, tmp_path: Path
) -> None:
    secrets = {"team": new_secret("team"), "upscale-only": new_secret("upscale-only")}
    keys = [
        CallerKey(id="team", hash=digest(secrets["team"])),
        CallerKey(id="upscale-only", hash=digest(secrets["upscale-only"]), operations=("upscale",)),
    ]
    write_key_file(tmp_path / "keys.json", keys)
    body = {"prompt": "a fox", "model": "venice-sd35"}
    # With keys on, rate limits, budgets and usage live in the state store: keep it here.
    values = {"callers": {"keys_file": tmp_path / "keys.json"}, "state": {"data_dir": tmp_path}}
    async with gateway(settings(server, **values)) as gw:
        missing = await gw.post("/v1/images/generations", json=body)
        wrong = await gw.post("/v1/images/generations", json=body, headers=bearer("igw_nope"))
        scoped = await gw.post(
            "/v1/images/generations", json=body, headers=bearer(secrets["upscale-only"])
        )
        served = await gw.post("/v1/images/generations", json=body, headers=bearer(secrets["team"]))
    for refused in (missing, wrong):
        assert_openai_error(refused, 401, None, "invalid_api_key")
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert_openai_error(scoped, 403, None, "forbidden")
    assert served.status_code == 200, served.text
    assert float(served.headers["x-image-gateway-cost-usd"]) >= 0
    assert len(generations(venice)) == 1


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


async def test_dry_run_prices_without_calling_the_vendor(
    client: httpx.AsyncClient, venice: VeniceState
) -> None:
    response = await client.post(
        "/v1/images/generations?dry_run=true", json={"prompt": "a fox", "model": "venice-sd35"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["dry_run"] is True and answer["provider"] == "venice"
    assert "x-image-gateway-cost-usd" in response.headers
    assert generations(venice) == []


def test_a_spent_budget_is_openais_insufficient_quota_without_sdk_resends() -> None:
    error = PaymentRequired("key 'team' would exceed its daily budget")
    error.extensions["budget"] = {"period": "daily", "remaining_usd": 0.0}
    status, body = openai_error(error)
    assert status == 429
    assert body["error"]["type"] == body["error"]["code"] == "insufficient_quota"
    assert body["error"]["budget"] == {"period": "daily", "remaining_usd": 0.0}
    assert should_retry(error, status) == b"false"


async def test_idempotency_keys_are_refused_here_rather_than_ignored(
    client: httpx.AsyncClient, venice: VeniceState
) -> None:
    response = await client.post(
        "/v1/images/generations", json={"prompt": "a fox"}, headers={"idempotency-key": "k1"}
    )
    assert_openai_error(response, 400, "Idempotency-Key", "unsupported_parameter")
    assert generations(venice) == []


async def test_the_end_user_id_reaches_the_access_log_and_no_vendor(
    client: httpx.AsyncClient, venice: VeniceState, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"prompt": "a fox", "user": "old-id", "safety_identifier": "hashed-user-7"}
    with caplog.at_level(logging.INFO, logger="image_gateway.access"):
        response = await client.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("access")]
    assert [line.get("user") for line in lines] == ["hashed-user-7"]
    assert "hashed-user-7" not in venice.requests_to("/image/generate")[0].body.decode()
