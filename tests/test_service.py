"""Response assembly and content negotiation."""

import base64
import json
import time
from typing import Any

import pytest
from starlette.responses import Response

from app.domain import Attempt, GenerateJob, Outcome, OutputImage, ProviderResult
from app.errors import NotAcceptable
from app.providers.pricing import Cost
from app.schemas import GenerateParams
from app.service import _json_response, negotiate


async def body_of(response: Response) -> tuple[bytes, int, int]:
    """Run the response as ASGI: its body, its declared length, and how many body messages."""
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(message)

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    await response({"type": "http"}, receive, send)
    length = int(dict(messages[0]["headers"])[b"content-length"])
    bodies = [m for m in messages[1:] if m["type"] == "http.response.body"]
    assert not bodies[-1].get("more_body", False)
    return b"".join(m["body"] for m in bodies), length, len(bodies)


@pytest.mark.anyio
async def test_spliced_json_body_is_valid_json_with_escaped_text() -> None:
    big = bytes(range(256)) * 1024  # its base64 is sent as a part of its own
    images = [
        OutputImage(mime_type="image/png", width=2, height=3, data=big),
        OutputImage(
            mime_type="image/webp", width=None, height=None, b64=base64.b64encode(b"two").decode()
        ),
    ]
    result = ProviderResult(images=images, model='m"odel\\')
    outcome = Outcome(
        result,
        "venice",
        [Attempt("venice", "ok", 0.25)],
        0.25,
        warnings=['scale lowered to "3"', "ünïcode\n"],
    )
    cost = Cost(0.08, 'a "basis"')
    body, length, messages = await body_of(_json_response(outcome, {}, time.perf_counter(), cost))
    assert length == len(body) and messages == 3  # head, the big base64, the rest
    doc = json.loads(body)
    assert doc["model"] == 'm"odel\\' and doc["warnings"] == ['scale lowered to "3"', "ünïcode\n"]
    assert [base64.b64decode(i["data"]) for i in doc["images"]] == [big, b"two"]
    assert doc["images"][1] == {
        "data": "dHdv",
        "mime_type": "image/webp",
        "width": None,
        "height": None,
    }
    assert doc["timing"]["upstream_ms"] == 250.0 and doc["timing"]["total_ms"] >= 0
    assert doc["cost"] == {"usd": 0.08, "basis": 'a "basis"'}


def generate(**params: object) -> GenerateJob:
    return GenerateJob(params=GenerateParams.model_validate({"prompt": "x", **params}))


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        (None, None),
        ("*/*", None),
        ("application/json", None),
        ("image/png", "image/png"),
        ("image/*;q=0.9, application/json;q=0.8", "image/*"),
        ("application/json, image/png", None),
        ("text/html, image/webp;q=0.1", "image/webp"),
    ],
)
def test_negotiate(accept: str | None, wanted: str | None) -> None:
    assert negotiate(accept, generate()) == wanted


def test_accept_sets_the_output_format_when_absent() -> None:
    job = generate(output={"quality": 70})
    negotiate("image/jpeg", job)
    assert job.params.output is not None
    assert (job.params.output.format, job.params.output.quality) == ("jpeg", 70)


@pytest.mark.parametrize("accept", ["text/html", "image/png;q=0, application/json;q=0"])
def test_nothing_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(accept, generate())
