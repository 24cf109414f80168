"""OpenAI's images requests mapped onto the normalized operations, and their answers.

Every OpenAI field is honoured or refused with a 400 that names it, never dropped:
``size`` becomes the normalized width/height (the chosen model's limits then decide),
``output_format``/``output_compression`` the normalized output format/quality, and a value
no gateway model can honour (``quality: hd``, ``background: transparent``, ``stream``, ...)
is refused before any vendor is called. Where OpenAI's API leaves a field's default to the
model, the gateway says what it does in docs/openai.md.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from app import intake, metrics
from app.api.openai_errors import OpenAIParamError
from app.api.openai_models import ModelIndex
from app.domain import GenerateJob, InputImage, Operation, Outcome, OutputImage, UpscaleJob
from app.images import ImageInfo
from app.schemas import GenerateParams, ProviderId, UpscaleParams
from app.service import PartsResponse

M = TypeVar("M", bound=BaseModel)
_SIZE = r"^[1-9][0-9]{0,4}x[1-9][0-9]{0,4}$"
_MIME_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}


class Shared(BaseModel):
    model: str | None = Field(
        default=None,
        description="A model from GET /v1/models (`venice-sd35`, `venice/venice-sd35`) or a "
        "configured alias (IMAGE_GATEWAY_OPENAI__MODEL_ALIASES). Routing decides when absent.",
        examples=["venice-sd35"],
    )
    response_format: Literal["url", "b64_json"] | None = Field(
        default=None,
        description="`b64_json` (the default), or `url`: the images are kept in the state "
        "store and served at GET /v1/images/results/... for "
        "IMAGE_GATEWAY_OPENAI__RESULT_URL_TTL_S (an hour).",
    )
    output_format: Literal["png", "jpeg", "webp"] | None = Field(
        default=None, description="Output encoding; the chosen model must offer it."
    )
    output_compression: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="0..100 for jpeg/webp, sent as the normalized output quality; refused "
        "when the chosen model's quality is not adjustable.",
    )
    safety_identifier: str | None = Field(
        default=None,
        max_length=256,
        description="Your end-user's id: written to the gateway's access log for abuse "
        "tracing, never sent to a vendor. Wins over `user` when not empty.",
    )
    user: str | None = Field(
        default=None, max_length=256, description="Deprecated by OpenAI: `safety_identifier`."
    )

    def end_user(self) -> str | None:
        return self.safety_identifier or self.user or None

    options: dict[ProviderId, dict[str, Any]] | None = Field(
        default=None,
        description="Gateway extension: vendor-native fields, as on POST /v1/generate.",
    )


class ImagesGenerateRequest(Shared):
    """The JSON body of ``POST /v1/images/generations`` (OpenAI's CreateImageRequest)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra=lambda schema: _accepted_only(schema, _GENERATE_CAPS, _GENERATE_EXAMPLE),
    )

    prompt: str = Field(
        description="What to draw; not blank, at most 32768 characters (the model narrows it).",
        examples=["a lighthouse at dusk"],
        json_schema_extra={"minLength": 1, "maxLength": 32768},
    )
    n: int | None = Field(
        default=None,
        ge=1,
        le=10,
        description="1..8 (OpenAI's 9 and 10 are refused); the model narrows it.",
    )
    size: str | None = Field(
        default=None,
        pattern=r"^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4})$",
        description="`WIDTHxHEIGHT` (the model's limits decide) or `auto` (the model's default).",
        examples=["1024x1024"],
    )
    output_format: Literal["png", "jpeg", "webp", "gif", "svg"] | None = Field(  # type: ignore[assignment]
        default=None,
        description="png (OpenAI's default), jpeg or webp; the chosen model must offer it. "
        "gif and svg: 400.",
    )
    quality: Literal["standard", "hd", "low", "medium", "high", "xhigh", "max", "auto"] | None = (
        Field(
            default=None,
            description="`auto` or `standard` (the model's one quality level); others 400.",
        )
    )
    complexity: Literal["low", "medium", "high"] | None = Field(
        default=None, description="Refused: no gateway model takes a planning effort."
    )
    frame_count: int | None = Field(default=None, description="Refused: no GIF output.")
    frame_duration_ms: int | None = Field(default=None, description="Refused: no GIF output.")
    svg: dict[str, Any] | None = Field(default=None, description="Refused: no SVG output.")
    background: Literal["transparent", "opaque", "auto"] | None = Field(
        default=None, description="`auto` only; the gateway's models offer no choice."
    )
    moderation: Literal["low", "auto"] | None = Field(
        default=None, description="`auto` only: the vendor's own moderation applies."
    )
    style: Literal["vivid", "natural"] | None = Field(
        default=None, description="Refused: no gateway model has a style switch."
    )
    stream: bool | None = Field(default=None, description="`false` only: no streaming.")
    partial_images: int | None = Field(
        default=None, ge=0, le=3, description="`0` only: no streaming."
    )
    negative_prompt: str | None = Field(
        default=None, description="Gateway extension; at most 32768 characters."
    )
    seed: int | None = Field(
        default=None, description="Gateway extension: a 64-bit seed; the model narrows it."
    )


class ImagesUpscaleParams(Shared):
    """The form fields of ``POST /v1/images/upscale`` other than the image."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra=lambda schema: _accepted_only(schema, _UPSCALE_CAPS, None),
    )

    scale: float | None = Field(default=None, ge=1, le=8, description="Upscale factor.")
    size: str | None = Field(
        default=None,
        pattern=_SIZE,
        description="Target `WIDTHxHEIGHT` instead of `scale`; it must keep the aspect ratio.",
        examples=["2048x1536"],
    )
    prompt: str | None = Field(
        default=None, description="Optional guidance, at most 32768 characters."
    )
    creativity: float | None = Field(default=None, ge=0, le=1, description="0..1 drift.")
    n: int | None = Field(default=None, ge=1, le=1, description="1 only.")


class ImagesUpscaleForm(ImagesUpscaleParams):
    """The multipart body of ``POST /v1/images/upscale``."""

    image: bytes = Field(json_schema_extra={"format": "binary"}, description="The image file.")
    options: str | None = Field(default=None, description="JSON string; see POST /v1/upscale.")  # type: ignore[assignment]


#: OpenAI fields with values no gateway model honours: accepted values, and why not others.
_ONLY: dict[str, tuple[tuple[Any, ...], str]] = {
    "output_format": (("png", "jpeg", "webp"), "the gateway's models produce png, jpeg or webp"),
    "quality": (("auto", "standard"), "the gateway's models have one quality level"),
    "complexity": ((), "no gateway model takes a planning effort"),
    "frame_count": ((), "the gateway's models produce no GIF"),
    "frame_duration_ms": ((), "the gateway's models produce no GIF"),
    "svg": ((), "the gateway's models produce no SVG"),
    "background": (("auto",), "the gateway's models choose no background"),
    "moderation": (("auto",), "the vendor's own moderation applies and cannot be lowered"),
    "style": ((), "no gateway model has a style switch"),
    "stream": ((False,), "streaming is not offered; the answer comes whole"),
    "partial_images": ((0,), "partial images need streaming, which is not offered"),
}


_GENERATE_EXAMPLE: dict[str, Any] = {
    "model": "venice-sd35",
    "prompt": "a lighthouse at dusk",
    "n": 1,
}
#: The normalized operations' limits (app/schemas.py), which refuse more than OpenAI's
#: fields do: the spec says them (on the field's non-null variant).
_GENERATE_CAPS: dict[str, dict[str, Any]] = {
    "n": {"maximum": 8},
    "seed": {"format": "int64", "minimum": -(2**63), "maximum": 2**63 - 1},
    "negative_prompt": {"maxLength": 32768},
}
_UPSCALE_CAPS: dict[str, dict[str, Any]] = {"prompt": {"maxLength": 32768}}


def _accepted_only(
    schema: dict[str, Any], caps: dict[str, dict[str, Any]], example: dict[str, Any] | None
) -> None:
    """The spec lists the values the gateway accepts, so a generated request is not
    refused: a field no gateway model honours is left out (an unknown field is 400, as the
    refusal is), one with some honoured values lists only those, and n and seed have the
    normalized caps. Only the schema changes: the model keeps OpenAI's wider fields, so
    that a refusal names the field and why (``refuse_unhonoured``)."""
    props = schema.get("properties", {})
    for name, (accepted, _) in _ONLY.items():
        if name not in props:
            continue
        if not accepted:
            del props[name]
            continue
        variant = props[name]["anyOf"][0]
        if variant["type"] == "integer":
            variant.update(minimum=min(accepted), maximum=max(accepted))
        else:
            variant["enum"] = list(accepted)
    for name, cap in caps.items():
        props[name]["anyOf"][0].update(cap)
    if example is not None:
        schema["examples"] = [example]


def parse_request(model: type[M], fields: dict[str, Any]) -> M:
    """``fields`` validated by ``model``; the first problem as OpenAI reports it."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise _param_error(exc) from None


def _param_error(exc: ValidationError) -> OpenAIParamError:
    first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    kind, msg = first["type"], first["msg"]
    if kind == "missing":
        message = f"Missing required parameter: '{param}'."
        return OpenAIParamError(param, message, "missing_required_parameter")
    if kind == "extra_forbidden":
        return OpenAIParamError(param, f"Unknown parameter: '{param}'.", "unknown_parameter")
    if kind.endswith(("_type", "_parsing")):
        return OpenAIParamError(param, f"Invalid type for '{param}': {msg}.", "invalid_type")
    return OpenAIParamError(param, f"Invalid value for '{param}': {msg}.", "invalid_value")


def refuse_unhonoured(request: BaseModel) -> None:
    """A 400 naming the first field whose value no gateway model can honour."""
    for name, (accepted, why) in _ONLY.items():
        value = getattr(request, name, None)
        if value is not None and value not in accepted:
            raise OpenAIParamError(
                name, f"Unsupported value for '{name}': {value!r}; {why}.", "unsupported_value"
            )


def generate_job(request: ImagesGenerateRequest, index: ModelIndex) -> GenerateJob:
    refuse_unhonoured(request)
    fields = _common_fields(request, index, Operation.GENERATE)
    fields["prompt"] = request.prompt
    if request.n is not None:
        fields["n"] = request.n
    if request.size is not None and request.size != "auto":
        fields["width"], fields["height"] = _dimensions(request.size)
    # OpenAI's output_format defaults to png; a caller who sends nothing expects png.
    fields["output"].setdefault("format", "png")
    _put(fields, negative_prompt=request.negative_prompt, seed=request.seed)
    return GenerateJob(params=intake.parse_params(GenerateParams, fields))


def upscale_job(request: ImagesUpscaleParams, image: InputImage, index: ModelIndex) -> UpscaleJob:
    refuse_unhonoured(request)
    if request.scale is not None and request.size is not None:
        raise OpenAIParamError("size", "Give 'scale' or 'size', not both.", "invalid_value")
    fields = _common_fields(request, index, Operation.UPSCALE)
    _put(fields, scale=request.scale, prompt=request.prompt, creativity=request.creativity)
    if request.size is not None:
        fields["width"] = _upscale_width(request.size, image.info)
    return UpscaleJob(params=intake.parse_params(UpscaleParams, fields), image=image)


def _common_fields(request: Shared, index: ModelIndex, operation: Operation) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if request.model is not None:
        fields["provider"], fields["model"] = index.resolve(request.model, operation)
    output: dict[str, Any] = {}
    if request.output_format is not None:
        output["format"] = request.output_format
    if request.output_compression is not None:
        if request.output_format not in ("jpeg", "webp"):
            raise OpenAIParamError(
                "output_compression",
                "'output_compression' needs output_format 'jpeg' or 'webp'.",
                "invalid_value",
            )
        output["quality"] = request.output_compression
    fields["output"] = output
    _put(fields, options=request.options)
    return fields


def _put(fields: dict[str, Any], **values: Any) -> None:
    fields.update({k: v for k, v in values.items() if v is not None})


def _dimensions(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def _upscale_width(size: str, info: ImageInfo) -> int:
    """The normalized target keeps the aspect ratio, so ``size`` must too (to the pixel)."""
    width, height = _dimensions(size)
    expected = max(1, round(info.height * width / info.width))
    if height != expected:
        raise OpenAIParamError(
            "size",
            f"Invalid value for 'size': {size} does not keep the image's aspect ratio "
            f"({info.width}x{info.height}); {width}x{expected} does.",
            "invalid_value",
        )
    return width


# --------------------------------------------------------------------------- the answer


def images_response(
    outcome: Outcome, headers: dict[str, str], urls: list[str] | None = None
) -> Response:
    """OpenAI's ImagesResponse, assembled from parts so that each image's base64 is copied
    once, into the body (as on the normalized routes); with ``urls``, those instead."""
    images = outcome.result.images
    parts = [b'{"created":', str(int(time.time())).encode(), b',"data":[']
    for index, image in enumerate(images):
        comma = b"," if index else b""
        if urls is not None:
            parts.append(comma + b'{"url":' + json.dumps(urls[index]).encode() + b"}")
            continue
        data = image.as_base64_bytes()
        metrics.IMAGE_BYTES.labels(direction="out").observe(len(data) * 3 // 4)
        parts += [comma + b'{"b64_json":"', data, b'"}']
    parts += [b"]", _facts(images), b"}"]
    if outcome.warnings:
        headers["x-image-gateway-warnings"] = json.dumps(outcome.warnings)
    return PartsResponse(parts, media_type="application/json", headers=headers)


def _facts(images: list[OutputImage]) -> bytes:
    """``output_format`` and ``size`` when every image shares them (OpenAI reports one)."""
    facts: dict[str, str] = {}
    formats = {_MIME_FORMATS.get(image.mime_type) for image in images}
    sizes = {(image.width, image.height) for image in images}
    if len(formats) == 1 and None not in formats:
        facts["output_format"] = str(formats.pop())
    if len(sizes) == 1:
        width, height = sizes.pop()
        if width and height:
            facts["size"] = f"{width}x{height}"
    return b"".join(b',"%s":%s' % (k.encode(), json.dumps(v).encode()) for k, v in facts.items())
