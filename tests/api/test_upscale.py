"""POST /v1/upscale with the built-in local provider: JSON and multipart, the JSON and raw
image answers, and a corpus of bad input, each answered with its status and code."""

import base64
import io
import json
import math
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import gateway, make_settings, png_bytes
from tests.images_corpus import BMP, GIF, TEXT, TIFF, png_claiming

pytestmark = pytest.mark.anyio

PNG = png_bytes(40, 30)
B64 = base64.b64encode(PNG).decode()


async def post_json(body: Any, **kwargs: Any) -> httpx.Response:
    async with gateway(make_settings(**kwargs)) as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await client.post(
            "/v1/upscale", content=content, headers={"content-type": "application/json"}
        )


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


async def test_json_upscale_returns_base64_with_dimensions() -> None:
    response = await post_json({"image": B64, "scale": 2})
    assert response.status_code == 200
    body = response.json()
    assert (body["provider"], body["model"]) == ("local", "lanczos")
    [image] = body["images"]
    assert (image["width"], image["height"], image["mime_type"]) == (80, 60, "image/png")
    assert decoded(base64.b64decode(image["data"])).size == (80, 60)
    assert body["timing"]["total_ms"] >= body["timing"]["upstream_ms"] >= 0
    # nothing is silent: the providers passed over on the way to local say why
    assert body["warnings"] == [
        "vertex skipped: not configured (set IMAGE_GATEWAY_VERTEX__PROJECT (plus Google "
        "Application Default Credentials))",
        "venice skipped: not configured (set IMAGE_GATEWAY_VENICE__API_KEY)",
        "deepimage skipped: not configured (set IMAGE_GATEWAY_DEEPIMAGE__API_KEY)",
    ]
    assert response.headers["x-image-gateway-attempts"] == (
        "vertex:skipped:not_configured, venice:skipped:not_configured, "
        "deepimage:skipped:not_configured, local:ok"
    )


async def test_multipart_upscale_to_raw_png() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale",
            files={"image": ("in.png", PNG, "image/png")},
            data={"scale": "2"},
            headers={"accept": "image/png"},
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert decoded(response.content).size == (80, 60)
    assert response.headers["x-image-gateway-provider"] == "local"
    assert response.headers["x-image-gateway-model"] == "lanczos"
    assert response.headers["x-request-id"]
    assert "total;dur=" in response.headers["server-timing"]


async def test_multipart_options_and_output_arrive_as_json_parts() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale",
            files={"image": ("in.png", PNG, "application/octet-stream")},
            data={"width": "100", "output": json.dumps({"format": "webp", "quality": 80})},
        )
    assert response.status_code == 200, response.text
    [image] = response.json()["images"]
    assert (image["mime_type"], image["width"], image["height"]) == ("image/webp", 100, 75)
    assert decoded(base64.b64decode(image["data"])).format == "WEBP"


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        ("image/jpeg", "JPEG"),
        ("image/webp", "WEBP"),
        ("image/*", "PNG"),
        ("application/json;q=0.5, image/png", "PNG"),
    ],
)
async def test_accept_picks_raw_bytes_and_format(accept: str, fmt: str) -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale", json={"image": B64, "height": 90}, headers={"accept": accept}
        )
    assert response.status_code == 200
    image = decoded(response.content)
    assert (image.format, image.size) == (fmt, (120, 90))


async def test_data_uri_and_jpeg_quality() -> None:
    response = await post_json(
        {
            "image": "data:image/png;base64," + B64,
            "scale": 1.5,
            "output": {"format": "jpeg", "quality": 40},
        }
    )
    assert response.status_code == 200
    [image] = response.json()["images"]
    assert (image["mime_type"], image["width"], image["height"]) == ("image/jpeg", 60, 45)


async def test_request_id_is_echoed() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale", json={"image": B64}, headers={"x-request-id": "abc-123"}
        )
        bad = await client.post("/v1/upscale", json={}, headers={"x-request-id": "abc-456"})
    assert response.headers["x-request-id"] == "abc-123"
    assert bad.headers["x-request-id"] == "abc-456"
    assert bad.json()["request_id"] == "abc-456"


CORPUS: list[tuple[str, Any, int, str]] = [
    ("empty body", b"", 400, "invalid_request"),
    ("not json", b"{not json", 400, "invalid_request"),
    ("json array", [], 400, "invalid_request"),
    ("no image", {"scale": 2}, 400, "invalid_request"),
    ("zero-byte image", {"image": ""}, 400, "invalid_request"),
    ("text named png", {"image": base64.b64encode(TEXT).decode()}, 415, "unsupported_media_type"),
    (
        "truncated png",
        {"image": base64.b64encode(PNG[: len(PNG) // 2]).decode()},
        400,
        "invalid_request",
    ),
    ("gif", {"image": base64.b64encode(GIF).decode()}, 415, "unsupported_media_type"),
    ("bmp", {"image": base64.b64encode(BMP).decode()}, 415, "unsupported_media_type"),
    ("tiff", {"image": base64.b64encode(TIFF).decode()}, 415, "unsupported_media_type"),
    (
        "100000x100000 png",
        {"image": base64.b64encode(png_claiming(100_000, 100_000)).decode()},
        422,
        "validation_failed",
    ),
    ("invalid base64", {"image": "iVBORw0KGgo***"}, 400, "invalid_request"),
    ("data uri wrong prefix", {"image": "data:text/plain;base64," + B64}, 400, "invalid_request"),
    ("unknown field", {"image": B64, "sharpen": True}, 400, "invalid_request"),
    ("image not a string", {"image": 12}, 400, "invalid_request"),
    ("scale 0", {"image": B64, "scale": 0}, 422, "validation_failed"),
    ("scale -1", {"image": B64, "scale": -1}, 422, "validation_failed"),
    ("scale 9", {"image": B64, "scale": 9}, 422, "validation_failed"),
    ("scale NaN", b'{"image": "' + B64.encode() + b'", "scale": NaN}', 422, "validation_failed"),
    ("scale string", {"image": B64, "scale": "big"}, 400, "invalid_request"),
    ("scale 1 on local", {"image": B64, "scale": 1}, 422, "validation_failed"),
    ("width and scale", {"image": B64, "scale": 2, "width": 100}, 422, "validation_failed"),
    ("width smaller than input", {"image": B64, "width": 20}, 422, "validation_failed"),
    ("bad output format", {"image": B64, "output": {"format": "gif"}}, 422, "validation_failed"),
    ("unknown provider", {"image": B64, "provider": "dalle"}, 422, "validation_failed"),
    ("options for local", {"image": B64, "options": {"local": {"x": 1}}}, 422, "validation_failed"),
]


@pytest.mark.parametrize(
    ("body", "status", "code"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS]
)
async def test_bad_input_corpus(body: Any, status: int, code: str) -> None:
    response = await post_json(body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["code"]) == (status, code)
    assert problem["request_id"] == response.headers["x-request-id"]
    assert problem["detail"] and problem["title"] and problem["type"].endswith(code)


async def test_validation_problem_names_the_field_and_limit() -> None:
    response = await post_json({"image": B64, "scale": 9})
    [error] = response.json()["errors"]
    assert error["loc"] == ["scale"]
    response = await post_json({"image": B64, "scale": 1})
    [error] = response.json()["errors"]
    assert error["limit"] == "local: scale must be > 1 and <= 8"


async def test_output_over_the_local_pixel_cap_is_refused() -> None:
    big = png_bytes(4000, 3000)
    response = await post_json({"image": base64.b64encode(big).decode(), "scale": 3})
    assert response.status_code == 422
    assert response.json()["errors"][0]["limit"] == "local: output must be <= 67108864 px"


async def test_multipart_without_image_part() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale", data={"scale": "2"}, files={"other": ("x", b"1")}
        )
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"] == ["image"]


async def test_multipart_with_bad_json_part() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale", files={"image": ("in.png", PNG)}, data={"options": "{nope"}
        )
    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


async def test_other_content_type_is_415() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale", content=PNG, headers={"content-type": "image/png"}
        )
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")


async def test_content_length_over_the_limit_is_413_before_reading() -> None:
    body = json.dumps({"image": B64}).encode()
    headers = {"content-type": "application/json"}
    async with gateway(make_settings(max_body_bytes=len(body))) as client:
        exact = await client.post("/v1/upscale", content=body, headers=headers)
        over = await client.post("/v1/upscale", content=body + b" ", headers=headers)
    assert exact.status_code == 200
    assert (over.status_code, over.json()["code"]) == (413, "payload_too_large")


async def test_unacceptable_accept_is_406() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale", json={"image": B64}, headers={"accept": "text/html"}
        )
        clash = await client.post(
            "/v1/upscale",
            json={"image": B64, "output": {"format": "png"}},
            headers={"accept": "image/jpeg"},
        )
    assert (response.status_code, response.json()["code"]) == (406, "not_acceptable")
    assert clash.status_code == 406


async def test_local_disabled_means_no_upscaler() -> None:
    response = await post_json({"image": B64}, local={"enabled": False})
    assert (response.status_code, response.json()["code"]) == (501, "provider_not_configured")
    assert "IMAGE_GATEWAY_VENICE__API_KEY" in response.json()["detail"]


def test_nan_is_not_json_we_emit() -> None:
    assert math.isnan(json.loads("NaN"))  # why the corpus can send it: Python's parser accepts it


@pytest.mark.parametrize("value", ["soon", "0", "-3", "nan"])
async def test_bad_request_timeout_header_is_400(value: str) -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale", json={"image": B64}, headers={"x-request-timeout": value}
        )
    assert (response.status_code, response.json()["code"]) == (400, "invalid_request")


async def test_request_timeout_header_lowers_the_deadline() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale", json={"image": B64}, headers={"x-request-timeout": "0.000001"}
        )
    assert (response.status_code, response.json()["code"]) == (504, "upstream_timeout")
