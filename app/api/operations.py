"""POST /v1/upscale and POST /v1/generate: parse, then hand over to the service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app import intake, jobs
from app.callers import auth
from app.callers import openapi as callers_openapi
from app.schemas import ImageResponse

router = APIRouter(tags=["images"])

_PROBLEM = {
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "Malformed request (bad JSON, bad base64, unknown or missing field)",
        **_PROBLEM,
    },
    406: {
        "description": "The Accept header asks for something this endpoint cannot answer",
        **_PROBLEM,
    },
    413: {"description": "Body over IMAGE_GATEWAY_MAX_BODY_BYTES", **_PROBLEM},
    415: {"description": "Image is not png, jpeg or webp (sniffed from its bytes)", **_PROBLEM},
    422: {
        "description": "A field breaks the chosen provider's limits, or content was filtered",
        **_PROBLEM,
    },
    429: {"description": "Rate limited by the gateway or the vendor (Retry-After set)", **_PROBLEM},
    502: {"description": "The vendor failed or answered nonsense", **_PROBLEM},
    503: {"description": "No provider can serve it now (Retry-After set)", **_PROBLEM},
    504: {"description": "The vendor did not answer within the deadline", **_PROBLEM},
}
_IMAGE_200 = {
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/webp": {"schema": {"type": "string", "format": "binary"}},
}


def _body(json_schema: str, form_schema: str) -> dict[str, Any]:
    ref = "#/components/schemas/"
    return {
        "parameters": [callers_openapi.DRY_RUN_PARAMETER],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": ref + json_schema}},
                "multipart/form-data": {"schema": {"$ref": ref + form_schema}},
            },
        },
    }


@router.post(
    "/v1/upscale",
    operation_id="upscale",
    dependencies=[Depends(auth.require("upscale"))],
    summary="Upscale an image",
    response_model=ImageResponse,
    responses={
        200: {
            "content": _IMAGE_200,
            "description": "JSON, or the raw image for Accept: image/*; "
            "with ?dry_run=true a DryRunResponse",
            "headers": callers_openapi.success_headers(),
        },
        **_ERRORS,
        **callers_openapi.RESPONSES,
    },
    openapi_extra=_body("UpscaleRequest", "UpscaleForm"),
)
async def upscale(request: Request) -> Response:
    auth.admit(request, "upscale")
    return await jobs.serve(request, await intake.read_upscale(request))


@router.post(
    "/v1/generate",
    operation_id="generate",
    dependencies=[Depends(auth.require("generate"))],
    summary="Generate images from a prompt",
    response_model=ImageResponse,
    responses={
        200: {
            "content": _IMAGE_200,
            "description": "JSON, or the raw image for Accept: image/*; "
            "with ?dry_run=true a DryRunResponse",
            "headers": callers_openapi.success_headers(),
        },
        **_ERRORS,
        **callers_openapi.RESPONSES,
    },
    openapi_extra=_body("GenerateParams", "GenerateForm"),
)
async def generate(request: Request) -> Response:
    auth.admit(request, "generate")
    return await jobs.serve(request, await intake.read_generate(request))
