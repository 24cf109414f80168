"""The operations of the OpenAPI contract: one body shape and one answer shape each
(``/multipart`` for file uploads, ``/bytes`` for the image's bytes), and the promises the
spec makes: Allow on every 405, no type coercion (tests/api/test_generate.py), no
Retry-After where retrying cannot help."""

import base64
import io
import json

import pytest
from PIL import Image

from tests.conftest import gateway, make_settings, png_bytes

pytestmark = pytest.mark.anyio

PNG = png_bytes(40, 30)
B64 = base64.b64encode(PNG).decode()
GENERATED_ACCEPT = "image/png, image/jpeg, image/webp, application/octet-stream"


async def test_multipart_endpoint_uploads_a_file_and_answers_json() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale/multipart", files={"image": ("a.png", PNG)}, data={"scale": "2"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["images"][0]["width"] == 80


async def test_multipart_endpoint_refuses_json_with_415() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post("/v1/upscale/multipart", json={"image": B64})
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")


async def test_raw_endpoints_refuse_the_other_body_with_415() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post("/v1/upscale/bytes", files={"image": ("a.png", PNG)})
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("path", "accept", "body", "media_type"),
    [
        ("/v1/upscale/bytes", GENERATED_ACCEPT, {}, "image/png"),
        ("/v1/upscale/bytes", None, {}, "image/png"),
        ("/v1/upscale/bytes", "*/*", {"output": {"format": "jpeg"}}, "image/jpeg"),
        ("/v1/upscale/bytes", GENERATED_ACCEPT, {"output": {"format": "webp"}}, "image/webp"),
        ("/v1/upscale/bytes", "image/jpeg", {}, "image/jpeg"),
        ("/v1/upscale/bytes", "application/octet-stream", {}, "application/octet-stream"),
        ("/v1/upscale/bytes", "application/json, image/webp;q=0.5", {}, "image/webp"),
    ],
)
async def test_raw_endpoint_answers_bytes_by_output_format_then_accept(
    path: str, accept: str | None, body: dict[str, object], media_type: str
) -> None:
    headers = {"accept": accept} if accept else {}
    async with gateway(make_settings()) as client:
        response = await client.post(path, json={"image": B64, "scale": 2, **body}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    assert Image.open(io.BytesIO(response.content)).size == (80, 60)
    assert (response.headers["x-image-width"], response.headers["x-image-height"]) == ("80", "60")


async def test_multipart_raw_endpoint_answers_bytes() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale/multipart/bytes",
            files={"image": ("a.png", PNG)},
            data={"scale": "2"},
            headers={"accept": GENERATED_ACCEPT},
        )
    assert (response.status_code, response.headers["content-type"]) == (200, "image/png")


@pytest.mark.parametrize(
    ("accept", "body"),
    [("application/json", {}), ("image/jpeg", {"output": {"format": "png"}})],
)
async def test_raw_endpoint_that_cannot_answer_the_accept_is_406(
    accept: str, body: dict[str, object]
) -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale/bytes", json={"image": B64, **body}, headers={"accept": accept}
        )
    assert (response.status_code, response.json()["code"]) == (406, "not_acceptable")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/upscale", "POST"),
        ("PUT", "/v1/upscale/bytes", "POST"),
        ("DELETE", "/v1/generate", "POST"),
        ("POST", "/healthz", "GET"),
        ("PATCH", "/v1/providers", "GET"),
        ("PATCH", "/v1/jobs/job_1", "DELETE, GET"),  # two routes on one path: both named
    ],
)
async def test_every_405_says_which_methods_are_allowed(method: str, path: str, allow: str) -> None:
    async with gateway(make_settings()) as client:
        response = await client.request(method, path)
    assert (response.status_code, response.json()["code"]) == (405, "method_not_allowed")
    assert sorted(response.headers["allow"].split(", ")) == sorted(allow.split(", "))


async def test_generate_bytes_needs_a_configured_generator_and_says_so_without_retry_after() -> (
    None
):
    async with gateway(make_settings()) as client:
        response = await client.post("/v1/generate/bytes", json={"prompt": "a fox"})
    assert (response.status_code, response.json()["code"]) == (501, "provider_not_configured")
    assert "retry-after" not in response.headers


async def test_json_endpoints_keep_the_multipart_and_raw_conveniences() -> None:
    """Undeclared in the spec (generators cannot use them), kept for curl and older callers."""
    async with gateway(make_settings()) as client:
        form = await client.post("/v1/upscale", files={"image": ("a.png", PNG)})
        raw = await client.post(
            "/v1/upscale", content=json.dumps({"image": B64}), headers={"accept": "image/png"}
        )
    assert form.status_code == 200 and form.json()["provider"] == "local"
    assert (raw.status_code, raw.headers["content-type"]) == (200, "image/png")


@pytest.mark.parametrize(
    ("field", "value"), [("scale", "2"), ("fallback", "yes"), ("width", True), ("width", 80.5)]
)
async def test_json_upscale_takes_no_coerced_value(field: str, value: object) -> None:
    """The JSON body is read strictly (a string is not a number, nor a word a boolean)."""
    async with gateway(make_settings()) as client:
        response = await client.post("/v1/upscale", json={"image": B64, field: value})
    assert (response.status_code, response.json()["errors"][0]["loc"]) == (400, [field])


async def test_json_integer_may_be_written_with_a_zero_fraction() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post("/v1/upscale", json={"image": B64, "width": 80.0})
    assert response.status_code == 200 and response.json()["images"][0]["width"] == 80
