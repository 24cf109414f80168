"""The upscale JSON fast path: the image string found in place, checked against a full
parse of the same bodies."""

from __future__ import annotations

import base64
import json

import pytest

from app import images
from app.errors import InvalidRequest
from app.intake import _split_image, _upscale_json
from tests.conftest import png_bytes

PNG = png_bytes(30, 20)
B64 = base64.b64encode(PNG).decode()


@pytest.mark.parametrize(
    "body",
    [
        {"image": B64, "scale": 2},
        {"scale": 2, "image": B64, "prompt": 'an image of a "cat"'},
        {"options": {"venice": {"enhance": True}}, "image": "data:image/png;base64," + B64},
    ],
)
def test_fast_path_agrees_with_a_full_parse(body: dict[str, object]) -> None:
    raw = json.dumps(body, indent=1).encode()  # whitespace around the colon too
    split = _split_image(raw)
    assert split is not None
    fields, image = _upscale_json(raw)
    expected = dict(body)
    expected.pop("image")
    assert fields == expected
    assert image.data == PNG and image.base64() == B64
    assert (image.info.width, image.info.height, image.info.size) == (30, 20, len(PNG))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"image": "QUJD\\/", "scale": 2}',  # an escape inside the string
        b'{"options": {"x": {"image": "QUJD"}}, "image": "QUJD"}',  # the first match is nested
        b'{"image": "QUJD", "image": "REVG"}',  # duplicate key: JSON keeps the last
        b'{"image": 12}',  # not a string
        b'[{"image": "QUJD"}]',  # not an object
    ],
)
def test_doubtful_shapes_fall_back_to_a_full_parse(raw: bytes) -> None:
    assert _split_image(raw) is None


def test_key_text_inside_an_earlier_string_is_not_mistaken_for_the_key() -> None:
    raw = b'{"prompt": "say \\"image\\": \\"QUJD\\"", "image": "REVG"}'
    split = _split_image(raw)
    assert split is not None
    fields, start, end = split
    assert fields == {"prompt": 'say "image": "QUJD"'}
    assert raw[start:end] == b"REVG"


def test_fallback_still_reports_errors_precisely() -> None:
    with pytest.raises(InvalidRequest, match="base64 string"):
        _upscale_json(b'{"image": 12}')


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("QUJD=ERG", "invalid base64"),
        ("QUJ", "invalid base64"),
        ("QU*D", "invalid base64"),
        ("", "empty"),
    ],
)
def test_span_validation_is_strict(text: str, why: str) -> None:
    body = b'xx"' + text.encode() + b'"yy'
    with pytest.raises(InvalidRequest) as caught:
        images.inspect_base64_span(body, 3, 3 + len(text))
    assert why in caught.value.errors[0].msg


def test_span_validation_in_chunks_finds_damage_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "_VALIDATE_CHARS", 8)  # many chunks for a small image
    good = B64.encode()
    assert images.inspect_base64_span(good, 0, len(good)).size == len(PNG)
    bad = good[:40] + b"*" + good[41:]
    with pytest.raises(InvalidRequest):
        images.inspect_base64_span(bad, 0, len(bad))
    cut = base64.b64encode(PNG[:-12])  # no IEND: truncated
    with pytest.raises(InvalidRequest, match="truncated"):
        images.inspect_base64_span(cut, 0, len(cut))
