"""The wire contract (DESIGN §1): request parameters, responses and problem details.

The image itself is not a pydantic field on the hot path: a multi-megabyte base64 string is
taken out of the parsed body and decoded once by ``app.images`` instead of being validated
and copied again. ``UpscaleRequest`` still describes the whole JSON body for the OpenAPI spec.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ProviderId = Literal["vertex", "venice", "deepimage", "local"]
OutputFormat = Literal["png", "jpeg", "webp"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class OutputOptions(Strict):
    format: OutputFormat | None = Field(default=None, description="Output encoding.")
    quality: int | None = Field(default=None, ge=0, le=100, description="jpeg/webp quality.")


Options = dict[ProviderId, dict[str, Any]]

_OPTIONS_DOC = (
    "Vendor-native fields, keyed by provider id and validated by that provider's own model, "
    'e.g. {"venice": {"enhance": true, "replication": 0.35}}.'
)


class _Common(Strict):
    provider: ProviderId | None = Field(default=None, description="Routing decides when absent.")
    model: str | None = Field(
        default=None, min_length=1, description="Provider default when absent."
    )
    output: OutputOptions | None = None
    options: Options | None = Field(default=None, description=_OPTIONS_DOC)
    fallback: bool = Field(
        default=False,
        description="With an explicit provider: allow the next provider in the routing list "
        "when this one fails in a retryable way or its circuit is open.",
    )
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="Asynchronous requests only (Prefer: respond-async): where the finished "
        "job is POSTed, signed as Standard Webhooks describes. Must match "
        "IMAGE_GATEWAY_JOBS__WEBHOOK_ALLOW.",
    )


class UpscaleParams(_Common):
    """Every upscale field except the image."""

    scale: float | None = Field(
        default=None, ge=1, le=8, description="1..8; each provider narrows it."
    )
    width: int | None = Field(
        default=None, ge=1, le=65535, description="Target width (aspect kept)."
    )
    height: int | None = Field(
        default=None, ge=1, le=65535, description="Target height (aspect kept)."
    )
    prompt: str | None = Field(default=None, max_length=32768, description="Optional guidance.")
    creativity: float | None = Field(
        default=None, ge=0, le=1, description="How far the result may drift."
    )

    @model_validator(mode="after")
    def _one_target(self) -> UpscaleParams:
        given = [n for n in ("scale", "width", "height") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of scale, width or height, not {' and '.join(given)}")
        return self


class UpscaleRequest(UpscaleParams):
    """The JSON body of ``POST /v1/upscale``."""

    image: str = Field(description="The image as base64, raw or as a data: URI (png, jpeg, webp).")


class UpscaleForm(UpscaleParams):
    """The multipart body of ``POST /v1/upscale``: the same fields as form parts."""

    image: bytes = Field(json_schema_extra={"format": "binary"}, description="The image file.")
    options: str | None = Field(default=None, description="JSON string; see the JSON body.")  # type: ignore[assignment]
    output: str | None = Field(default=None, description="JSON string; see the JSON body.")  # type: ignore[assignment]


class GenerateParams(_Common):
    prompt: str = Field(min_length=1, max_length=32768)
    negative_prompt: str | None = Field(default=None, max_length=32768)
    n: int = Field(default=1, ge=1, le=8, description="Number of images; each provider narrows it.")
    aspect_ratio: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,2}:[1-9][0-9]{0,2}$")
    width: int | None = Field(default=None, ge=1, le=16384)
    height: int | None = Field(default=None, ge=1, le=16384)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)

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


class GenerateForm(GenerateParams):
    options: str | None = Field(default=None, description="JSON string; see the JSON body.")  # type: ignore[assignment]
    output: str | None = Field(default=None, description="JSON string; see the JSON body.")  # type: ignore[assignment]


class ImageResult(BaseModel):
    data: str = Field(description="base64")
    mime_type: str
    width: int | None
    height: int | None


class Timing(BaseModel):
    upstream_ms: float
    total_ms: float


class CostInfo(BaseModel):
    """What the call cost (or, on a dry run, is estimated to cost), from the price table."""

    usd: float
    basis: str = Field(description="How the figure was reached: units x price, the price row")


class ImageResponse(BaseModel):
    id: str
    provider: str
    model: str
    images: list[ImageResult]
    warnings: list[str]
    timing: Timing
    cost: CostInfo


class DryRunResponse(BaseModel):
    """``?dry_run=true``: the request was validated and routed; no vendor was called."""

    dry_run: bool = True
    provider: str
    model: str
    cost: CostInfo = Field(description="The estimate checked against the key's budgets")
    warnings: list[str]


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str
    limit: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details, served as ``application/problem+json``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str
    provider: str | None = None
    errors: list[ProblemError] | None = None
    budget: dict[str, Any] | None = Field(
        default=None, description="budget_exceeded: the key's budget, spend and the estimate"
    )


class WebhookInfo(BaseModel):
    deliveries: list[dict[str, Any]] = Field(
        description="Each delivery attempt: attempt, at (epoch s), ok, status or error."
    )


class JobResource(BaseModel):
    """An asynchronous job (``/v1/jobs/{id}``)."""

    id: str
    operation: Literal["upscale", "generate"]
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    created_at: str = Field(description="RFC 3339 UTC")
    updated_at: str = Field(description="RFC 3339 UTC")
    attempts: int = Field(description="Times the gateway started running it.")
    provider: str | None = None
    model: str | None = None
    error: Problem | None = Field(default=None, description="When failed: the problem.")
    result_url: str | None = Field(default=None, description="When succeeded.")
    webhook: WebhookInfo | None = None
