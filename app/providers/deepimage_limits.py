"""Deep-Image.ai limits as data (models, ranges, enums, the ``options.deepimage`` model) and
the pure mapping of a normalized request onto Deep-Image's ``ProcessPayload`` (vendors.md §3).

The tables are read by validation (``app.providers.deepimage``), ``GET /v1/providers`` and the
docs. Sources are the vendors.md sections cited next to each value.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.errors import FieldError
from app.images import ImageInfo
from app.providers.base import ModelLimits, NumberRange, Operation, check_range, target_size
from app.schemas import GenerateParams, UpscaleParams

PROVIDER = "deepimage"

#: Non-generative upscale models: the values of ``upscale_parameters.type`` (§3.3, DI-RESIZE).
UPSCALE_MODELS: tuple[str, ...] = ("v1", "text_x4")
DEFAULT_UPSCALE_MODEL = "v1"

#: ``background.generate.model_type`` values from the current DI-GEN page (§3.5).
GENERATE_MODELS: tuple[str, ...] = (
    "realistic",
    "fantasy",
    "premium",
    "gemini-3-pro-image-preview",
    "see-dream-4.5",
    "qwen",
    "flux2-klein9b",
    "z-image-turbo",
    "google-gemini-image-flash",
)
DEFAULT_GENERATE_MODEL = "realistic"

#: AI upscaling goes up to 4x the original; beyond it the vendor resizes bicubically (§3.3).
MAX_AI_FACTOR = 4.0
#: ``upscale_strength`` 1..9; lower is more creative (§3.4, S004).
UPSCALE_STRENGTH = NumberRange(min=1, max=9)
#: The normalized ``scale`` (and width/height over the input's) the gateway lets through.
UPSCALE_FACTOR = NumberRange(min=1, max=8)
#: The factor when the caller gives neither scale nor a target size.
DEFAULT_SCALE = 2.0
#: One image per job: ``ProcessResult`` carries one ``result_url`` (§3.2, §4).
ONE_IMAGE = NumberRange(min=1, max=1)
#: The long side of a generated image when the caller gives no width/height. Deep-Image
#: documents no generation size limits (§3.5, UNCONFIRMED); its examples use 2048x1024.
DEFAULT_GENERATE_SIDE = 1024
OUTPUT_FORMATS: tuple[str, ...] = ("png", "jpeg", "webp")

# Enums of §3.3 (DI-OAS) used in options.
Enhancement = Literal[
    "denoise", "deblur", "clean", "face_enhance", "light", "color", "white_balance",
    "exposure_correction",
]  # fmt: skip
ModelVersion = Literal["v1", "v2"]
LightType = Literal["contrast", "hdr_light", "hdr_light_advanced"]

STRENGTH_BANDS = {
    "strong": (1, 2, 3),  # LoRA scale 1.0
    "medium": (4, 5, 6),  # LoRA scale 0.5
    "off": (7, 8, 9),  # LoRA scale 0.0: the plain upscale_4 / bicubic / bicubic_clean path
}


def strength_for_creativity(creativity: float) -> int:
    """Map the normalized ``creativity`` (0 = stay closest to the input, 1 = drift the most)
    linearly onto ``upscale_strength`` 9..1, rounding half up: 0 -> 9, 0.5 -> 5, 1 -> 1.
    Deep-Image's dial runs the other way: lower values are more creative (§3.4)."""
    return 9 - math.floor(creativity * 8 + 0.5)


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class VersionParameters(_Options):
    type: ModelVersion = "v1"


class LightParameters(_Options):
    type: LightType | None = None
    level: float = Field(default=1, ge=0, le=1)


class LevelParameters(_Options):
    level: float = Field(default=1, ge=0, le=1)


class DeepImageOptions(_Options):
    """``options.deepimage``: Deep-Image request fields under their vendor names (§3.3)."""

    generative_upscale: bool | None = Field(
        default=None,
        strict=True,
        description="Diffusion-based upscale. Turned on by prompt, creativity or "
        "upscale_strength when absent.",
    )
    upscale_strength: int | None = Field(
        default=None,
        ge=1,
        le=9,
        strict=True,
        description="1..9, lower is more creative: 1-3 strong, 4-6 medium, 7-9 off. "
        "Wins over the normalized creativity.",
    )
    enhancements: list[Enhancement] | None = Field(default=None, max_length=8)
    denoise_parameters: VersionParameters | None = None
    deblur_parameters: VersionParameters | None = None
    light_parameters: LightParameters | None = None
    color_parameters: LightParameters | None = None
    white_balance_parameters: LevelParameters | None = None
    preset: str | None = Field(default=None, min_length=1, max_length=100)
    max_file_size: str | None = Field(
        default=None, pattern=r"^[0-9]+(\.[0-9]+)?\s*[kKmMgG][bB]$", description='e.g. "1MB"'
    )
    dpi: int | None = Field(default=None, ge=1, le=10000, strict=True)


_UPSCALE_RULES = (
    "scale (or width/height over the input's) must be >= 1 and <= 8; 2 when none is given",
    "AI upscaling goes up to 4x; beyond 4x Deep-Image resizes bicubically (a warning says so)",
    "generative upscale: upscale_strength 1..9, lower is more creative "
    "(1-3 strong, 4-6 medium, 7-9 off)",
    "creativity c maps to upscale_strength 9 - round(8c); options.deepimage.upscale_strength wins",
    "prompt, creativity or upscale_strength turn generative_upscale on; "
    "they are refused with generative_upscale false",
    "a prompt gives a prompt-guided upscale (background.generate, adapter_type upscale)",
    "input and output size limits are not documented; the vendor's over-limit 400 becomes 422",
)

_GENERATE_RULES = (
    "one image per job (n must be 1)",
    "seed is sent as background.generate.sample_num",
    f"without width/height the long side is {DEFAULT_GENERATE_SIDE} px "
    "(square, or shaped by aspect_ratio)",
    "with only one of width/height the image is square",
)


def _upscale_limits(model: str) -> ModelLimits:
    return ModelLimits(
        model=model,
        operations=(Operation.UPSCALE,),
        input_formats=("png", "jpeg", "webp"),
        output_formats=OUTPUT_FORMATS,
        output_quality=True,
        scale=UPSCALE_FACTOR,
        rules=_UPSCALE_RULES,
    )


def _generate_limits(model: str) -> ModelLimits:
    return ModelLimits(
        model=model,
        operations=(Operation.GENERATE,),
        output_formats=OUTPUT_FORMATS,
        output_quality=True,
        size_targets=True,
        prompt_required=True,
        negative_prompt=True,
        n=ONE_IMAGE,
        rules=_GENERATE_RULES,
    )


LIMITS: tuple[ModelLimits, ...] = (
    *(_upscale_limits(m) for m in UPSCALE_MODELS),
    *(_generate_limits(m) for m in GENERATE_MODELS),
)

#: Options that are the caller's own Deep-Image fields, sent as given.
_PASSTHROUGH = frozenset(DeepImageOptions.model_fields) - {"generative_upscale", "upscale_strength"}


# --------------------------------------------------------------------------- request mapping (pure)


def output_of(params: UpscaleParams | GenerateParams) -> tuple[str | None, int | None]:
    out = params.output
    return (out.format, out.quality) if out is not None else (None, None)


def target_loc(params: UpscaleParams) -> str:
    if params.width is not None:
        return "width"
    return "height" if params.height is not None else "scale"


def prompt_of(params: UpscaleParams) -> str | None:
    return params.prompt if params.prompt and params.prompt.strip() else None


def strength_of(params: UpscaleParams, options: DeepImageOptions) -> int | None:
    """``options.deepimage.upscale_strength`` wins over the normalized ``creativity``."""
    if options.upscale_strength is not None:
        return options.upscale_strength
    return strength_for_creativity(params.creativity) if params.creativity is not None else None


def check_factor(params: UpscaleParams, info: ImageInfo, limits: ModelLimits) -> list[FieldError]:
    """The upscale factor, from ``scale`` or a target side over the input's side."""
    loc = target_loc(params)
    if loc == "scale":
        name, factor = "scale", params.scale if params.scale is not None else DEFAULT_SCALE
    elif loc == "width":
        name, factor = "width / input width", (params.width or 0) / info.width
    else:
        name, factor = "height / input height", (params.height or 0) / info.height
    error = check_range(PROVIDER, name, factor, limits.scale, (loc,))
    return [error] if error else []


def check_generative(params: UpscaleParams, options: DeepImageOptions) -> list[FieldError]:
    """Strength and prompt only act on a generative upscale (§3.3, §3.4, S004)."""
    if options.generative_upscale is not False:
        return []
    rule = "deepimage: prompt, creativity and upscale_strength need generative_upscale"
    given = [
        loc
        for loc, value in (
            (("prompt",), prompt_of(params)),
            (("creativity",), params.creativity),
            (("options", PROVIDER, "upscale_strength"), options.upscale_strength),
        )
        if value is not None
    ]
    return [FieldError(loc, "needs generative_upscale true", rule) for loc in given]


def upscale_payload(
    params: UpscaleParams, options: DeepImageOptions, model: str, info: ImageInfo
) -> dict[str, Any]:
    width, height, _ = target_size(params, info, DEFAULT_SCALE)
    # One side only: Deep-Image keeps the aspect ratio (§3.3), so no canvas padding appears.
    payload: dict[str, Any] = {"height": height} if params.height is not None else {"width": width}
    strength, prompt = strength_of(params, options), prompt_of(params)
    generative = options.generative_upscale
    if generative is None:
        generative = strength is not None or prompt is not None
    payload["generative_upscale"] = generative  # always explicit: the default is UNCONFIRMED
    if generative and strength is not None:
        payload["upscale_strength"] = strength
    if prompt is not None:  # S004: prompt-guided generative upscale
        payload["background"] = {"generate": {"adapter_type": "upscale", "description": prompt}}
    if model != DEFAULT_UPSCALE_MODEL:
        payload["upscale_parameters"] = {"type": model}
    return _finish(payload, params, options)


def generate_payload(
    params: GenerateParams, options: DeepImageOptions, model: str
) -> dict[str, Any]:
    """§3.5: no ``url``, a target width and height, and ``background.generate``."""
    width, height = generate_size(params)
    generate: dict[str, Any] = {"description": params.prompt, "model_type": model}
    if params.negative_prompt:
        generate["negative_prompt"] = params.negative_prompt
    if params.seed is not None:
        generate["sample_num"] = params.seed
    payload: dict[str, Any] = {
        "width": width,
        "height": height,
        "background": {"generate": generate},
    }
    if options.generative_upscale is not None:  # DI-GEN: a diffusion upscale to the size
        payload["generative_upscale"] = options.generative_upscale
    if options.upscale_strength is not None:
        payload["upscale_strength"] = options.upscale_strength
    return _finish(payload, params, options)


def _finish(
    payload: dict[str, Any], params: UpscaleParams | GenerateParams, options: DeepImageOptions
) -> dict[str, Any]:
    out_format, quality = output_of(params)
    if out_format is not None:
        payload["output_format"] = out_format
    if quality is not None:
        payload["quality"] = quality
    payload.update(options.model_dump(include=set(_PASSTHROUGH), exclude_none=True))
    return payload


def generate_size(params: GenerateParams) -> tuple[int, int]:
    """Width and height to generate: as given (square when only one side is given), else
    ``DEFAULT_GENERATE_SIDE`` on the long side shaped by ``aspect_ratio`` (multiples of 8)."""
    if params.width is not None or params.height is not None:
        return params.width or params.height or 0, params.height or params.width or 0
    if params.aspect_ratio is None:
        return DEFAULT_GENERATE_SIDE, DEFAULT_GENERATE_SIDE
    across, down = (int(part) for part in params.aspect_ratio.split(":"))
    short = max(8, round(DEFAULT_GENERATE_SIDE * min(across, down) / max(across, down) / 8) * 8)
    return (DEFAULT_GENERATE_SIDE, short) if across >= down else (short, DEFAULT_GENERATE_SIDE)


def factor_warnings(factor: float) -> list[str]:
    if factor <= MAX_AI_FACTOR:
        return []
    return [
        f"deepimage: AI upscaling goes up to {MAX_AI_FACTOR:g}x; Deep-Image resizes the rest "
        f"of the way to {factor:g}x bicubically"
    ]
