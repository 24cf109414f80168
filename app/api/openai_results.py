"""``response_format: url``: the images kept in the state store (``app.state``, the store
the jobs keep their results in) under an unguessable token, and served at
``GET /v1/images/results/{token}/{index}`` until they expire, like OpenAI's result URLs
(valid 60 minutes, fetched without the API key: a browser or an ``<img>`` can load them).
"""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

from app import images
from app.domain import OutputImage
from app.errors import FieldError, NotFound
from app.state import StateStore

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}
_MIME = {ext: mime for mime, ext in _EXTENSIONS.items()}
#: 32 URL-safe characters: 192 random bits, so a URL cannot be guessed.
_TOKEN_BYTES = 24


async def keep(request: Request, results: list[OutputImage]) -> list[str]:
    """Store ``results``; their absolute URLs, in order (the extension names the type)."""
    store = await _store(request)
    settings = request.app.state.settings.openai
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    urls = []
    for index, image in enumerate(results):
        await store.put_blob(_key(token, index), image.as_bytes(), settings.result_url_ttl_s)
        ext = _EXTENSIONS.get(image.mime_type, "png")
        urls.append(f"{base}/v1/images/results/{token}/{index}.{ext}")
    return urls


async def serve(request: Request, token: str, name: str) -> Response:
    """The image behind a URL ``keep`` made; 404 once it has expired."""
    index, _, ext = name.partition(".")
    data = None
    if index.isdigit() and ext in _MIME and len(token) <= 64:
        data = await (await _store(request)).get_blob(_key(token, int(index)))
    if data is not None and images.sniff(data).format != ext:
        data = None  # the URL named another type: it is not one this gateway made
    if data is None:
        raise NotFound(
            "no such image: the URL is wrong or has expired",
            errors=[FieldError(("url",), "unknown or expired")],
        )
    headers = {"cache-control": "private, max-age=300"}
    return Response(content=data, media_type=_MIME[ext], headers=headers)


async def _store(request: Request) -> StateStore:
    repo = await request.app.state.jobs.ensure_started()
    store: StateStore = repo.store
    return store


def _key(token: str, index: int) -> str:
    return f"openai-result:{token}:{index}"
