"""The one JSON splicer and the multipart body."""

from __future__ import annotations

import json

import pytest

from app.transport import splice_json
from app.transport.bodies import IMAGE_SLOT


def test_the_image_is_spliced_as_is_and_the_json_stays_valid() -> None:
    image = memoryview(b"iVBORw0KGgo=")
    parts = splice_json({"url": IMAGE_SLOT, "prompt": 'a "quoted" \u00e9'}, image, b"base64,")
    assert parts[1] is image  # not copied
    body = b"".join(parts)
    assert json.loads(body) == {"url": "base64,iVBORw0KGgo=", "prompt": 'a "quoted" \u00e9'}


def test_caller_text_that_looks_like_the_slot_is_never_taken_for_it() -> None:
    # The slot comes first, so a caller's string equal to it (escaped NUL and all) is
    # found after it and left alone.
    parts = splice_json({"image": IMAGE_SLOT, "prompt": IMAGE_SLOT}, b"QUJD")
    assert json.loads(b"".join(parts)) == {"image": "QUJD", "prompt": IMAGE_SLOT}


def test_a_document_without_the_slot_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        splice_json({"image": "x"}, b"QUJD")
