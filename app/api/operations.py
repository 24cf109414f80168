"""The operation endpoints: check the caller's key, parse, then hand over to the service.

Each body shape and each answer shape has an operation of its own, because generators
handle one request media type and one success media type per operation (measured with
openapi-generator, openapi-python-client and openapi-typescript; docs/design-notes.md):

- ``POST /v1/upscale`` and ``/v1/generate``: JSON in, JSON out (and, for curl users, the
  older conveniences, undeclared: multipart in, raw bytes for ``Accept: image/*``, and
  ``?dry_run=true``);
- ``POST /v1/upscale/multipart``: a file upload in, JSON out;
- ``.../bytes``: the same bodies in, the image's bytes out;
- ``.../dry-run``: validated, routed and priced, no vendor called (a DryRunResponse).

Every billed operation (all but the dry runs) honours ``Idempotency-Key`` through
``app.jobs``; the JSON ones honour ``Prefer`` too, the ``/bytes`` ones answer synchronously
(RFC 7240 lets a server ignore a preference). A dry run bills nothing, so it ignores both
and is answered afresh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app import intake, jobs
from app.api import contract
from app.callers import auth
from app.callers.spend import dry_run_asked
from app.providers.base import Job
from app.schemas import DryRunResponse, ImageResponse

router = APIRouter(tags=["images"])

Handler = Callable[[Request], Awaitable[Response]]


def _upscale(body: intake.BodyKind, raw: bool = False, dry_run: bool | None = None) -> Handler:
    async def upscale(request: Request) -> Response:
        await auth.admit(request, "upscale")
        return await _answer(request, await intake.read_upscale(request, body), raw, dry_run)

    return upscale


def _generate(body: intake.BodyKind, raw: bool = False, dry_run: bool | None = None) -> Handler:
    async def generate(request: Request) -> Response:
        await auth.admit(request, "generate")
        return await _answer(request, await intake.read_generate(request, body), raw, dry_run)

    return generate


async def _answer(request: Request, job: Job, raw: bool, dry_run: bool | None) -> Response:
    """A billed call may run as a job (Prefer, Idempotency-Key); a dry run (the /dry-run
    operations, or ``?dry_run=true`` on the JSON ones) never does: it calls no vendor."""
    if dry_run or (dry_run is None and dry_run_asked(request)):
        return await request.app.state.service.serve(request, job, raw, True)  # type: ignore[no-any-return]
    return await jobs.serve(request, job, raw)


upscale = _upscale(None)
generate = _generate(None)


#: path -> (handler, operationId, summary, request body schema, answer: json, bytes, dry-run)
ENDPOINTS: dict[str, tuple[Handler, str, str, str, str]] = {
    "/v1/upscale": (
        upscale,
        "upscale",
        "Upscale an image (JSON, base64)",
        "UpscaleRequest",
        "json",
    ),
    "/v1/upscale/multipart": (
        _upscale("multipart"),
        "upscaleMultipart",
        "Upscale an uploaded image file",
        "UpscaleForm",
        "json",
    ),
    "/v1/upscale/bytes": (
        _upscale("json", raw=True),
        "upscaleBytes",
        "Upscale an image (JSON, base64) and answer its bytes",
        "UpscaleRequest",
        "bytes",
    ),
    "/v1/upscale/multipart/bytes": (
        _upscale("multipart", raw=True),
        "upscaleMultipartBytes",
        "Upscale an uploaded image file and answer its bytes",
        "UpscaleForm",
        "bytes",
    ),
    "/v1/upscale/dry-run": (
        _upscale("json", dry_run=True),
        "upscaleDryRun",
        "Validate, route and price an upscale without calling a vendor",
        "UpscaleRequest",
        "dry-run",
    ),
    "/v1/generate": (
        generate,
        "generate",
        "Generate images from a prompt",
        "GenerateRequest",
        "json",
    ),
    "/v1/generate/bytes": (
        _generate("json", raw=True),
        "generateBytes",
        "Generate one image and answer its bytes",
        "GenerateBytesRequest",
        "bytes",
    ),
    "/v1/generate/dry-run": (
        _generate("json", dry_run=True),
        "generateDryRun",
        "Validate, route and price a generate without calling a vendor",
        "GenerateRequest",
        "dry-run",
    ),
}
_MODELS = {"json": ImageResponse, "dry-run": DryRunResponse}

for _path, (_handler, _op_id, _summary, _body, _shape) in ENDPOINTS.items():
    _kind: dict[str, Any] = {"response_class": Response} if _shape == "bytes" else {}
    router.add_api_route(
        _path,
        _handler,
        methods=["POST"],
        operation_id=_op_id,
        summary=_summary,
        dependencies=[Depends(auth.require(_path.split("/")[2]))],
        response_model=_MODELS.get(_shape),
        responses=contract.operation_responses(_shape),
        openapi_extra=contract.operation_extra(_body, _shape),
        **_kind,
    )
