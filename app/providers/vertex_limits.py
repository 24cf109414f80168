"""Vertex AI: the per-model table (limits and lifecycle), the ``options.vertex`` model, and
the pure checks of a job against them, which ``VertexProvider.prepare`` runs.

Image generation on Vertex is the Gemini image models through ``generateContent``
(vendors-2026 §2); upscaling is ``imagen-4.0-upscale-preview`` through ``:predict``
(vendors.md §1.5 shape B, vendors-2026 §3). Every Imagen generate model and
``imagegeneration@002`` are discontinued (vendors-2026 §4): they stay in the table so that a
request naming one is refused before any call, with its replacement. Where the reference
marks a fact UNCONFIRMED the table takes the side that never sends a request the vendor is
documented to refuse, and says so in ``rules`` or ``lifecycle.note``.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.providers.base import Lifecycle, ModelLimits, NumberRange, Operation
from app.settings import GeminiModelSettings

PROVIDER = "vertex"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
DEFAULT_GENERATE = "gemini-3.1-flash-image"
DEFAULT_UPSCALE = "imagen-4.0-upscale-preview"

#: The tokenizer is not public, so only prompts that *certainly* exceed the token limit are
#: refused: no SentencePiece piece is longer than 16 characters.
CHARS_PER_TOKEN_BOUND = 16
#: "Size limit: 10 MB" is on the base64 string (S000; vendors.md §1.5): 7,864,320 bytes.
MAX_INPUT_BASE64_CHARS = 10 * 1024 * 1024
MAX_INPUT_BYTES = MAX_INPUT_BASE64_CHARS // 4 * 3
#: "maximum output resolution 17 megapixels" (V-UP4); used as written.
UPSCALE_MAX_OUTPUT_PIXELS = 17_000_000
#: ``GenerationConfig.seed`` is an int32 (P-CONTENT).
SEED_RANGE = NumberRange(min=-(2**31), max=2**31 - 1)
#: Gemini image models refuse ``candidateCount`` > 1 (§2.2), so n images are n calls, each
#: billed and each holding a bulkhead slot: at most 4 at once, as Imagen's sampleCount was.
N_RANGE = NumberRange(min=1, max=4)

# fmt: off
RATIOS_10 = ("1:1", "3:2", "2:3", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
RATIOS_31_FLASH = (*RATIOS_10, "1:4", "4:1", "1:8", "8:1", "9:21")
#: §2.4: 1K sizes of 3 Pro Image / 3.1 Flash / 2.1; 2K is 2x and 4K 4x each side.
SIZES_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200),
    "4:3": (1200, 896), "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376),
    "16:9": (1376, 768), "21:9": (1584, 672), "1:4": (512, 2048), "4:1": (2048, 512),
    "1:8": (384, 3072), "8:1": (3072, 384),
}
#: §2.4: gemini-2.5-flash-image has one size per ratio.
SIZES_25_FLASH: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
    "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
    "16:9": (1344, 768), "21:9": (1536, 672),
}
PERSON_GENERATION = ("ALLOW_ALL", "ALLOW_ADULT", "ALLOW_NONE")  # P-CONTENT, not DONT_ALLOW
THINKING_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")
HARM_CATEGORIES = (
    "HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_CIVIC_INTEGRITY", "HARM_CATEGORY_JAILBREAK",
    "HARM_CATEGORY_IMAGE_HATE", "HARM_CATEGORY_IMAGE_DANGEROUS_CONTENT",
    "HARM_CATEGORY_IMAGE_HARASSMENT", "HARM_CATEGORY_IMAGE_SEXUALLY_EXPLICIT",
)
HARM_THRESHOLDS = ("BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH",
                   "BLOCK_NONE", "OFF")
GEMINI_25_LOCATIONS = (
    "global", "us-central1", "us-east1", "us-east4", "us-east5", "us-south1", "us-west1",
    "us-west4", "europe-central2", "europe-north1", "europe-southwest1", "europe-west1",
    "europe-west4", "europe-west8",
)
# fmt: on


def scaled(table: dict[str, tuple[int, int]], factor: int) -> dict[str, tuple[int, int]]:
    return {ratio: (w * factor, h * factor) for ratio, (w, h) in table.items()}


class VertexModelLimits(ModelLimits):
    """A row of the Vertex table: the shared limits plus what Vertex decides per model."""

    #: ``generateContent`` (Gemini), ``predict`` (Imagen upscale) or ``None`` (discontinued).
    api: Literal["generateContent", "predict"] | None = None
    #: Locations that serve the model; the ``global`` host has no region prefix (§2.1).
    #: ``None``: the configured location.
    locations: tuple[str, ...] | None = None
    #: ``imageConfig.imageSize`` tiers (uppercase K); empty: send none (2.5 Flash).
    image_sizes: tuple[str, ...] = ()
    #: Output pixels by tier and ratio, where documented (§2.4); "" is the only tier.
    output_sizes: dict[str, dict[str, tuple[int, int]]] = Field(default_factory=dict)
    #: Image output tokens per image by tier (§2.2), for cost accounting.
    image_tokens: dict[str, int] = Field(default_factory=dict)
    thinking_levels: tuple[str, ...] = ()
    max_input_images: int | None = None
    max_input_image_bytes: int | None = None
    generate_options: tuple[str, ...] = ()
    upscale_options: tuple[str, ...] = ()

    def options_for(self, operation: Operation) -> tuple[str, ...]:
        return self.generate_options if operation is Operation.GENERATE else self.upscale_options

    def location_for(self, configured: str) -> str:
        """The configured location when it serves the model, else ``global`` (which serves
        every Gemini image model), else the first one listed."""
        if self.locations is None or configured in self.locations:
            return configured
        return "global" if "global" in self.locations else self.locations[0]


_GEMINI_OPTIONS = ("personGeneration", "thinkingLevel", "safetySettings", "imageSize",
                   "foldNegativePrompt", "labels")  # fmt: skip


def gemini_options(sizes: tuple[str, ...], thinking: tuple[str, ...]) -> tuple[str, ...]:
    """``options.vertex`` fields a Gemini model takes: imageSize and thinkingLevel only
    where it has them (setting a level on a model without thinking is an error, §2.3)."""
    skip = {"imageSize"} if not sizes else set()
    skip |= {"thinkingLevel"} if not thinking else set()
    return tuple(o for o in _GEMINI_OPTIONS if o not in skip)


def _gemini(
    model: str, *, lifecycle: Lifecycle, ratios: tuple[str, ...], sizes: tuple[str, ...],
    tables: dict[str, dict[str, tuple[int, int]]], tokens: dict[str, int], prompt_tokens: int,
    input_images: int, thinking: tuple[str, ...], locations: tuple[str, ...], rules: tuple[str, ...]
) -> VertexModelLimits:  # fmt: skip
    return VertexModelLimits(
        model=model,
        operations=(Operation.GENERATE,),
        lifecycle=lifecycle,
        api="generateContent",
        locations=locations,
        input_formats=("png", "jpeg", "webp") + (("heic", "heif") if input_images > 3 else ()),
        max_input_images=input_images,
        max_input_image_bytes=7 * 1024 * 1024,
        output_formats=("png", "jpeg"),
        output_quality=True,
        prompt_required=True,
        prompt_max_tokens=prompt_tokens,
        prompt_max_chars=prompt_tokens * CHARS_PER_TOKEN_BOUND,
        negative_prompt=False,
        n=N_RANGE,
        aspect_ratios=ratios,
        seed=SEED_RANGE,
        image_sizes=sizes,
        output_sizes=tables,
        image_tokens=tokens,
        thinking_levels=thinking,
        generate_options=gemini_options(sizes, thinking),
        rules=(
            "n 1..4: n images are n parallel generateContent calls (candidateCount > 1 is refused)",
            "width/height must be one of the documented sizes; they pick aspectRatio "
            "(and imageSize)",
            "negative_prompt is refused (no such field) unless "
            "options.vertex.foldNegativePrompt=true folds it into the prompt",
            "output.format png or jpeg, output.quality jpeg only (imageConfig.imageOutputOptions)",
            *rules,
        ),
    )


_GA_2026 = date(2026, 5, 28)
_3X_TABLES = {"1K": SIZES_1K, "2K": scaled(SIZES_1K, 2), "4K": scaled(SIZES_1K, 4)}

GEMINI: tuple[VertexModelLimits, ...] = (
    _gemini(
        "gemini-3.1-flash-image",
        lifecycle=Lifecycle(
            released=_GA_2026,
            note="retirement 2027-05-28 or later (V-LIFE); 4K is Preview on the GA endpoint",
        ),
        ratios=RATIOS_31_FLASH,
        sizes=("512", "1K", "2K", "4K"),
        tables=_3X_TABLES,
        tokens={"512": 747, "1K": 1120, "2K": 1680, "4K": 2520},
        prompt_tokens=131_072,
        input_images=14,
        # FB-MIG maps Imagen 4 Fast to MINIMAL and Imagen 4 to HIGH; other levels UNCONFIRMED.
        thinking=("MINIMAL", "HIGH"),
        locations=("global",),
        rules=(
            "served on the global host only",
            "imageSize 512/1K/2K/4K; the pixel sizes of 512 and of 9:21 are not documented, so "
            "width/height cannot select them",
            "thinkingLevel MINIMAL or HIGH",
        ),
    ),
    _gemini(
        "gemini-3-pro-image",
        lifecycle=Lifecycle(
            released=_GA_2026,
            note="retirement 2027-05-28 or later (V-LIFE); 4K is Preview on the GA endpoint",
        ),
        ratios=RATIOS_10,
        sizes=("1K", "2K", "4K"),
        tables={tier: {r: t[r] for r in RATIOS_10} for tier, t in _3X_TABLES.items()},
        tokens={"1K": 1120, "2K": 1120, "4K": 2000},
        prompt_tokens=65_536,
        input_images=14,
        thinking=(),  # "thinks always" (G-IMGGEN copy): no documented level to set
        # One copy of V-3PI lists US regions too, another global only: global it is.
        locations=("global",),
        rules=(
            "served on the global host (regional availability unconfirmed)",
            "imageSize 1K/2K/4K; no thinkingLevel (the model always thinks)",
        ),
    ),
    _gemini(
        "gemini-2.5-flash-image",
        lifecycle=Lifecycle(
            released=date(2025, 10, 2),
            note="Gemini Developer API shut it on 2026-10-02 (G-DEP); the Vertex retirement "
            "date is UNCONFIRMED",
        ),
        ratios=RATIOS_10,
        sizes=(),
        tables={"": SIZES_25_FLASH},
        tokens={"": 1290},
        prompt_tokens=32_768,
        input_images=3,
        thinking=(),
        locations=GEMINI_25_LOCATIONS,
        rules=("one size per ratio (1K): no imageSize is sent", "no thinkingLevel"),
    ),
)

UPSCALE = VertexModelLimits(
    # vendors.md §1.5 shape B; vendors-2026 §3 (mode "upscale" always sent).
    model=DEFAULT_UPSCALE,
    operations=(Operation.UPSCALE,),
    lifecycle=Lifecycle(
        status="preview", note="no successor or retirement date found (vendors-2026 §3)"
    ),
    api="predict",
    input_formats=("png", "jpeg"),
    max_input_bytes=MAX_INPUT_BYTES,
    max_output_pixels=UPSCALE_MAX_OUTPUT_PIXELS,
    output_formats=("png", "jpeg"),
    output_quality=True,
    scale_factors=(2.0, 3.0, 4.0),
    upscale_options=("addWatermark", "enhanceInputImage", "imagePreservationFactor", "labels"),
    rules=(
        "scale 2, 3 or 4 (upscaleConfig.upscaleFactor x2/x3/x4; default 2); width/height only "
        "when equal to the input size times 2, 3 or 4",
        f"output <= {UPSCALE_MAX_OUTPUT_PIXELS} px (17 MP)",
        "input png or jpeg, <= 10 MB as base64 (7864320 bytes)",
        "no prompt or creativity",
        "output.quality applies to jpeg only (outputOptions.compressionQuality)",
    ),
)


def _gone(
    model: str, day: date, replacement: str, source: str, op: Operation = Operation.GENERATE
) -> VertexModelLimits:
    return VertexModelLimits(
        model=model,
        operations=(op,),
        lifecycle=Lifecycle(
            status="discontinued", sunset=day, replacement=replacement, note=source
        ),
    )


_REMOVED = date(2025, 9, 24)  # V-MIG3
_IMAGEN_SHUTDOWN = date(2026, 6, 30)  # V-IMG3/V-IMG4: "update before June 30, 2026"
#: vendors-2026 §4, every id with its date and the replacement Google names.
DISCONTINUED: tuple[VertexModelLimits, ...] = (
    _gone("imagegeneration@002", _REMOVED, DEFAULT_UPSCALE, "V-MIG3", Operation.UPSCALE),
    _gone("imagegeneration@002", _REMOVED, "gemini-2.5-flash-image", "V-MIG3"),
    _gone("imagegeneration@005", _REMOVED, "gemini-2.5-flash-image", "V-MIG3"),
    _gone("imagegeneration@006", _REMOVED, "gemini-2.5-flash-image", "V-MIG3"),
    _gone("imagegeneration@003", _IMAGEN_SHUTDOWN, "gemini-2.5-flash-image", "V-IMG4"),
    _gone("imagegeneration@004", _IMAGEN_SHUTDOWN, "gemini-2.5-flash-image", "V-IMG4"),
    _gone("imagetext@001", _IMAGEN_SHUTDOWN, "gemini-2.5-flash-image", "V-IMG4"),
    *(
        _gone(m, _IMAGEN_SHUTDOWN, "gemini-2.5-flash-image", "V-IMG3")
        for m in (
            "imagen-3.0-generate-001",
            "imagen-3.0-generate-002",
            "imagen-3.0-fast-generate-001",
        )
    ),
    *(
        _gone(m, _IMAGEN_SHUTDOWN, "gemini-3.1-flash-image", "V-IMG4; FB-MIG")
        for m in (
            "imagen-3.0-capability-001",
            "imagen-3.0-capability-002",
            "imagen-4.0-fast-generate-001",
            "imagen-4.0-generate-001",
        )
    ),
    _gone("imagen-4.0-ultra-generate-001", _IMAGEN_SHUTDOWN, "gemini-3-pro-image", "FB-MIG"),
    _gone(
        "gemini-2.5-flash-image-preview",
        date(2025, 10, 31),
        "gemini-2.5-flash-image",
        "docs.gptproto.com (quotes Google)",
    ),
    _gone("gemini-3-pro-image-preview", date(2026, 7, 17), "gemini-3-pro-image", "V-3PIP"),
    _gone("gemini-3.1-flash-image-preview", date(2026, 7, 17), "gemini-3.1-flash-image", "V-31FI"),
)

LIMITS: tuple[VertexModelLimits, ...] = (*GEMINI, UPSCALE, *DISCONTINUED)


def with_extra_models(extra: list[GeminiModelSettings]) -> tuple[VertexModelLimits, ...]:
    """The table plus the operator's Gemini models (``IMAGE_GATEWAY_VERTEX__EXTRA_MODELS``):
    each starts from the built-in row it is ``like`` and overrides what it names."""
    by_id = {row.model: row for row in GEMINI}
    rows = [extra_row(by_id, spec) for spec in extra]
    added = {row.model for row in rows}
    return (*rows, *(row for row in LIMITS if row.model not in added))


def extra_row(by_id: dict[str, VertexModelLimits], spec: GeminiModelSettings) -> VertexModelLimits:
    base = by_id.get(spec.like)
    if base is None:
        raise ValueError(
            f"IMAGE_GATEWAY_VERTEX__EXTRA_MODELS: {spec.model} is like unknown model "
            f"{spec.like!r}; one of {sorted(by_id)}"
        )
    update: dict[str, Any] = {
        "model": spec.model,
        "rules": (*base.rules, f"added by configuration, starting from {base.model}"),
        "lifecycle": Lifecycle(
            status=spec.status or "ga",
            deprecated=spec.deprecated,
            sunset=spec.sunset,
            replacement=spec.replacement,
            note="added by configuration (IMAGE_GATEWAY_VERTEX__EXTRA_MODELS)",
        ),
    }
    _override(update, spec, base)
    return base.model_copy(update=update)


def _override(update: dict[str, Any], spec: GeminiModelSettings, base: VertexModelLimits) -> None:
    if spec.locations is not None:
        update["locations"] = tuple(spec.locations)
    if spec.aspect_ratios is not None:
        update["aspect_ratios"] = tuple(spec.aspect_ratios)
    if spec.image_sizes is not None:
        update["image_sizes"] = tuple(s.upper() for s in spec.image_sizes)
        tables = {t: v for t, v in base.output_sizes.items() if t in update["image_sizes"]}
        update["output_sizes"] = tables
    if spec.thinking_levels is not None:
        update["thinking_levels"] = tuple(level.upper() for level in spec.thinking_levels)
    update["generate_options"] = gemini_options(
        update.get("image_sizes", base.image_sizes),
        update.get("thinking_levels", base.thinking_levels),
    )
    if spec.max_input_images is not None:
        update["max_input_images"] = spec.max_input_images
    if spec.prompt_max_tokens is not None:
        update["prompt_max_tokens"] = spec.prompt_max_tokens
        update["prompt_max_chars"] = spec.prompt_max_tokens * CHARS_PER_TOKEN_BOUND


# --------------------------------------------------------------------------- options.vertex

Upper = Annotated[str, StringConstraints(to_upper=True)]


class SafetySetting(BaseModel):
    """One ``safetySettings`` entry (P-CONTENT; GENAI2 L407-470)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    category: Literal[HARM_CATEGORIES]  # type: ignore[valid-type]
    threshold: Literal[HARM_THRESHOLDS]  # type: ignore[valid-type]
    method: Literal["SEVERITY", "PROBABILITY"] | None = None


class VertexOptions(BaseModel):
    """``options.vertex``: vendor-native fields with Google's names. Which fields a model
    takes is in its row; this model checks types and enums only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # generate (Gemini, vendors-2026 §2.3)
    personGeneration: Literal[PERSON_GENERATION] | None = None  # type: ignore[valid-type]
    thinkingLevel: Literal[THINKING_LEVELS] | None = None  # type: ignore[valid-type]
    safetySettings: list[SafetySetting] | None = Field(default=None, min_length=1)
    imageSize: Literal["512", "1K", "2K", "4K"] | None = Field(
        default=None, description="imageConfig.imageSize (uppercase K)."
    )
    foldNegativePrompt: bool | None = Field(
        default=None,
        description="Gemini image models have no negative prompt: fold negative_prompt into "
        "the prompt as an instruction to avoid it.",
    )
    # upscale (vendors.md §1.5 B)
    addWatermark: bool | None = None
    enhanceInputImage: bool | None = None
    imagePreservationFactor: float | None = Field(default=None, ge=0, le=1)
    #: Top-level ``labels`` of either request (GENAI; P-PRED GenerateContentRequest).
    labels: dict[str, str] | None = None

    def given(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]
