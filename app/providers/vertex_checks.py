"""Pure checks of one job against its Vertex model row (``vertex_limits``); each returns the
broken rules, so that ``VertexProvider.prepare`` refuses before any call."""

from __future__ import annotations

from app.errors import FieldError
from app.images import ImageInfo
from app.providers.base import Operation, check_choice, check_range
from app.providers.vertex_limits import (
    MAX_INPUT_BASE64_CHARS,
    PROVIDER,
    VertexModelLimits,
    VertexOptions,
)
from app.schemas import GenerateParams, OutputOptions, UpscaleParams


def _error(loc: tuple[str | int, ...], msg: str, limit: str) -> FieldError:
    return FieldError(loc, msg, f"{PROVIDER}: {limit}")


def check_options(
    limits: VertexModelLimits, operation: Operation, options: VertexOptions
) -> list[FieldError]:
    allowed = limits.options_for(operation)
    errors = [
        _error(
            ("options", PROVIDER, name),
            f"{name} is not accepted here",
            f"options.vertex.{name} is not supported by {limits.model} for {operation}; "
            f"it takes {list(allowed)}",
        )
        for name in options.given()
        if name not in allowed
    ]
    checks = [
        check_choice(
            PROVIDER, "options.vertex.imageSize", options.imageSize, limits.image_sizes or None,
            ("options", PROVIDER, "imageSize"),
        ),
        check_choice(
            PROVIDER, "options.vertex.thinkingLevel", options.thinkingLevel,
            limits.thinking_levels or None, ("options", PROVIDER, "thinkingLevel"),
        ),
    ]  # fmt: skip
    allowed_set = set(allowed)
    return errors + [e for e in checks if e is not None and e.loc[-1] in allowed_set]


def check_output(limits: VertexModelLimits, output: OutputOptions | None) -> list[FieldError]:
    fmt = (output.format if output else None) or "png"
    quality = output.quality if output else None
    errors: list[FieldError] = []
    bad = check_choice(PROVIDER, "output.format", fmt, limits.output_formats, ("output", "format"))
    errors += [bad] if bad else []
    if quality is not None and fmt != "jpeg":
        errors.append(
            _error(
                ("output", "quality"),
                "quality applies to jpeg output only",
                "output.quality (compressionQuality) applies to jpeg only",
            )
        )
    return errors


def _check_text(limits: VertexModelLimits, name: str, text: str) -> list[FieldError]:
    """The token limit, checked conservatively on characters (CHARS_PER_TOKEN_BOUND)."""
    if limits.prompt_max_chars is None or len(text) <= limits.prompt_max_chars:
        return []
    return [
        _error(
            (name,),
            f"{name} has {len(text)} characters",
            f"{name} must be <= {limits.prompt_max_tokens} tokens on {limits.model} "
            f"(refused above {limits.prompt_max_chars} characters)",
        )
    ]


def check_generate(
    limits: VertexModelLimits, params: GenerateParams, options: VertexOptions
) -> list[FieldError]:
    errors = _check_text(limits, "prompt", params.prompt)
    if params.negative_prompt is not None and not options.foldNegativePrompt:
        errors.append(
            _error(
                ("negative_prompt",),
                "negative_prompt is not supported",
                f"{limits.model} has no negative prompt; send options.vertex."
                "foldNegativePrompt=true to fold it into the prompt",
            )
        )
    checks = [
        check_range(PROVIDER, "n", params.n, limits.n),
        check_choice(PROVIDER, "aspect_ratio", params.aspect_ratio, limits.aspect_ratios),
        check_range(PROVIDER, "seed", params.seed, limits.seed),
    ]
    errors += [e for e in checks if e is not None]
    return errors + size_errors(limits, params, options)


def size_errors(
    limits: VertexModelLimits, params: GenerateParams, options: VertexOptions
) -> list[FieldError]:
    """width/height must be exactly one documented output size (§2.4)."""
    if params.width is None and params.height is None:
        return []
    found = documented_size(limits, params.width, params.height)
    if found is None:
        sizes = ", ".join(f"{w}x{h}" for w, h in all_sizes(limits))
        return [
            _error(
                ("width",) if params.width is not None else ("height",),
                f"{params.width}x{params.height} is not a size {limits.model} makes",
                f"width x height must be one of {sizes} on {limits.model}",
            )
        ]
    tier = found[1]
    if options.imageSize is not None and tier and options.imageSize != tier:
        return [
            _error(
                ("options", PROVIDER, "imageSize"),
                "conflicts with width/height",
                f"{params.width}x{params.height} is imageSize {tier}, not {options.imageSize}",
            )
        ]
    return []


def all_sizes(limits: VertexModelLimits) -> list[tuple[int, int]]:
    return [size for table in limits.output_sizes.values() for size in table.values()]


def documented_size(
    limits: VertexModelLimits, width: int | None, height: int | None
) -> tuple[str, str] | None:
    """(aspect ratio, tier) of the documented output size ``width`` x ``height``."""
    for tier, table in limits.output_sizes.items():
        for ratio, size in table.items():
            if size == (width, height) and ratio in (limits.aspect_ratios or ()):
                return ratio, tier
    return None


# --------------------------------------------------------------------------- upscale


def check_upscale(
    limits: VertexModelLimits, params: UpscaleParams, info: ImageInfo
) -> list[FieldError]:
    errors: list[FieldError] = []
    if params.prompt is not None:
        errors.append(
            _error(("prompt",), "Imagen upscaling takes no prompt", "upscale takes no prompt")
        )
    if params.creativity is not None:
        errors.append(
            _error(
                ("creativity",),
                "Imagen upscaling has no creativity setting",
                "upscale takes no creativity; see options.vertex.imagePreservationFactor",
            )
        )
    errors += _check_input(limits, info)
    factor = upscale_factor(limits, params, info)
    if factor is None:
        errors.append(_factor_error(limits, params, info))
    elif (
        limits.max_output_pixels is not None and info.pixels * factor**2 > limits.max_output_pixels
    ):
        errors.append(
            _error(
                ("scale",),
                f"output would be {info.width * factor}x{info.height * factor} px",
                f"output must be <= {limits.max_output_pixels} px (17 MP) on {limits.model}",
            )
        )
    return errors


def _check_input(limits: VertexModelLimits, info: ImageInfo) -> list[FieldError]:
    errors: list[FieldError] = []
    bad = check_choice(PROVIDER, "input format", info.format, limits.input_formats, ("image",))
    errors += [bad] if bad else []
    if limits.max_input_bytes is not None and info.size > limits.max_input_bytes:
        errors.append(
            _error(
                ("image",),
                f"image is {info.size} bytes",
                f"input must be <= 10 MB as base64 ({MAX_INPUT_BASE64_CHARS} characters, "
                f"{limits.max_input_bytes} bytes)",
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
        return _error(
            (name,),
            f"{name} is not the input {name} times {factors}",
            f"{name} must be one of {[side * f for f in allowed]} "
            f"(input {name} {side} times {factors} on {limits.model})",
        )
    return _error(
        ("scale",),
        f"scale {params.scale} is not available",
        f"scale must be one of {allowed} on {limits.model} (upscaleFactor {factors})",
    )
