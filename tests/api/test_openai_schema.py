"""The OpenAI routes' request schemas say what the gateway accepts: every value the spec
allows for a narrowed field is accepted, and every OpenAI value it leaves out is still
refused as before (400 naming the field), so schemathesis' generated requests are not
mostly refused and the server's behaviour is unchanged."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.api.openai_mapping import ImagesGenerateRequest, ImagesUpscaleForm
from tests.api.test_openai import assert_openai_error, client, generations, server, venice
from tests.emulators.venice import VeniceState

__all__ = ["client", "server", "venice"]  # the fixtures, shared with test_openai.py
pytestmark = pytest.mark.anyio
GENERATE = ImagesGenerateRequest.model_json_schema()["properties"]


def allowed(name: str) -> list[Any]:
    """The values the spec allows for a narrowed field (its non-null variant)."""
    variant = GENERATE[name]["anyOf"][0]
    if "enum" in variant:
        return list(variant["enum"])
    return list(range(variant["minimum"], variant["maximum"] + 1))


NARROWED = ["quality", "background", "moderation", "stream", "partial_images", "output_format"]


@pytest.mark.parametrize("name", NARROWED)
async def test_every_value_the_spec_allows_is_accepted(
    client: httpx.AsyncClient, venice: VeniceState, name: str
) -> None:
    for value in allowed(name):
        body = {"prompt": "a fox", "model": "venice-sd35", name: value}
        answer = await client.post("/v1/images/generations?dry_run=true", json=body)
        assert answer.status_code == 200, (name, value, answer.text)
    assert generations(venice) == []


REFUSED = [
    ("quality", "hd", "unsupported_value"),
    ("background", "transparent", "unsupported_value"),
    ("moderation", "low", "unsupported_value"),
    ("stream", True, "unsupported_value"),
    ("partial_images", 1, "unsupported_value"),
    ("output_format", "gif", "unsupported_value"),
    ("style", "vivid", "unsupported_value"),
    ("complexity", "low", "unsupported_value"),
    ("frame_count", 2, "unsupported_value"),
    ("svg", {}, "unsupported_value"),
]


@pytest.mark.parametrize(("name", "value", "code"), REFUSED)
async def test_what_the_spec_leaves_out_is_refused_as_before(
    client: httpx.AsyncClient, venice: VeniceState, name: str, value: Any, code: str
) -> None:
    if name in GENERATE:
        assert value not in allowed(name)
    else:  # a field no model honours is not in the spec: an unknown field there
        assert ImagesGenerateRequest.model_json_schema()["additionalProperties"] is False
    body = {"prompt": "a fox", "model": "venice-sd35", name: value}
    answer = await client.post("/v1/images/generations", json=body)
    assert_openai_error(answer, 400, name, code)
    assert generations(venice) == []


async def test_prompt_n_and_seed_carry_the_normalized_limits(client: httpx.AsyncClient) -> None:
    prompt = GENERATE["prompt"]
    assert (prompt["minLength"], prompt["maxLength"]) == (1, 32768)
    assert GENERATE["n"]["anyOf"][0]["maximum"] == 8
    assert GENERATE["seed"]["anyOf"][0]["maximum"] == 2**63 - 1
    upscale = ImagesUpscaleForm.model_json_schema()["properties"]
    assert upscale["n"]["anyOf"][0]["maximum"] == 1
    assert upscale["prompt"]["anyOf"][0]["maxLength"] == 32768
    for body in ({"prompt": ""}, {"prompt": "x", "n": 9}, {"prompt": "x" * 32769}):
        answer = await client.post("/v1/images/generations", json=body)
        assert answer.status_code == 400, body
    big = await client.post("/v1/images/generations", json={"prompt": "x", "seed": 2**63})
    assert big.status_code == 400
