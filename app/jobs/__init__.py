"""Durable jobs: asynchronous requests (``Prefer: respond-async`` / ``wait=N``), the
``/v1/jobs`` resource, webhooks, ``Idempotency-Key``, and crash safety, on the state store
(``app.state``). ``serve`` is the one entry point from the operation endpoints: without
``Prefer`` or ``Idempotency-Key`` the request goes to the gateway's service as before."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.requests import Request
from starlette.responses import Response

from app.domain import Job
from app.errors import FieldError, StateUnavailable, ValidationFailed
from app.jobs.headers import parse_idempotency_key, parse_prefer
from app.state import STORE_ERRORS

log = logging.getLogger("image_gateway.jobs")


async def serve(request: Request, job: Job, raw: bool = False) -> Response:
    """``raw``: the operation answers the image's bytes (the ``/bytes`` operations). Those
    ignore ``Prefer`` (RFC 7240 §2 allows it; no Preference-Applied is sent): their
    contract has no 202 JSON beside the image, which generated clients could not take."""
    headers = request.headers
    asked = "prefer" in headers and not raw
    prefer = parse_prefer(headers.getlist("prefer")) if asked else None
    key = parse_idempotency_key(headers.get("idempotency-key"))
    if prefer is None and key is None:
        if job.params.callback_url is not None:
            raise ValidationFailed(
                "callback_url needs an asynchronous request (Prefer: respond-async)",
                errors=[FieldError(("body", "callback_url"), "needs Prefer: respond-async")],
            )
        return await request.app.state.service.serve(request, job, raw)  # type: ignore[no-any-return]
    with store_errors():
        return await request.app.state.jobs.submit(request, job, prefer, key, raw)  # type: ignore[no-any-return]


@contextmanager
def store_errors() -> Iterator[None]:
    """A store that cannot be reached is a 503 with a code of its own, never a 500."""
    try:
        yield
    except STORE_ERRORS as exc:
        log.warning("jobs: the state store failed: %s", type(exc).__name__)
        raise StateUnavailable(
            "the job store is unavailable; retry shortly", retry_after=5
        ) from None
