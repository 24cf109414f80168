"""Vertex AI Imagen: the per-model limits table, the ``options.vertex`` model, and the pure
checks of a job against them (``check_*``), which ``VertexProvider.prepare`` runs.

Every number here comes from ``vendors.md`` §1.2-§1.5 (the seeds S000/S001 for the models they
list, V-I4/V-RES/V-UPAPI for Imagen 4). Validation, ``GET /v1/providers`` and the docs read
this one table. Where the reference marks a fact UNCONFIRMED the table takes the side that
never sends a request the vendor is documented to refuse, and says so in ``rules``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from app.errors import FieldError
from app.images import ImageInfo
from app.providers.base import ModelLimits, NumberRange, Operation, check_choice, check_range
from app.schemas import GenerateParams, OutputOptions, UpscaleParams

PROVIDER = "vertex"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)

#: The prompt limit is in tokens and the service's tokenizer is UNCONFIRMED (§1.3), so the
#: gateway cannot count tokens exactly. It refuses only prompts that *certainly* exceed the
#: limit: SentencePiece vocabularies (the default ``max_sentencepiece_length``) have no piece
#: longer than 16 characters, so more than 16 characters per allowed token cannot fit.
#: Shorter prompts that still exceed the limit are left to the service (its 400 maps to 422).
CHARS_PER_TOKEN_BOUND = 16

#: "Size limit: 10 MB" is on the base64 string (S000; §1.5, §1.8, §4). 10 MiB of base64 holds
#: 7,864,320 bytes of image, which is the limit the gateway checks on the decoded bytes.
MAX_INPUT_BASE64_CHARS = 10 * 1024 * 1024
MAX_INPUT_BYTES = MAX_INPUT_BASE64_CHARS // 4 * 3

#: imagen-4.0-upscale-preview: "maximum output resolution 17 megapixels" (V-UP4). The exact
#: threshold is UNCONFIRMED (§1.5); the documented figure is used as written.
UPSCALE_4_MAX_OUTPUT_PIXELS = 17_000_000

ASPECT_RATIOS = ("1:1", "9:16", "16:9", "3:4", "4:3")
IMAGEN_2_3_SIZES = ("64", "256", "512", "1024", "2048", "4096")  # §1.4 sampleImageSize
SEED_RANGE = NumberRange(min=1, max=2_147_483_647)  # §1.4: "1 - 2147483647" (S001 guide)

#: Imagen 4 output sizes per sampleImageSize and aspect ratio (V-RES, §1.2).
IMAGEN_4_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "1K": {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896),
           "9:16": (768, 1408), "16:9": (1408, 768)},
    "2K": {"1:1": (2048, 2048), "3:4": (1792, 2560), "4:3": (2560, 1792),
           "9:16": (1536, 2816), "16:9": (2816, 1536)},
}  # fmt: skip


class VertexModelLimits(ModelLimits):
    """A row of the Vertex table: the shared limits plus Imagen's per-model switches."""

    #: ``addWatermark`` when the caller does not set it (§1.4); ``seed`` needs it false.
    watermark_default: bool = True
    #: ``enhancePrompt`` default; ``None`` where the reference leaves it UNCONFIRMED.
    enhance_prompt_default: bool | None = None
    #: ``sampleImageSize`` values this model accepts (generate).
    sample_image_sizes: tuple[str, ...] = ()
    #: Output sizes by sampleImageSize and aspect ratio, where documented (Imagen 4).
    output_sizes: dict[str, dict[str, tuple[int, int]]] = Field(default_factory=dict)
    #: Which ``options.vertex`` fields the model takes, per operation.
    generate_options: tuple[str, ...] = ()
    upscale_options: tuple[str, ...] = ()
    #: The upscale request shape of §1.5: "legacy" (A) or "imagen4" (B).
    upscale_shape: Literal["legacy", "imagen4"] | None = None

    def options_for(self, operation: Operation) -> tuple[str, ...]:
        return self.generate_options if operation is Operation.GENERATE else self.upscale_options


_COMMON_GENERATE = ("addWatermark", "outputOptions", "includeRaiReason",
                    "includeSafetyAttributes", "storageUri", "labels")  # fmt: skip
_SAFETY = ("personGeneration", "safetySetting")  # S001: 3.0-*, @006 (and Imagen 4, V-APINEW)


def _generate_row(model: str, tokens: int, **values: Any) -> VertexModelLimits:
    base: dict[str, Any] = {
        "model": model,
        "operations": (Operation.GENERATE,),
        "output_formats": ("png", "jpeg"),
        "output_quality": True,
        "prompt_required": True,
        "prompt_max_tokens": tokens,
        "prompt_max_chars": tokens * CHARS_PER_TOKEN_BOUND,
        "n": NumberRange(min=1, max=4),
        "aspect_ratios": ASPECT_RATIOS,
        "seed": SEED_RANGE,
    }
    base.update(values)
    rules = [
        f"prompt <= {tokens} tokens (the gateway refuses > {tokens * CHARS_PER_TOKEN_BOUND} "
        "characters; the service counts tokens)",
        "seed needs addWatermark=false"
        + (" (the default here is true)" if base.get("watermark_default", True) else " (default)"),
        "output.quality applies to jpeg only (outputOptions.compressionQuality)",
        *base.pop("extra_rules", ()),
    ]
    base["rules"] = tuple(rules)
    return VertexModelLimits(**base)


def _imagen_4(model: str, sizes: tuple[str, ...], *extra_rules: str) -> VertexModelLimits:
    size_option = ("sampleImageSize",) if len(sizes) > 1 else ()
    return _generate_row(
        model, 480,
        # negativePrompt on Imagen 4 is UNCONFIRMED (§1.4, §5.3); refused rather than ignored.
        negative_prompt=False,
        sample_image_sizes=sizes if len(sizes) > 1 else (),
        output_sizes={size: IMAGEN_4_SIZES[size] for size in sizes},
        generate_options=(*_COMMON_GENERATE, *_SAFETY, "enhancePrompt", "language", *size_option),
        extra_rules=(
            "negative_prompt is not accepted (unconfirmed on Imagen 4)",
            f"width/height must be one of the documented sizes for {list(sizes)}",
            *extra_rules,
        ),
    )  # fmt: skip


_UPSCALE_LEGACY_RULES = (
    "upscale: scale 2 or 4 (upscaleConfig.upscaleFactor x2/x4; default 2); width/height only "
    "when equal to the input size times 2 or 4",
    "upscale: input <= 10 MB as base64 (7864320 bytes)",
    "upscale: no prompt or creativity",
)

LIMITS: tuple[VertexModelLimits, ...] = (
    _imagen_4("imagen-4.0-generate-001", ("1K", "2K")),
    _imagen_4("imagen-4.0-ultra-generate-001", ("1K", "2K")),
    _imagen_4(
        "imagen-4.0-fast-generate-001",
        ("1K",),
        "complex prompts with enhancePrompt can give bad results: set it to false",
    ),
    _generate_row(
        "imagen-3.0-generate-002",
        480,
        negative_prompt=False,  # S001: "doesn't support this field"
        enhance_prompt_default=True,
        sample_image_sizes=IMAGEN_2_3_SIZES,
        generate_options=(*_COMMON_GENERATE, *_SAFETY, "enhancePrompt", "sampleImageSize"),
        extra_rules=("negative_prompt is not supported", "enhancePrompt defaults to true"),
    ),
    _generate_row(
        "imagen-3.0-generate-001",
        480,
        sample_image_sizes=IMAGEN_2_3_SIZES,
        generate_options=(*_COMMON_GENERATE, *_SAFETY, "language", "sampleImageSize"),
    ),
    _generate_row(
        "imagen-3.0-fast-generate-001",
        480,
        sample_image_sizes=IMAGEN_2_3_SIZES,
        generate_options=(*_COMMON_GENERATE, *_SAFETY, "sampleImageSize"),
    ),
    _generate_row(
        "imagegeneration@006",
        128,
        sample_image_sizes=IMAGEN_2_3_SIZES,
        generate_options=(*_COMMON_GENERATE, *_SAFETY, "language", "sampleImageSize"),
    ),
    _generate_row(
        "imagegeneration@005",
        128,
        aspect_ratios=("1:1", "9:16"),
        watermark_default=False,
        sample_image_sizes=IMAGEN_2_3_SIZES,
        generate_options=(*_COMMON_GENERATE, "sampleImageSize"),
    ),
    _generate_row(
        "imagegeneration@002",
        64,
        operations=(Operation.GENERATE, Operation.UPSCALE),
        n=NumberRange(min=1, max=8),
        aspect_ratios=("1:1",),
        watermark_default=False,
        generate_options=(*_COMMON_GENERATE, "sampleImageStyle"),
        # Upscale, request shape A of §1.5 (S000): x2/x4, 10 MB input, no documented pixel cap.
        upscale_shape="legacy",
        scale_factors=(2.0, 4.0),
        max_input_bytes=MAX_INPUT_BYTES,
        upscale_options=("outputOptions", "storageUri", "labels"),
        extra_rules=("sampleImageStyle is accepted (this model only)", *_UPSCALE_LEGACY_RULES),
    ),
    VertexModelLimits(
        # Request shape B of §1.5 (V-UPAPI, V-UP4).
        model="imagen-4.0-upscale-preview",
        operations=(Operation.UPSCALE,),
        upscale_shape="imagen4",
        input_formats=("png", "jpeg"),
        max_input_bytes=MAX_INPUT_BYTES,
        max_output_pixels=UPSCALE_4_MAX_OUTPUT_PIXELS,
        output_formats=("png", "jpeg"),
        output_quality=True,
        scale_factors=(2.0, 3.0, 4.0),
        watermark_default=True,
        upscale_options=(
            "addWatermark",
            "outputOptions",
            "storageUri",
            "enhanceInputImage",
            "imagePreservationFactor",
            "includeRaiReason",
            "labels",
            *_SAFETY,
        ),
        rules=(
            "upscale: scale 2, 3 or 4 (upscaleConfig.upscaleFactor x2/x3/x4; default 2); "
            "width/height only when equal to the input size times 2, 3 or 4",
            f"upscale: output <= {UPSCALE_4_MAX_OUTPUT_PIXELS} px (17 MP)",
            "upscale: input png or jpeg, <= 10 MB as base64 (7864320 bytes)",
            "upscale: no prompt or creativity",
            "output.quality applies to jpeg only (outputOptions.compressionQuality)",
        ),
    ),
)

LIMITS_BY_MODEL = {row.model: row for row in LIMITS}


# --------------------------------------------------------------------------- options.vertex


def _lower(value: object) -> object:
    """The server matches these enums case-insensitively (§1.4, §1.8); send them lowercase."""
    return value.lower() if isinstance(value, str) else value


def _size(value: object) -> object:
    """sampleImageSize "1K"/"2K" is case-insensitive (V-RES); sent uppercase."""
    return value.upper() if isinstance(value, str) else value


PersonGeneration = Annotated[
    Literal["dont_allow", "allow_adult", "allow_all"], BeforeValidator(_lower)
]
SafetySetting = Annotated[
    Literal["block_low_and_above", "block_medium_and_above", "block_only_high", "block_none",
            "block_most", "block_some", "block_few", "block_fewest"],
    BeforeValidator(_lower),
]  # fmt: skip
Language = Literal["auto", "en", "es", "hi", "ja", "ko", "pt", "zh", "zh-CN", "zh-TW"]
SampleImageStyle = Literal[
    "photograph", "digital_art", "landscape", "sketch", "watercolor", "cyberpunk", "pop_art"
]


class VertexOutputOptions(BaseModel):
    """``parameters.outputOptions`` (§1.4)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mimeType: Literal["image/png", "image/jpeg"] | None = None
    compressionQuality: int | None = Field(default=None, ge=0, le=100)


class VertexOptions(BaseModel):
    """``options.vertex``: vendor-native ``parameters`` fields, with Google's names.

    Which fields a model takes is in its ``VertexModelLimits`` row; this model checks types,
    ranges and enums only.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    addWatermark: bool | None = None
    enhancePrompt: bool | None = None
    personGeneration: PersonGeneration | None = None
    safetySetting: SafetySetting | None = None
    language: Language | None = None
    sampleImageSize: Annotated[str, BeforeValidator(_size)] | None = None
    sampleImageStyle: SampleImageStyle | None = None
    outputOptions: VertexOutputOptions | None = None
    includeRaiReason: bool | None = None
    includeSafetyAttributes: bool | None = None
    storageUri: str | None = Field(default=None, pattern=r"^gs://[^/]+")
    enhanceInputImage: bool | None = None
    imagePreservationFactor: float | None = Field(default=None, ge=0, le=1)
    #: Sent as the top-level ``labels`` key, a sibling of ``parameters`` (§1.4, GENAI L1866).
    labels: dict[str, str] | None = None

    def given(self) -> list[str]:
        """The names of the fields the caller set."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


# --------------------------------------------------------------------------- validation
# Pure checks of one job against its model's row; each returns the broken rules.


def check_options(
    limits: VertexModelLimits, operation: Operation, options: VertexOptions
) -> list[FieldError]:
    allowed = limits.options_for(operation)
    errors = [
        FieldError(
            ("options", PROVIDER, name),
            f"{name} is not accepted here",
            f"vertex: options.vertex.{name} is not supported by {limits.model} for {operation}",
        )
        for name in options.given()
        if name not in allowed
    ]
    if options.sampleImageSize is not None and "sampleImageSize" in allowed:
        bad = check_choice(
            PROVIDER,
            "options.vertex.sampleImageSize",
            options.sampleImageSize,
            limits.sample_image_sizes,
            ("options", PROVIDER, "sampleImageSize"),
        )
        errors += [bad] if bad else []
    return errors


def check_output(
    limits: VertexModelLimits, output: OutputOptions | None, native: VertexOutputOptions | None
) -> list[FieldError]:
    if output is not None and native is not None:
        return [
            FieldError(
                ("output",),
                "output and options.vertex.outputOptions both given",
                "vertex: give output or options.vertex.outputOptions, not both",
            )
        ]
    loc: tuple[str, ...]
    if native is not None:
        fmt = "jpeg" if native.mimeType == "image/jpeg" else "png"
        quality, loc = native.compressionQuality, ("options", PROVIDER, "outputOptions")
    else:
        fmt = (output.format if output else None) or "png"  # Vertex answers png by default
        quality, loc = (output.quality if output else None), ("output",)
    errors: list[FieldError] = []
    bad_format = check_choice(
        PROVIDER, "output.format", fmt, limits.output_formats, ("output", "format")
    )
    errors += [bad_format] if bad_format else []
    if quality is not None and fmt != "jpeg":
        errors.append(
            FieldError(
                (*loc, "quality"),
                "quality applies to jpeg output only",
                "vertex: output.quality (compressionQuality) applies to jpeg only",
            )
        )
    return errors


def _check_text(limits: VertexModelLimits, name: str, text: str) -> list[FieldError]:
    """The token limit, checked conservatively on characters (see CHARS_PER_TOKEN_BOUND)."""
    if limits.prompt_max_chars is None or len(text) <= limits.prompt_max_chars:
        return []
    rule = (
        f"vertex: {name} must be <= {limits.prompt_max_tokens} tokens on {limits.model} "
        f"(refused above {limits.prompt_max_chars} characters)"
    )
    return [FieldError((name,), f"{name} has {len(text)} characters", rule)]


def check_generate(
    limits: VertexModelLimits, params: GenerateParams, options: VertexOptions
) -> list[FieldError]:
    errors = _check_text(limits, "prompt", params.prompt)
    if params.negative_prompt is not None and not limits.negative_prompt:
        errors.append(
            FieldError(
                ("negative_prompt",),
                "negative_prompt is not supported",
                f"vertex: negative_prompt is not supported by {limits.model}",
            )
        )
    elif params.negative_prompt is not None:
        errors += _check_text(limits, "negative_prompt", params.negative_prompt)
    checks = [
        check_range(PROVIDER, "n", params.n, limits.n),
        check_choice(PROVIDER, "aspect_ratio", params.aspect_ratio, limits.aspect_ratios),
        check_range(PROVIDER, "seed", params.seed, limits.seed),
        _check_size(limits, params, options),
        _check_seed_watermark(limits, params, options),
    ]
    return errors + [error for error in checks if error is not None]


def _check_seed_watermark(
    limits: VertexModelLimits, params: GenerateParams, options: VertexOptions
) -> FieldError | None:
    """§1.4 (S001, GH-SEED): seed is refused while addWatermark is true, which it is by default
    on most models, so the caller must send addWatermark=false explicitly there."""
    watermark = (
        options.addWatermark if options.addWatermark is not None else limits.watermark_default
    )
    if params.seed is None or not watermark:
        return None
    default = "" if options.addWatermark else f" (the default on {limits.model} is true)"
    return FieldError(
        ("seed",),
        "seed is not available while the watermark is on",
        f"vertex: seed needs options.vertex.addWatermark=false{default}",
    )


def _check_size(
    limits: VertexModelLimits, params: GenerateParams, options: VertexOptions
) -> FieldError | None:
    """Imagen takes an aspect ratio, not a size: width/height must be one of the documented
    output sizes (Imagen 4, V-RES), which then become aspectRatio (+ sampleImageSize)."""
    if params.width is None and params.height is None:
        return None
    found = documented_size(limits, params.width, params.height)
    sizes = [f"{w}x{h}" for table in limits.output_sizes.values() for w, h in table.values()]
    if found is None:
        rule = (
            f"vertex: width and height must be one of {sizes}"
            if sizes
            else f"vertex: {limits.model} takes aspect_ratio, not width/height"
        )
        return FieldError(("width",), "no documented output size matches", rule)
    size_option = options.sampleImageSize
    if size_option is not None and size_option != found[1]:
        return FieldError(
            ("options", PROVIDER, "sampleImageSize"),
            "conflicts with width/height",
            f"vertex: width/height {params.width}x{params.height} is sampleImageSize {found[1]}",
        )
    return None


def documented_size(
    limits: VertexModelLimits, width: int | None, height: int | None
) -> tuple[str, str] | None:
    """(aspect ratio, sampleImageSize) of the documented output size ``width`` x ``height``."""
    for size, table in limits.output_sizes.items():
        for ratio, (w, h) in table.items():
            if (w, h) == (width, height):
                return ratio, size
    return None


def check_upscale(
    limits: VertexModelLimits, params: UpscaleParams, info: ImageInfo
) -> list[FieldError]:
    errors: list[FieldError] = []
    if params.prompt is not None:
        errors.append(
            FieldError(
                ("prompt",), "Imagen upscaling takes no prompt", "vertex: upscale takes no prompt"
            )
        )
    if params.creativity is not None:
        hint = (
            "; see options.vertex.imagePreservationFactor"
            if "imagePreservationFactor" in limits.upscale_options
            else ""
        )
        errors.append(
            FieldError(
                ("creativity",),
                "Imagen upscaling has no creativity setting",
                f"vertex: upscale takes no creativity{hint}",
            )
        )
    errors += _check_input(limits, info)
    factor = upscale_factor(limits, params, info)
    if factor is None:
        errors.append(_factor_error(limits, params, info))
    elif (
        limits.max_output_pixels is not None
        and info.pixels * factor * factor > limits.max_output_pixels
    ):
        width, height = info.width * factor, info.height * factor
        errors.append(
            FieldError(
                ("scale",),
                f"output would be {width}x{height} px",
                f"vertex: output must be <= {limits.max_output_pixels} px (17 MP) "
                f"on {limits.model}",
            )
        )
    return errors


def _check_input(limits: VertexModelLimits, info: ImageInfo) -> list[FieldError]:
    errors: list[FieldError] = []
    bad_format = check_choice(
        PROVIDER, "input format", info.format, limits.input_formats, ("image",)
    )
    errors += [bad_format] if bad_format else []
    if limits.max_input_bytes is not None and info.size > limits.max_input_bytes:
        errors.append(
            FieldError(
                ("image",),
                f"image is {info.size} bytes",
                f"vertex: input must be <= 10 MB as base64 ({MAX_INPUT_BASE64_CHARS} "
                f"characters, {limits.max_input_bytes} bytes)",
            )
        )
    return errors


def upscale_factor(limits: VertexModelLimits, params: UpscaleParams, info: ImageInfo) -> int | None:
    """The factor of ``scale`` (default 2), or of a width/height that is exactly the input
    size times an allowed factor; ``None`` when there is no such factor."""
    allowed = [int(f) for f in limits.scale_factors or ()]
    if params.width is not None:
        return next((f for f in allowed if info.width * f == params.width), None)
    if params.height is not None:
        return next((f for f in allowed if info.height * f == params.height), None)
    scale = 2.0 if params.scale is None else params.scale
    return next((f for f in allowed if f == scale), None)


def _factor_error(limits: VertexModelLimits, params: UpscaleParams, info: ImageInfo) -> FieldError:
    allowed = [int(f) for f in limits.scale_factors or ()]
    factors = "/".join(f"x{f}" for f in allowed)
    if params.width is not None or params.height is not None:
        name, side = ("width", info.width) if params.width is not None else ("height", info.height)
        return FieldError(
            (name,),
            f"{name} is not the input {name} times {factors}",
            f"vertex: {name} must be one of {[side * f for f in allowed]} "
            f"(input {name} {side} times {factors} on {limits.model})",
        )
    return FieldError(
        ("scale",),
        f"scale {params.scale} is not available",
        f"vertex: scale must be one of {allowed} on {limits.model} (upscaleFactor {factors})",
    )
