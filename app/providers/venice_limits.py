"""Venice.ai limits as data (vendors.md §2) and the pure checks that read them: the two
upscale schemas, the generate schema, the ``options.venice`` models, the model/style
catalog that refines them, and the mapping of a normalized request onto Venice's fields.

``app.providers.venice`` does the HTTP; ``GET /v1/providers`` shows the same tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.errors import FieldError
from app.images import ImageInfo
from app.providers.base import (
    Lifecycle,
    ModelLimits,
    NumberRange,
    Operation,
    check_choice,
    check_input_image,
    check_output,
    check_range,
)
from app.schemas import GenerateParams, UpscaleParams

PROVIDER = "venice"
#: Venice's fixed upscale model; the endpoint takes no model field (VEN-SK image-edit).
UPSCALE_MODEL = "upscaler"
MIN_INPUT_PIXELS = 65_536  # §2.2a
MAX_OUTPUT_PIXELS = 16_777_216  # §2.2a: 4096 x 4096
#: §2.2a (S003) "File size must be less than 25MB"; read as MiB (UNCONFIRMED).
MAX_INPUT_BYTES = 25 * 1024 * 1024 - 1
#: JSON bodies over 35 MB get 413 (§2.6); a larger base64 image goes as multipart instead.
MAX_JSON_IMAGE_CHARS = 34_000_000
DEFAULT_SCALE = 2.0  # §2.2a, §2.2b
ENHANCE_PROMPT_MAX = 1500  # §2.2a enhancePrompt maxLength

# /image/generate (§2.3, the schema at HEAD); GET /models refines these per model.
GEN_SIZE = NumberRange(min=0, min_exclusive=True, max=1280)
GEN_SEED = NumberRange(min=-999_999_999, max=999_999_999)
GEN_VARIANTS = NumberRange(min=1, max=4)
GEN_STEPS_MAX = 50
#: prompt/negative_prompt maxLength since 2025-12-10 (1500 before): the fallback when the
#: model list is unavailable; the model's promptCharacterLimit replaces it.
GEN_PROMPT_MAX = 7500
GEN_FORMATS = ("jpeg", "png", "webp")
GEN_DEFAULT_FORMAT = "webp"
STYLE_REFERENCE_MAX_BYTES = 8 * 1024 * 1024  # "< 8 MB"

#: A failed catalog fetch is tried again after this long (or the TTL, when shorter).
CATALOG_RETRY_S = 30.0
CATALOG_TIMEOUT_S = 5.0

Loc = tuple[str | int, ...]


def rule(loc: Loc, msg: str, limit: str) -> FieldError:
    return FieldError(loc, msg, f"{PROVIDER}: {limit}")


def opt(name: str) -> tuple[str, ...]:
    return ("options", PROVIDER, name)


# --------------------------------------------------------------------------- options.venice


class VeniceOptions(BaseModel):
    # Venice's zod schemas are strict: unknown keys and wrong JSON types are a 400 (§2.3).
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _text_boolean(value: Any) -> Any:
    # §2.2a: enhance is a boolean or the string "true"/"false" (the multipart form).
    return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value


EnhanceFlag = Annotated[bool, BeforeValidator(_text_boolean)]


class UpscaleOptions2025(VeniceOptions):
    """options.venice for upscale, seed-era schema (§2.2a). ``scale``, ``enhancePrompt`` and
    ``enhanceCreativity`` come from the normalized ``scale``, ``prompt`` and ``creativity``."""

    enhance: EnhanceFlag | None = Field(
        default=None, description="Venice's enhancer; required for scale 1."
    )
    replication: float | None = Field(default=None, ge=0, le=1, description="Keep lines/noise.")


class UpscaleOptions2026(VeniceOptions):
    """options.venice for upscale, 2026 schema (§2.2b): ``scale`` and ``creativity`` come
    from the normalized fields, so no vendor-only field is left."""


class StyleReference(VeniceOptions):
    image: str = Field(min_length=1, description="Raw base64, data URI or http(s) URL; < 8 MB.")
    strength: float | None = Field(default=None, ge=0.1, le=1)


class GenerateOptions(VeniceOptions):
    """options.venice for generate (§2.3): the fields without a normalized twin."""

    steps: int | None = Field(default=None, gt=0, description="<= 50 and the model's max.")
    cfg_scale: float | None = Field(default=None, gt=0, le=20)
    style_preset: str | None = Field(default=None, min_length=1, description="GET /image/styles")
    return_binary: bool | None = Field(default=None, description="Only with n == 1.")
    safe_mode: bool | None = None
    hide_watermark: bool | None = None
    embed_exif_metadata: bool | None = None
    lora_strength: int | None = Field(default=None, ge=0, le=100)
    resolution: str | None = Field(default=None, min_length=1, description="Model resolutions.")
    enable_web_search: bool | None = None
    quality: Literal["low", "medium", "high"] | None = None
    disable_prompt_optimization_thinking: bool | None = None
    enhance_prompt: bool | None = None
    style_references: list[StyleReference] | None = Field(default=None, min_length=1)


#: Venice fields set through a normalized field, never through options.venice.
UPSCALE_NORMALIZED = {
    "image": "image",
    "scale": "scale",
    "enhancePrompt": "prompt",
    "enhanceCreativity": "creativity",
    "creativity": "creativity",
}
GENERATE_NORMALIZED = {
    "model": "model",
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "width": "width",
    "height": "height",
    "seed": "seed",
    "variants": "n",
    "aspect_ratio": "aspect_ratio",
    "format": "output.format",
}
#: Where a Venice field lives in the normalized request (for DetailedError locations).
VENDOR_LOCS: dict[str, Loc] = {
    name: tuple(target.split("."))
    for name, target in {**UPSCALE_NORMALIZED, **GENERATE_NORMALIZED}.items()
}


# --------------------------------------------------------------------------- upscale schemas


@dataclass(frozen=True)
class UpscaleSchema:
    version: Literal["2025", "2026"]
    limits: ModelLimits
    options_model: type[VeniceOptions]
    creativity_field: str
    creativity: NumberRange
    #: The Venice field the normalized prompt maps to; None when the schema has none.
    prompt_field: str | None
    #: 2025 lowers only a scale of 4 to fit; 2026 lowers any scale (§2.2a, §2.2b).
    lowers_any_scale: bool
    min_side: int | None


_UPSCALE = ModelLimits(
    model=UPSCALE_MODEL,
    operations=(Operation.UPSCALE,),
    max_input_bytes=MAX_INPUT_BYTES,
    min_input_pixels=MIN_INPUT_PIXELS,
    max_output_pixels=MAX_OUTPUT_PIXELS,
    output_formats=("png",),
    size_targets=False,
)
_RULES_2025 = (
    "scale 1 requires options.venice.enhance=true; enhance=false requires scale > 1",
    "prompt -> enhancePrompt (<= 1500 chars); creativity -> enhanceCreativity (0..1)",
    "a prompt or creativity turns the enhancer on unless options.venice.enhance is set",
    "input >= 65536 px and < 25 MB; output <= 16777216 px; png out",
    "scale 4 is lowered to fit 16777216 px (see warnings); other scales must fit",
)
_RULES_2026 = (
    "scale 2..4; creativity 0..0.02; no prompt (enhance fields ignored since 2026-07-09)",
    "input >= 65536 px, >= 64 px per side, < 25 MB; output <= 16777216 px; png out",
    "any scale is lowered to fit 16777216 px (see warnings); refused if no upscale fits",
)

UPSCALE_SCHEMAS = {
    "2025": UpscaleSchema(
        version="2025",
        limits=_UPSCALE.model_copy(
            update={"scale": NumberRange(min=1, max=4), "rules": _RULES_2025}
        ),
        options_model=UpscaleOptions2025,
        creativity_field="enhanceCreativity",
        creativity=NumberRange(min=0, max=1),
        prompt_field="enhancePrompt",
        lowers_any_scale=False,
        min_side=None,
    ),
    "2026": UpscaleSchema(
        version="2026",
        limits=_UPSCALE.model_copy(
            update={"scale": NumberRange(min=2, max=4), "rules": _RULES_2026}
        ),
        options_model=UpscaleOptions2026,
        creativity_field="creativity",
        creativity=NumberRange(min=0, max=0.02),
        prompt_field=None,
        lowers_any_scale=True,
        min_side=64,  # VEN-SK: at least 64 px per side
    ),
}


@dataclass(frozen=True)
class FittedOutput:
    width: int
    height: int
    scale: float
    lowered: bool


def fit_output(schema: UpscaleSchema, width: int, height: int, scale: float) -> FittedOutput | None:
    """The output size as Venice computes it, or None when Venice refuses the scale.

    Past the cap Venice lowers the scale "dynamically" (§2.2a: a scale of 4 only; §2.2b: any
    scale). The formula is not published; the largest scale that fits, sqrt(cap / (w*h)),
    with whole pixels rounded down, is assumed (UNCONFIRMED)."""
    pixels = width * height
    if pixels * scale * scale <= MAX_OUTPUT_PIXELS:
        return FittedOutput(math.floor(width * scale), math.floor(height * scale), scale, False)
    if scale < 4 and not schema.lowers_any_scale:
        return None
    fitted = math.sqrt(MAX_OUTPUT_PIXELS / pixels)
    if fitted <= 1:  # §2.2b: "400 if no real upscale fits"
        return None
    return FittedOutput(math.floor(width * fitted), math.floor(height * fitted), fitted, True)


@dataclass
class UpscalePlan:
    fields: dict[str, Any]  # every Venice field except image
    warnings: list[str]
    errors: list[FieldError]


def plan_upscale(
    schema: UpscaleSchema, params: UpscaleParams, info: ImageInfo, options: VeniceOptions
) -> UpscalePlan:
    """Check an upscale against ``schema`` and map it onto Venice's fields."""
    limits, out = schema.limits, params.output
    errors = check_input_image(PROVIDER, limits, info)
    errors += check_output(
        PROVIDER, limits, out.format if out else None, out.quality if out else None
    )
    errors += _upscale_field_errors(schema, params, info)
    enhance, warnings = _enhance(params, options, errors)
    scale = params.scale if params.scale is not None else DEFAULT_SCALE
    fitted = _fit(schema, info, scale, errors)
    if fitted is not None and fitted.lowered:
        warnings.append(
            f"venice lowers scale {number(scale)} to {fitted.scale:.3f} so that the output "
            f"({fitted.width}x{fitted.height}) stays within {MAX_OUTPUT_PIXELS} px"
        )
    fields: dict[str, Any] = {"scale": number(scale)}  # sent as asked: Venice lowers 4 itself
    if isinstance(options, UpscaleOptions2025):
        fields["enhance"] = enhance
        if options.replication is not None:
            fields["replication"] = options.replication
    if schema.prompt_field is not None and params.prompt is not None:
        fields[schema.prompt_field] = params.prompt
    if params.creativity is not None:
        fields[schema.creativity_field] = params.creativity
    return UpscalePlan(fields, warnings, errors)


def _upscale_field_errors(
    schema: UpscaleSchema, params: UpscaleParams, info: ImageInfo
) -> list[FieldError]:
    errors = [
        rule((name,), "venice takes a scale factor", "use scale, not a target width/height")
        for name in ("width", "height")
        if getattr(params, name) is not None
    ]
    if schema.min_side and min(info.width, info.height) < schema.min_side:
        errors.append(
            rule(
                ("image",),
                f"image is {info.width}x{info.height} px",
                f"input must be >= {schema.min_side} px on each side",
            )
        )
    prompt = params.prompt
    if prompt is not None and schema.prompt_field is None:
        errors.append(
            rule(("prompt",), "no prompt in this schema", "upscale schema 2026 has no prompt")
        )
    elif prompt is not None and len(prompt) > ENHANCE_PROMPT_MAX:
        errors.append(
            rule(
                ("prompt",),
                f"prompt has {len(prompt)} characters",
                f"prompt (enhancePrompt) must be <= {ENHANCE_PROMPT_MAX} characters",
            )
        )
    checks = [
        check_range(PROVIDER, "scale", params.scale, schema.limits.scale),
        check_range(PROVIDER, "creativity", params.creativity, schema.creativity),
    ]
    return errors + [e for e in checks if e is not None]


def _enhance(
    params: UpscaleParams, options: VeniceOptions, errors: list[FieldError]
) -> tuple[bool, list[str]]:
    """The 2025 ``enhance`` flag: explicit, or implied by a prompt or creativity (they act only
    through the enhancer). §2.2a: scale 1 requires enhance; enhance=false requires scale > 1."""
    if not isinstance(options, UpscaleOptions2025):
        return False, []
    explicit = options.enhance
    implied = params.prompt is not None or params.creativity is not None
    enhance = explicit if explicit is not None else implied
    if params.scale == 1 and explicit is False:
        errors.append(
            rule(
                opt("enhance"), "enhance=false needs scale > 1", "enhance=false requires scale > 1"
            )
        )
    elif params.scale == 1 and not enhance:
        errors.append(
            rule(
                ("scale",),
                "scale 1 only runs the enhancer",
                "scale 1 requires options.venice.enhance=true",
            )
        )
    if explicit is False and implied:
        return False, [
            "venice: prompt and creativity act only through the enhancer, which "
            "options.venice.enhance=false turns off"
        ]
    return enhance, []


def _fit(
    schema: UpscaleSchema, info: ImageInfo, scale: float, errors: list[FieldError]
) -> FittedOutput | None:
    scale_range = schema.limits.scale
    if scale_range is not None and not scale_range.contains(scale):
        return None  # reported by the range check
    fitted = fit_output(schema, info.width, info.height, scale)
    if fitted is None:
        why = "" if schema.lowers_any_scale else " (only a scale of 4 is lowered to fit)"
        errors.append(
            rule(
                ("scale",),
                f"{info.width}x{info.height} px at scale {number(scale)}",
                f"output must be <= {MAX_OUTPUT_PIXELS} px{why}",
            )
        )
    return fitted


def number(value: float) -> int | float:
    """4.0 as 4: Venice sees the same JSON number and multipart text "4"."""
    return int(value) if float(value).is_integer() else value


# --------------------------------------------------------------------------- the model catalog


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class StepLimits(_Lenient):
    default: int | None = None
    max: int | None = None


class ImageConstraints(_Lenient):
    promptCharacterLimit: int | None = None
    steps: StepLimits | None = None
    aspectRatios: list[str] | None = None
    resolutions: list[str] | None = None
    qualities: list[str] | None = None
    maxStyleReferences: int | None = None
    widthHeightDivisor: int | None = None


class Deprecation(_Lenient):
    date: str | None = None


class ModelSpec(_Lenient):
    constraints: ImageConstraints = ImageConstraints()
    deprecation: Deprecation | None = None


class ImageModel(_Lenient):
    """One entry of ``GET /models?type=image`` (§2.5): the fields validation reads."""

    id: str
    type: str = "image"
    model_spec: ModelSpec = ModelSpec()


class ModelList(_Lenient):
    data: list[ImageModel]

    def image_models(self) -> dict[str, ImageModel]:
        return {m.id: m for m in self.data if m.type == "image"}


class KeyLimit(_Lenient):
    amount: float | None = None
    type: str | None = None


class ModelRateLimits(_Lenient):
    apiModelId: str
    rateLimits: list[KeyLimit] = []


class KeyRateLimits(_Lenient):
    """``GET /api_keys/rate_limits`` ``data`` (vendors-2026 §5): the key's real limits."""

    accessPermitted: bool | None = None
    apiTier: dict[str, Any] | None = None
    balances: dict[str, float | None] | None = None
    keyExpiration: str | None = None
    nextEpochBegins: str | None = None
    rateLimits: list[ModelRateLimits] = []

    def limits(self) -> list[tuple[str, str, float]]:
        return [
            (m.apiModelId, limit.type, limit.amount)
            for m in self.rateLimits
            for limit in m.rateLimits
            if limit.type and limit.amount is not None
        ]

    def balance(self) -> dict[str, float]:
        return {k: v for k, v in (self.balances or {}).items() if v is not None}


class KeyRateLimitsAnswer(_Lenient):
    data: KeyRateLimits


class StyleList(_Lenient):
    data: list[str]


T = TypeVar("T")


@dataclass
class Cached(Generic[T]):
    """A catalog value and when it was fetched. A failed fetch keeps the last good value."""

    value: T | None = None
    checked_at: float | None = None
    ok: bool = False

    def due(self, now: float, ttl: float) -> bool:
        if self.checked_at is None:
            return True
        return now - self.checked_at >= (ttl if self.ok else min(ttl, CATALOG_RETRY_S))

    def succeeded(self, value: T, now: float) -> None:
        self.value, self.checked_at, self.ok = value, now, True

    def failed(self, now: float) -> None:
        self.checked_at, self.ok = now, False


# --------------------------------------------------------------------------- generate (§2.3)

_GENERATE_RULES = (
    "prompt, negative_prompt <= the model's promptCharacterLimit (7500 without the model list)",
    "n (variants) 1..4, and 1 with options.venice.return_binary=true",
    "width, height 1..1280; seed -999999999..999999999",
    "aspect_ratio, options.venice.resolution, .quality: from the model's constraints",
    "options.venice.steps <= 50 and the model's max; cfg_scale (0, 20]; lora_strength 0..100",
    "options.venice.style_preset from GET /image/styles; style_references strength 0.1..1",
)


def lifecycle_of(spec: ImageModel | None) -> Lifecycle:
    """A model the catalog marks ``model_spec.deprecation.date`` is deprecated (§2.5); the
    vendor calls that date the deprecation date (its removal date is not published)."""
    day = spec.model_spec.deprecation.date if spec and spec.model_spec.deprecation else None
    if not day:
        return Lifecycle()
    try:
        deprecated = date.fromisoformat(day[:10])
    except ValueError:
        return Lifecycle(status="deprecated", note=f"deprecation date {day[:40]!r}")
    return Lifecycle(
        status="deprecated", deprecated=deprecated, note="GET /models model_spec.deprecation"
    )


def generate_limits(model: str, spec: ImageModel | None) -> ModelLimits:
    """The generate row for ``model``: the schema limits, refined by its catalog entry."""
    constraints = spec.model_spec.constraints if spec else ImageConstraints()
    return ModelLimits(
        model=model,
        operations=(Operation.GENERATE,),
        lifecycle=lifecycle_of(spec),
        input_formats=(),
        output_formats=GEN_FORMATS,
        prompt_required=True,
        prompt_max_chars=constraints.promptCharacterLimit or GEN_PROMPT_MAX,
        n=GEN_VARIANTS,
        aspect_ratios=tuple(constraints.aspectRatios) if constraints.aspectRatios else None,
        width=GEN_SIZE,
        height=GEN_SIZE,
        seed=GEN_SEED,
        size_targets=False,
        rules=_GENERATE_RULES,
    )


def check_generate(
    limits: ModelLimits,
    spec: ImageModel | None,
    styles: frozenset[str] | None,
    params: GenerateParams,
    options: GenerateOptions,
) -> list[FieldError]:
    """Every generate rule; ``spec`` and ``styles`` are None when the catalog is unavailable."""
    errors = _generate_field_errors(limits, params)
    constraints = spec.model_spec.constraints if spec else ImageConstraints()
    errors += _shape_errors(constraints, params) if spec else []
    errors += _generate_option_errors(constraints, styles, options)
    if options.return_binary and params.n > 1:
        errors.append(
            rule(
                opt("return_binary"),
                "variants need a JSON answer",
                "n (variants) > 1 only without return_binary",
            )
        )
    return errors


def _generate_field_errors(limits: ModelLimits, params: GenerateParams) -> list[FieldError]:
    out = params.output
    errors = check_output(
        PROVIDER, limits, out.format if out else None, out.quality if out else None
    )
    most = limits.prompt_max_chars or GEN_PROMPT_MAX
    for name in ("prompt", "negative_prompt"):
        text = getattr(params, name)
        if text is not None and len(text) > most:
            errors.append(
                rule(
                    (name,),
                    f"{name} has {len(text)} characters",
                    f"{name} must be <= {most} characters for {limits.model}",
                )
            )
    checks = [
        check_range(PROVIDER, "n", params.n, limits.n),
        check_range(PROVIDER, "width", params.width, limits.width),
        check_range(PROVIDER, "height", params.height, limits.height),
        check_range(PROVIDER, "seed", params.seed, limits.seed),
        check_choice(PROVIDER, "aspect_ratio", params.aspect_ratio, limits.aspect_ratios),
    ]
    return errors + [e for e in checks if e is not None]


def _generate_option_errors(
    constraints: ImageConstraints, styles: frozenset[str] | None, options: GenerateOptions
) -> list[FieldError]:
    model_steps = constraints.steps.max if constraints.steps else None
    steps = NumberRange(min=1, max=min(GEN_STEPS_MAX, model_steps or GEN_STEPS_MAX))
    checks = [
        check_range(PROVIDER, "steps", options.steps, steps, opt("steps")),
        check_choice(
            PROVIDER, "resolution", options.resolution, constraints.resolutions, opt("resolution")
        ),
        check_choice(PROVIDER, "quality", options.quality, constraints.qualities, opt("quality")),
        check_choice(
            PROVIDER,
            "style_preset",
            options.style_preset,
            sorted(styles) if styles else None,
            opt("style_preset"),
        ),
    ]
    errors = [e for e in checks if e is not None]
    refs = options.style_references or []
    errors += [
        rule(
            ("options", PROVIDER, "style_references", i, "image"),
            "style reference image is too large",
            f"a style reference image must be < {STYLE_REFERENCE_MAX_BYTES} bytes",
        )
        for i, ref in enumerate(refs)
        if len(ref.image) * 3 // 4 >= STYLE_REFERENCE_MAX_BYTES  # base64 length -> bytes
    ]
    most = constraints.maxStyleReferences
    if most is not None and len(refs) > most:
        errors.append(
            rule(
                opt("style_references"),
                f"{len(refs)} style references",
                f"at most {most} style references for this model",
            )
        )
    return errors


def _shape_errors(constraints: ImageConstraints, params: GenerateParams) -> list[FieldError]:
    """A model with ``aspectRatios`` ignores width/height (VEN-SK); one without them ignores
    ``aspect_ratio`` (§2.3: not validated), which the gateway then turns into a size."""
    if constraints.aspectRatios and (params.width is not None or params.height is not None):
        return [
            rule(
                ("width",) if params.width is not None else ("height",),
                "this model takes an aspect ratio, not a size",
                f"use aspect_ratio (one of {constraints.aspectRatios}), not width/height",
            )
        ]
    divisor = constraints.widthHeightDivisor
    if (
        params.aspect_ratio
        and not constraints.aspectRatios
        and ratio_size(params.aspect_ratio, divisor) is None
    ):
        return [
            rule(
                ("aspect_ratio",),
                f"no size <= 1280 px of ratio {params.aspect_ratio}",
                f"aspect_ratio must fit width and height <= 1280 px in multiples of {divisor or 1}",
            )
        ]
    return []


def ratio_size(ratio: str, divisor: int | None) -> tuple[int, int] | None:
    """The largest width x height <= 1280 px of exactly ``ratio``, both multiples of the
    model's ``widthHeightDivisor`` (16:9 -> 1280x720)."""
    across, down = (int(p) for p in ratio.split(":"))
    step = max(1, divisor or 1)
    for k in range(int(GEN_SIZE.max or 1280) // max(across, down), 0, -1):
        width, height = across * k, down * k
        if width % step == 0 and height % step == 0:
            return width, height
    return None


def generate_body(
    params: GenerateParams,
    model: str,
    fmt: str,
    options: GenerateOptions,
    spec: ImageModel | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The /image/generate JSON body, without ``return_binary`` (execute decides it), and
    what the caller should know about how it was mapped."""
    body: dict[str, Any] = {"model": model, "prompt": params.prompt, "format": fmt}
    width, height, ratio, warnings = params.width, params.height, params.aspect_ratio, []
    constraints = spec.model_spec.constraints if spec else None
    if ratio and constraints is not None and not constraints.aspectRatios:
        size = ratio_size(ratio, constraints.widthHeightDivisor)
        assert size is not None  # _shape_errors refused it otherwise
        width, height, ratio = size[0], size[1], None
        warnings.append(
            f"venice: {model} takes width/height, so aspect_ratio {params.aspect_ratio} "
            f"was sent as {width}x{height}"
        )
    elif ratio and constraints is None:
        warnings.append(
            f"venice: the model list is unavailable, so aspect_ratio {ratio} was sent unchecked "
            "(models without aspect ratios ignore it)"
        )
    optional = {
        "negative_prompt": params.negative_prompt,
        "width": width,
        "height": height,
        "seed": params.seed,
        "aspect_ratio": ratio,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if params.n > 1:  # variants=1 is the default; leaving it out keeps binary answers legal
        body["variants"] = params.n
    body.update(options.model_dump(exclude_none=True, exclude={"return_binary"}))
    if params.seed is not None and params.n > 1:  # §2.3: only the first image uses seed
        warnings.append(
            f"venice: seed {params.seed} applies to the first of the {params.n} images only"
        )
    return body, warnings
