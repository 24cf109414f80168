"""The wire contract (DESIGN §1): request parameters, responses and problem details.

The image itself is not a pydantic field on the hot path: a multi-megabyte base64 string is
taken out of the parsed body and decoded once by ``app.images`` instead of being validated
and copied again. ``UpscaleRequest`` still describes the whole JSON body for the OpenAPI spec.

Every property carries a description and the models carry examples: generated clients show
them as documentation, and ``tests/test_openapi.py`` refuses a spec without them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.errors import ProblemCode

UpscaleProvider = Literal["vertex", "venice", "deepimage", "local"]
#: ``local`` only upscales: it is not offered where it could never serve.
GenerateProvider = Literal["vertex", "venice", "deepimage"]
ProviderId = UpscaleProvider
OutputFormat = Literal["png", "jpeg", "webp"]
#: 64-bit, said in the schema, so generators do not pick a 32-bit integer.
Int64 = Annotated[int, Field(json_schema_extra={"format": "int64"})]
ImageMimeType = Literal["image/png", "image/jpeg", "image/webp"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class OutputOptions(Strict):
    """How the answer's image is encoded."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"format": "jpeg", "quality": 90}]})

    format: OutputFormat | None = Field(
        default=None,
        description="Output encoding; the provider's default (usually png) when absent. "
        "Each model lists the formats it can write in GET /v1/providers.",
    )
    quality: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="jpeg/webp quality 0..100, for models whose output_quality is true.",
    )


Options = dict[ProviderId, dict[str, Any]]

_OPTIONS_DOC = (
    "Vendor-native fields, keyed by provider id and validated by that provider's own model "
    "(its options_schema in GET /v1/providers), "
    'e.g. {"venice": {"enhance": true, "replication": 0.35}}.'
)
_MODEL_DOC = "Vendor model id; the provider's default when absent (see GET /v1/providers)."
_FALLBACK_DOC = (
    "With an explicit provider: allow the next provider in the routing list when this one "
    "fails in a retryable way or its circuit is open."
)
_PROVIDER_DOC = "Provider to use; routing decides when absent."
_FORM_JSON_DOC = "A JSON object sent as a text part; same meaning as the JSON body's field."


class _OperationParams(Strict):
    """The fields both operations share. Each operation redeclares ``provider`` with its own
    enum; a redeclared field keeps its place, so ``provider`` stays first in the spec."""

    provider: str | None = Field(default=None, description=_PROVIDER_DOC)
    model: str | None = Field(default=None, min_length=1, description=_MODEL_DOC)
    output: OutputOptions | None = Field(default=None, description="Output encoding.")
    options: Options | None = Field(default=None, description=_OPTIONS_DOC)
    fallback: bool = Field(default=False, description=_FALLBACK_DOC)
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="Asynchronous requests only (Prefer: respond-async): where the finished "
        "job is POSTed, signed as Standard Webhooks describes. Must match "
        "IMAGE_GATEWAY_JOBS__WEBHOOK_ALLOW.",
    )


class UpscaleParams(_OperationParams):
    """Every upscale field except the image."""

    provider: UpscaleProvider | None = Field(default=None, description=_PROVIDER_DOC)
    scale: float | None = Field(
        default=None,
        ge=1,
        le=8,
        description="Upscale factor 1..8 (give one of scale, width, height). Each provider "
        "narrows it: Vertex 2 or 4, Venice 1..4, Deep-Image and local up to their pixel caps.",
        examples=[2],
    )
    width: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Target width in pixels, aspect kept (instead of scale).",
    )
    height: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Target height in pixels, aspect kept (instead of scale).",
    )
    prompt: str | None = Field(
        default=None,
        max_length=32768,
        description="Optional guidance for providers that take one (Venice enhance).",
    )
    creativity: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="How far the result may drift from the input, 0..1, where supported.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> UpscaleParams:
        given = [n for n in ("scale", "width", "height") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of scale, width or height, not {' and '.join(given)}")
        return self


_PNG_1PX = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


class UpscaleRequest(UpscaleParams):
    """The JSON body of ``POST /v1/upscale``."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"image": _PNG_1PX, "scale": 2, "provider": "local"}]}
    )

    image: str = Field(
        min_length=1,
        description="The image as base64, raw or as a data: URI: png, jpeg or webp, at most "
        "16384 x 16384 px; each provider narrows size and bytes (GET /v1/providers).",
        examples=[_PNG_1PX],
    )


class UpscaleForm(Strict):
    """The multipart body of ``POST /v1/upscale/multipart``: the fields as form parts."""

    image: bytes = Field(
        json_schema_extra={"format": "binary"},
        description="The image file: png, jpeg or webp (sniffed from its bytes).",
    )
    provider: UpscaleProvider | None = Field(
        default=None, description="Provider to use; routing decides when absent."
    )
    model: str | None = Field(default=None, min_length=1, description=_MODEL_DOC)
    scale: float | None = Field(default=None, ge=1, le=8, description="Upscale factor, 1..8.")
    width: int | None = Field(default=None, ge=1, le=65535, description="Target width, px.")
    height: int | None = Field(default=None, ge=1, le=65535, description="Target height, px.")
    prompt: str | None = Field(default=None, max_length=32768, description="Optional guidance.")
    creativity: float | None = Field(default=None, ge=0, le=1, description="Drift, 0..1.")
    fallback: bool | None = Field(default=None, description=_FALLBACK_DOC)
    callback_url: str | None = Field(
        default=None, max_length=2048, description="See the JSON body's callback_url."
    )
    output: str | None = Field(default=None, description=_FORM_JSON_DOC)
    options: str | None = Field(default=None, description=_FORM_JSON_DOC)


class GenerateParams(_OperationParams):
    provider: GenerateProvider | None = Field(default=None, description=_PROVIDER_DOC)
    prompt: str = Field(
        min_length=1,
        max_length=32768,
        description="What to draw; not blank. Providers narrow the length (Venice 1500 "
        "characters, Vertex about 480 tokens).",
        examples=["a lighthouse at dusk, oil painting"],
    )
    negative_prompt: str | None = Field(
        default=None, max_length=32768, description="What to avoid, where supported."
    )
    n: int = Field(
        default=1,
        ge=1,
        le=8,
        description="Number of images, 1..8; each provider narrows it (Venice 1..4).",
    )
    aspect_ratio: str | None = Field(
        default=None,
        pattern=r"^[1-9][0-9]{0,2}:[1-9][0-9]{0,2}$",
        description="Like 16:9; each provider lists the ratios it supports. Not with width/height.",
        examples=["1:1"],
    )
    width: int | None = Field(
        default=None, ge=1, le=16384, description="Width in pixels, where supported."
    )
    height: int | None = Field(
        default=None, ge=1, le=16384, description="Height in pixels, where supported."
    )
    seed: Int64 | None = Field(
        default=None,
        ge=-(2**63),
        le=2**63 - 1,
        description="Seed for repeatable results; each provider narrows the range.",
    )

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be blank")
        return value

    @model_validator(mode="after")
    def _ratio_or_size(self) -> GenerateParams:
        if self.aspect_ratio is not None and (self.width is not None or self.height is not None):
            raise ValueError("give aspect_ratio or width/height, not both")
        return self


class GenerateRequest(GenerateParams):
    """The JSON body of ``POST /v1/generate``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"prompt": "a lighthouse at dusk", "provider": "venice", "n": 1}]
        }
    )


class GenerateBytesRequest(GenerateRequest):
    """The JSON body of ``POST /v1/generate/bytes``: one image, since the answer is its bytes."""

    n: int = Field(
        default=1, ge=1, le=1, description="Always 1: the answer carries one image's bytes."
    )


class ImageResult(BaseModel):
    """One image of the answer."""

    data: str = Field(description="The image as base64 (no data: prefix).")
    mime_type: ImageMimeType = Field(description="The image's media type.")
    width: int | None = Field(description="Width in pixels; null when the vendor said none.")
    height: int | None = Field(description="Height in pixels; null when the vendor said none.")


class Timing(BaseModel):
    """Where the time went, in milliseconds."""

    upstream_ms: float = Field(description="Time spent waiting for vendors.")
    total_ms: float = Field(description="Time from request to answer inside the gateway.")


class CostInfo(BaseModel):
    """What the call cost (or, on a dry run, is estimated to cost), from the price table."""

    usd: float = Field(description="US dollars.")
    basis: str = Field(description="How the figure was reached: units x price, the price row")


class ImageResponse(BaseModel):
    """The JSON answer of an operation."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3f2a9c0e5b7d4e1f8a6b2c4d9e0f1a2b",
                    "provider": "local",
                    "model": "lanczos",
                    "images": [
                        {"data": _PNG_1PX, "mime_type": "image/png", "width": 2, "height": 2}
                    ],
                    "warnings": [],
                    "timing": {"upstream_ms": 0.0, "total_ms": 3.1},
                    "cost": {"usd": 0.0, "basis": "local: free"},
                }
            ]
        }
    )

    id: str = Field(description="This answer's id (also in the logs).")
    provider: UpscaleProvider = Field(description="The provider that served the request.")
    model: str = Field(description="The vendor model that served it.")
    images: list[ImageResult] = Field(description="The images, in vendor order.")
    warnings: list[str] = Field(
        description="What the gateway changed or skipped (e.g. providers tried first)."
    )
    timing: Timing = Field(description="Where the time went.")
    cost: CostInfo = Field(description="What the call cost, from the price table.")


class DryRunResponse(BaseModel):
    """``?dry_run=true``: the request was validated and routed; no vendor was called."""

    dry_run: bool = Field(default=True, description="Always true: no vendor was called.")
    provider: str = Field(description="The provider routing chose.")
    model: str = Field(description="The vendor model it would use.")
    cost: CostInfo = Field(description="The estimate checked against the key's budgets")
    warnings: list[str] = Field(description="What the gateway changed or skipped.")


class ProblemError(BaseModel):
    """One broken rule."""

    loc: list[str | int] = Field(description='Where: the path to the field, e.g. ["scale"].')
    msg: str = Field(description="What is wrong, in words.")
    limit: str | None = Field(
        default=None, description="For vendor limits: the limit that was broken."
    )


class Problem(BaseModel):
    """RFC 9457 problem details, served as ``application/problem+json``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:image-gateway:problem:validation_failed",
                    "title": "Validation failed",
                    "status": 422,
                    "detail": "venice: scale 8 is over the model's maximum of 4",
                    "code": "validation_failed",
                    "request_id": "3f2a9c0e5b7d4e1f8a6b2c4d9e0f1a2b",
                    "provider": "venice",
                    "errors": [{"loc": ["scale"], "msg": "at most 4", "limit": "scale <= 4"}],
                }
            ]
        }
    )

    type: str = Field(description="urn:image-gateway:problem:<code>; stable.")
    title: str = Field(description="A short summary of the problem type.")
    status: int = Field(description="The HTTP status, repeated.")
    detail: str = Field(description="What happened, for a person.")
    code: ProblemCode = Field(description="Machine-readable reason; the fixed set below.")
    request_id: str = Field(description="The X-Request-ID of the request, for the logs.")
    provider: str | None = Field(
        default=None, description="The provider the problem came from, when one did."
    )
    errors: list[ProblemError] | None = Field(
        default=None, description="The individual broken rules, for 400 and 422."
    )
    budget: dict[str, Any] | None = Field(
        default=None, description="budget_exceeded: the key's budget, spend and the estimate"
    )


class WebhookInfo(BaseModel):
    deliveries: list[dict[str, Any]] = Field(
        description="Each delivery attempt: attempt, at (epoch s), ok, status or error."
    )


class JobResource(BaseModel):
    """An asynchronous job (``/v1/jobs/{id}``)."""

    id: str = Field(description="The job's id, as in /v1/jobs/{job_id}.")
    operation: Literal["upscale", "generate"] = Field(description="What the job runs.")
    status: Literal["queued", "running", "succeeded", "failed", "canceled"] = Field(
        description="Where the job is."
    )
    created_at: str = Field(description="RFC 3339 UTC")
    updated_at: str = Field(description="RFC 3339 UTC")
    attempts: int = Field(description="Times the gateway started running it.")
    provider: str | None = Field(default=None, description="The provider, once routed.")
    model: str | None = Field(default=None, description="The vendor model, once routed.")
    error: Problem | None = Field(default=None, description="When failed: the problem.")
    result_url: str | None = Field(default=None, description="When succeeded.")
    webhook: WebhookInfo | None = Field(
        default=None, description="With a callback_url: the deliveries so far."
    )
