"""POST /v1/generate: the request model and routing when no generating provider exists."""

import pytest

from tests.conftest import gateway, make_settings

pytestmark = pytest.mark.anyio


async def test_generate_with_only_local_names_the_settings_that_enable_a_provider() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/generate", json={"prompt": "a lighthouse at dusk", "n": 2}
        )
    # A configuration problem: 501 with a code of its own and no Retry-After, since
    # retrying cannot help (a client that retries 503s would loop forever).
    assert response.status_code == 501
    assert "retry-after" not in response.headers
    problem = response.json()
    assert problem["code"] == "provider_not_configured"
    for setting in (
        "IMAGE_GATEWAY_VENICE__API_KEY",
        "IMAGE_GATEWAY_DEEPIMAGE__API_KEY",
        "IMAGE_GATEWAY_VERTEX__PROJECT",
        "IMAGE_GATEWAY_ROUTING__GENERATE",
    ):
        assert setting in problem["detail"]


async def test_explicit_unconfigured_provider_is_501_with_its_setting() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post("/v1/generate", json={"prompt": "x", "provider": "venice"})
    assert (response.status_code, response.json()["code"]) == (501, "provider_not_configured")
    assert "retry-after" not in response.headers
    assert "IMAGE_GATEWAY_VENICE__API_KEY" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        ({}, 400, ["prompt"]),
        ({"prompt": ""}, 422, ["prompt"]),
        ({"prompt": "   "}, 422, ["prompt"]),
        ({"prompt": "x", "n": 0}, 422, ["n"]),
        ({"prompt": "x", "n": 9}, 422, ["n"]),
        ({"prompt": "x", "aspect_ratio": "wide"}, 422, ["aspect_ratio"]),
        ({"prompt": "x", "aspect_ratio": "16:9", "width": 1024}, 422, []),
        ({"prompt": "x", "seed": "lucky"}, 400, ["seed"]),
        # No coercion on JSON: a wrong type is 400 even where lax parsing would convert it.
        ({"prompt": "x", "n": "2"}, 400, ["n"]),
        ({"prompt": "x", "fallback": "yes"}, 400, ["fallback"]),
        ({"prompt": "x", "seed": False}, 400, ["seed"]),
        ({"prompt": "x", "width": 512.5}, 400, ["width"]),
        ({"prompt": "x", "n": 9.0}, 422, ["n"]),  # 9.0 is an integer (JSON Schema): range
        ({"prompt": "x", "provider": "local"}, 422, ["provider"]),
        ({"prompt": "x", "style": "noir"}, 400, ["style"]),
        ({"prompt": "x", "options": {"midjourney": {}}}, 422, ["options", "midjourney", "[key]"]),
    ],
)
async def test_generate_request_model(body: dict[str, object], status: int, loc: list[str]) -> None:
    async with gateway(make_settings()) as client:
        response = await client.post("/v1/generate", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if loc:
        assert response.json()["errors"][0]["loc"] == loc


def multipart(**fields: str) -> tuple[bytes, dict[str, str]]:
    parts = [
        f'--b0undary\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    body = ("".join(parts) + "--b0undary--\r\n").encode()
    return body, {"content-type": "multipart/form-data; boundary=b0undary"}


async def test_generate_accepts_multipart_for_symmetry() -> None:
    async with gateway(make_settings()) as client:
        good_body, headers = multipart(prompt="a fox", n="2", output='{"format": "png"}')
        good = await client.post("/v1/generate", content=good_body, headers=headers)
        bad_body, _ = multipart(prompt="a fox", n="0")
        bad = await client.post("/v1/generate", content=bad_body, headers=headers)
    # Parsed fine: only the lack of a generating provider stops the first one.
    assert (good.status_code, good.json()["code"]) == (501, "provider_not_configured")
    assert (bad.status_code, bad.json()["errors"][0]["loc"]) == (422, ["n"])


async def test_raw_image_with_several_results_is_406() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/generate", json={"prompt": "x", "n": 2}, headers={"accept": "image/png"}
        )
    assert (response.status_code, response.json()["code"]) == (406, "not_acceptable")
