"""Request bodies: given in parts (never joined when large), multipart forms, and the one
JSON splicer that puts a caller's base64 image into a vendor's JSON body as is."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

#: A body as parts: small ones are joined into one write, large ones go out as they are.
Body = Sequence[bytes | memoryview]

#: Stands in for the image while the rest of the document goes through ``json.dumps``.
IMAGE_SLOT = "\u0000image-slot"
_SLOT_JSON = json.dumps(IMAGE_SLOT).encode()
_JOIN_BELOW = 64 * 1024


def splice_json(
    document: Any, data: bytes | memoryview, prefix: bytes = b""
) -> list[bytes | memoryview]:
    """``document`` as compact JSON with ``prefix + data`` where ``IMAGE_SLOT`` stands.

    Base64 needs no JSON escaping, so a multi-megabyte image is neither run through the
    encoder nor copied (DESIGN §5). The slot must be the first string of the document that
    could hold caller text (callers place it first), so no caller string can be taken
    for it."""
    text = json.dumps(document, separators=(",", ":")).encode()
    head, slot, tail = text.partition(_SLOT_JSON)
    if not slot:
        raise ValueError("the document has no IMAGE_SLOT")
    return [head + b'"' + prefix, data, b'"' + tail]


@dataclass(frozen=True)
class FilePart:
    filename: str
    data: bytes | memoryview
    content_type: str


@dataclass(frozen=True)
class Multipart:
    """A multipart/form-data body: text fields, then file parts."""

    fields: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, FilePart] = field(default_factory=dict)

    def form(self) -> aiohttp.FormData:
        form = aiohttp.FormData()
        for name, value in self.fields.items():
            form.add_field(name, value)
        for name, part in self.files.items():
            form.add_field(
                name,
                _PartsPayload([part.data]),
                filename=part.filename,
                content_type=part.content_type,
            )
        return form


class _PartsPayload(Payload):
    """A body given in parts: written part by part, with its length known up front (so
    ``Content-Length``, not chunked), and never joined into one buffer when large."""

    def __init__(self, parts: Body, content_type: str = "application/octet-stream") -> None:
        size = sum(len(p) for p in parts)
        if size < _JOIN_BELOW and len(parts) > 1:
            parts = [b"".join(parts)]
        super().__init__(list(parts), content_type=content_type)
        self._size = size
        self._parts: list[bytes | memoryview] = list(parts)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._parts).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        for part in self._parts:
            await writer.write(part)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        await self.write(writer)  # the length is the size given above


def payload(body: bytes | Body | Multipart | None, content_type: str | None) -> Any:
    """What aiohttp's ``data=`` takes for ``body``."""
    if body is None:
        return None
    if isinstance(body, Multipart):
        return body.form()
    if isinstance(body, bytes | memoryview):
        body = [body]
    return _PartsPayload(body, content_type or "application/octet-stream")
