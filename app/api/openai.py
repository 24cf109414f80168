"""The OpenAI-compatible routes: any OpenAI SDK is a client with only its base URL changed.

``POST /v1/images/generations`` and ``POST /v1/images/upscale`` map onto the normalized
generate and upscale (same routing, validation, fallbacks and metrics); ``GET /v1/models``
lists the models the gateway serves. Errors leave in OpenAI's shape (``openai_errors``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from app import intake
from app.api import openai_mapping as mapping
from app.api import openai_results
from app.api.openai_errors import ModelNotFound, OpenAIParamError
from app.api.openai_models import ModelIndex, ServedModel
from app.callers import auth
from app.callers import openapi as callers_openapi
from app.callers.spend import dry_run_asked
from app.domain import Job, Operation
from app.errors import FieldError, GatewayError
from app.providers.pricing import Cost
from app.record import record_of
from app.service import dry_run_response, result_headers

router = APIRouter(tags=["openai"])


class ImageData(BaseModel):
    b64_json: str | None = Field(default=None, description="The image, base64.")
    url: str | None = Field(
        default=None, description="With `response_format: url`: where to fetch it (an hour)."
    )


class ImagesResponse(BaseModel):
    """OpenAI's ImagesResponse."""

    created: int = Field(description="Unix time (seconds) of the answer.")
    data: list[ImageData] = Field(description="The images.")
    output_format: str | None = Field(default=None, description="png, jpeg or webp.")
    size: str | None = Field(default=None, description="WIDTHxHEIGHT of every image.")


class ModelObject(BaseModel):
    id: str = Field(description="The name to send as `model`.")
    object: str = Field(default="model", description="Always `model`.")
    created: int = Field(description="The vendor's release day (Unix time), 0 when unknown.")
    owned_by: str = Field(description="The provider that serves it.")
    shutdown_date: date | None = Field(
        default=None, description="The day the vendor stops serving it, when announced."
    )
    operations: list[str] = Field(description="Gateway extension: `generate`, `upscale`.")


class ModelList(BaseModel):
    object: str = Field(default="list", description="Always `list`.")
    data: list[ModelObject] = Field(description="The models.")


class OpenAIError(BaseModel):
    message: str = Field(description="What went wrong, for a person.")
    type: str = Field(description="invalid_request_error, requests (429) or server_error.")
    param: str | None = Field(description="The request field at fault, when there is one.")
    code: str | None = Field(description="e.g. unknown_parameter, invalid_value, model_not_found.")


class OpenAIErrorResponse(BaseModel):
    """The error shape of the OpenAI-compatible routes."""

    error: OpenAIError = Field(description="The error.")


SCHEMAS: tuple[type[BaseModel], ...] = (
    mapping.ImagesGenerateRequest,
    mapping.ImagesUpscaleForm,
    ImagesResponse,
    ModelList,
    OpenAIErrorResponse,
)

_ERROR = {
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/OpenAIErrorResponse"}}
    }
}
_RESULT_HEADERS = {
    "X-Request-ID": {
        "description": "This request's id (yours, when you sent one).",
        "schema": {"type": "string"},
    },
    "X-Image-Gateway-Provider": {
        "description": "The provider that served it.",
        "schema": {"type": "string"},
    },
    "X-Image-Gateway-Model": {
        "description": "The vendor model that served it.",
        "schema": {"type": "string"},
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "A parameter is invalid, or the chosen model cannot honour it "
        "(`param` names it)",
        **_ERROR,
    },
    404: {"description": "Unknown model", **_ERROR},
    413: {"description": "Body over IMAGE_GATEWAY_MAX_BODY_BYTES", **_ERROR},
    401: {"description": "Caller keys are on and the key is missing or invalid", **_ERROR},
    403: {"description": "The key may not run this operation or use this provider", **_ERROR},
    429: {
        "description": "Rate limited (Retry-After set), or the key's budget is spent "
        "(`insufficient_quota`)",
        **_ERROR,
    },
    502: {"description": "The vendor failed or answered nonsense", **_ERROR},
    503: {"description": "No provider can serve it now (Retry-After set)", **_ERROR},
    504: {"description": "The vendor did not answer within the deadline", **_ERROR},
}


_BINARY = {"type": "string", "format": "binary"}
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


def _responses(description: str) -> dict[int | str, dict[str, Any]]:
    headers = {**_RESULT_HEADERS, **callers_openapi.success_headers()}
    ok = {"description": description + "; with ?dry_run=true a DryRunResponse"}
    return {200: {**ok, "headers": headers}, **_ERRORS}


def _body(schema: str, media_type: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {
        "parameters": [callers_openapi.DRY_RUN_PARAMETER],
        "requestBody": {"required": True, "content": {media_type: {"schema": ref}}},
    }


async def _index(request: Request, refresh: bool = True) -> ModelIndex:
    """The model names this gateway serves; ``refresh`` first brings dynamic lists (Venice's
    catalog) up to date, which only a request that names a model needs."""
    service = request.app.state.service
    routing = service.settings.routing
    order = {Operation.GENERATE: routing.generate, Operation.UPSCALE: routing.upscale}
    index = ModelIndex(service.router.providers, service.settings.openai.model_aliases, order)
    if refresh:
        await index.refresh()
    return index


@router.post(
    "/v1/images/generations",
    operation_id="openaiCreateImage",
    dependencies=[Depends(auth.require("generate"))],
    summary="Generate images (OpenAI's images API)",
    response_model=ImagesResponse,
    responses=_responses("The images, base64 (`b64_json`)"),
    openapi_extra=_body("ImagesGenerateRequest", "application/json"),
)
async def create_image(request: Request) -> Response:
    """OpenAI's `images.generate`, mapped onto POST /v1/generate: every field is honoured or
    refused (400 naming it)."""
    await auth.admit(request, "generate")
    body = mapping.parse_request(mapping.ImagesGenerateRequest, await intake.read_json(request))
    index = await _index(request, refresh=body.model is not None)
    job = mapping.generate_job(body, index)
    return await _serve(request, job, body)


@router.post(
    "/v1/images/upscale",
    operation_id="openaiUpscaleImage",
    dependencies=[Depends(auth.require("upscale"))],
    summary="Upscale an image (OpenAI-style multipart)",
    response_model=ImagesResponse,
    responses=_responses("The upscaled image, base64 (`b64_json`)"),
    openapi_extra=_body("ImagesUpscaleForm", "multipart/form-data"),
)
async def upscale_image(request: Request) -> Response:
    """Multipart `image` plus `scale` or `size`, mapped onto POST /v1/upscale."""
    await auth.admit(request, "upscale")
    fields, data, b64 = await intake.read_multipart(request)
    try:
        image = intake.uploaded_image(data, b64)
    except GatewayError as exc:  # the bytes are at fault: say which field
        exc.errors = exc.errors or [FieldError(("image",), exc.detail)]
        raise
    body = mapping.parse_request(mapping.ImagesUpscaleParams, fields)
    index = await _index(request, refresh=body.model is not None)
    job = mapping.upscale_job(body, image, index)
    return await _serve(request, job, body)


async def _serve(request: Request, job: Job, body: mapping.Shared) -> Response:
    if "idempotency-key" in request.headers:  # a resend here would run (and bill) again
        raise OpenAIParamError(
            "Idempotency-Key",
            "Idempotency-Key is honoured on POST /v1/generate and /v1/upscale (durable jobs); "
            "this route would not deduplicate a resend, so it refuses the header.",
            "unsupported_parameter",
        )
    user = body.end_user()
    if user is not None:
        record_of(request).user = user
    dry_run = dry_run_asked(request)  # the gateway's ?dry_run=true: its own answer shape
    outcome = await request.app.state.service.run(request, job, dry_run=dry_run)
    if dry_run:
        return dry_run_response(outcome, _cost(request))
    headers = result_headers(outcome, record_of(request).attempt_labels, _cost(request))
    urls = None
    if body.response_format == "url":
        urls = await openai_results.keep(request, outcome.result.images)
    return mapping.images_response(outcome, headers, urls)


@router.get(
    "/v1/images/results/{token}/{name}",
    operation_id="openaiImageResult",
    summary="An image answered as `url` (no key needed; the URL is the secret)",
    response_class=Response,
    responses={
        200: {"content": {t: {"schema": _BINARY} for t in _IMAGE_TYPES}},
        404: {"description": "Unknown or expired", **_ERROR},
    },
)
async def image_result(request: Request, token: str, name: str) -> Response:
    """The image behind a `response_format: url` answer, until it expires."""
    return await openai_results.serve(request, token, name)


@router.get(
    "/v1/models",
    operation_id="openaiListModels",
    summary="List the models (OpenAI's models API)",
    response_model=ModelList,
    responses={500: {"description": "Unexpected error", **_ERROR}},
)
async def list_models(request: Request) -> ModelList:
    """Every image model of the enabled providers (`owned_by` = provider), then every
    configured alias whose target is served."""
    index = await _index(request)
    return ModelList(data=[_model(name, entry) for name, entry in index.listing()])


@router.get(
    "/v1/models/{model:path}",
    operation_id="openaiRetrieveModel",
    summary="One model (OpenAI's models API)",
    response_model=ModelObject,
    responses={404: {"description": "Unknown model", **_ERROR}},
)
async def retrieve_model(request: Request, model: str) -> ModelObject:
    """One entry of GET /v1/models."""
    index = await _index(request)
    found = index.find(model)
    if found is not None:
        return _model(*found)
    raise ModelNotFound(f"the model {model!r} does not exist or is not served here")


def _model(name: str, entry: ServedModel) -> ModelObject:
    ops = [op.value for op in entry.operations]
    released, sunset = entry.lifecycle.released, entry.lifecycle.sunset
    created = int(datetime.combine(released, time(), tzinfo=UTC).timestamp()) if released else 0
    return ModelObject(
        id=name, created=created, owned_by=entry.provider, operations=ops, shutdown_date=sunset
    )


def _cost(request: Request) -> Cost:
    cost = record_of(request).cost
    assert cost is not None  # the service priced the outcome
    return cost
