"""The built-in ``local`` provider: Pillow Lanczos upscaling on this machine's CPU.

It needs no credentials, so a fresh install can upscale at once. Decoding and resampling
run in worker threads (Pillow releases the GIL while it resamples), at most
``IMAGE_GATEWAY_LOCAL__MAX_CONCURRENCY`` at a time; a request that cannot get a slot within
``queue_timeout_s`` gets 503 instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import ClassVar

from PIL import Image, UnidentifiedImageError

from app.errors import FieldError, InvalidRequest, ProviderUnavailable
from app.images import MIME_TYPES
from app.providers.base import (
    CallContext,
    GenerateJob,
    Job,
    ModelLimits,
    NumberRange,
    Operation,
    OutputImage,
    PreparedCall,
    Provider,
    ProviderResult,
    UpscaleJob,
    check_input_image,
    check_output,
    check_range,
    target_size,
)
from app.settings import Settings

MODEL = "lanczos"
_DEFAULT_QUALITY = {"jpeg": 90, "webp": 90}

LIMITS = ModelLimits(
    model=MODEL,
    operations=(Operation.UPSCALE,),
    input_formats=("png", "jpeg", "webp"),
    max_input_bytes=25 * 1024 * 1024,
    max_input_pixels=16_777_216,  # 4096x4096: bounds the memory of one decode
    max_output_pixels=67_108_864,  # 8192x8192: ~256 MB of RGBA while resampling
    output_formats=("png", "jpeg", "webp"),
    output_quality=True,
    scale=NumberRange(min=1, max=8, min_exclusive=True),
    rules=(
        "scale must be > 1 and <= 8, or a target width or height larger than the input",
        "output is at most 67108864 px",
    ),
)


@dataclass
class LocalCall(PreparedCall):
    data: bytes = b""
    width: int = 0
    height: int = 0
    format: str = "png"
    quality: int | None = None


class LocalProvider(Provider):
    id: ClassVar[str] = "local"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.UPSCALE})

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.local
        self._slots = asyncio.Semaphore(self._settings.max_concurrency)

    def default_model(self, operation: Operation) -> str:
        return MODEL

    def model_limits(self) -> list[ModelLimits]:
        return [LIMITS]

    def prepare(self, job: Job) -> PreparedCall:
        if isinstance(job, GenerateJob):
            raise self.refuse(
                [
                    FieldError(
                        ("provider",),
                        "local cannot generate images",
                        "local: operation must be upscale",
                    )
                ]
            )
        limits = self.limits_for(job.params.model or MODEL, Operation.UPSCALE)
        self.parse_options(job.params.options)
        errors = self._check(job, limits)
        if errors:
            raise self.refuse(errors)
        width, height, _ = target_size(job.params, job.image.info)
        out = job.params.output
        fmt = (out.format if out else None) or job.image.info.format
        quality = out.quality if out else None
        return LocalCall(
            self.id,
            Operation.UPSCALE,
            MODEL,
            data=job.image.data,
            width=width,
            height=height,
            format=fmt,
            quality=quality,
        )

    def _check(self, job: UpscaleJob, limits: ModelLimits) -> list[FieldError]:
        info, params = job.image.info, job.params
        errors = check_input_image(self.id, limits, info)
        out = params.output
        errors += check_output(
            self.id, limits, out.format if out else None, out.quality if out else None
        )
        width, height, factor = target_size(params, info)
        loc = (
            "scale"
            if params.width is None and params.height is None
            else ("width" if params.width is not None else "height")
        )
        bad_scale = check_range(
            self.id, loc if loc == "scale" else f"{loc} / input {loc}", factor, limits.scale, (loc,)
        )
        if bad_scale:
            errors.append(bad_scale)
        if limits.max_output_pixels is not None and width * height > limits.max_output_pixels:
            errors.append(
                FieldError(
                    (loc,),
                    f"output would be {width}x{height} px",
                    f"local: output must be <= {limits.max_output_pixels} px",
                )
            )
        return errors

    async def execute(self, call: PreparedCall, ctx: CallContext) -> ProviderResult:
        assert isinstance(call, LocalCall)
        wait = min(self._settings.queue_timeout_s, max(ctx.deadline.remaining(), 0))
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=wait)
        except TimeoutError:
            raise ProviderUnavailable(
                "the local upscaler is busy; try again shortly",
                provider=self.id,
                retry_after=1,
                reason="saturated",
            ) from None
        try:
            data = await asyncio.to_thread(_upscale, call)
        finally:
            self._slots.release()
        image = OutputImage(
            mime_type=MIME_TYPES[call.format], width=call.width, height=call.height, data=data
        )
        return ProviderResult(images=[image], model=MODEL, warnings=list(call.warnings))


def _upscale(call: LocalCall) -> bytes:
    """Decode, resample with Lanczos, encode. Runs in a worker thread."""
    try:
        with Image.open(io.BytesIO(call.data)) as source:
            source.load()
            image = _normalize_mode(source, call.format)
            resized = image.resize((call.width, call.height), Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidRequest(
            f"the image could not be decoded: {type(exc).__name__}",
            errors=[FieldError(("image",), "undecodable image")],
        ) from None
    buffer = io.BytesIO()
    quality = call.quality if call.quality is not None else _DEFAULT_QUALITY.get(call.format)
    kwargs = {"quality": quality} if quality is not None and call.format != "png" else {}
    resized.save(buffer, format=call.format.upper(), **kwargs)
    return buffer.getvalue()


def _normalize_mode(image: Image.Image, fmt: str) -> Image.Image:
    """Resample in a mode the output format can store (JPEG has no alpha, palettes blur)."""
    if fmt == "jpeg":
        return image.convert("RGB") if image.mode != "RGB" else image
    if image.mode in ("P", "PA", "1", "I;16", "I", "F"):
        return image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
    return image
