"""The built-in ``local`` provider: Pillow Lanczos upscaling on this machine's CPU.

It needs no credentials, so a fresh install can upscale at once. Decoding and resampling
run in worker threads (Pillow releases the GIL while it resamples), at most
``IMAGE_GATEWAY_LOCAL__MAX_CONCURRENCY`` at a time; a request that cannot get a slot within
``queue_timeout_s`` gets 503 instead of queueing without bound. Each job is also admitted
by its estimated peak memory against ``IMAGE_GATEWAY_LOCAL__MEMORY_BUDGET_MB``
(``memory_budget.py``), and pixels are kept faithful on the way (``app/pixels.py``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar

from PIL import Image

from app import pixels
from app.errors import FieldError, InvalidRequest, ProviderUnavailable
from app.images import MIME_TYPES, ImageInfo
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
    ProviderCatalog,
    ProviderResult,
    UpscaleJob,
    check_input_image,
    check_output,
    check_range,
    target_size,
)
from app.providers.local_esrgan import EsrganCall, LocalAI
from app.providers.memory_budget import MIB, MemoryBudget, lanczos_peak
from app.schemas import UpscaleParams
from app.settings import Settings

MODEL = "lanczos"

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
    peak_bytes: int = 0


class LocalProvider(Provider):
    id: ClassVar[str] = "local"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.UPSCALE})

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.local
        self._slots = asyncio.Semaphore(self._settings.max_concurrency)
        self._budget = MemoryBudget(self.id, self._settings.memory_budget_mb * MIB)
        #: Real-ESRGAN models (the optional extra), sharing the slots and the budget.
        self.ai = LocalAI(self._settings, self._budget)

    def default_model(self, operation: Operation) -> str:
        return MODEL

    def model_limits(self) -> list[ModelLimits]:
        return [LIMITS, *self.ai.limits()]

    def catalog(self, enabled: bool = True) -> ProviderCatalog:
        entry = super().catalog(enabled)
        entry.notes = [*entry.notes, *self.ai.notes()]
        return entry

    async def start(self) -> None:
        self.ai.start()

    async def aclose(self) -> None:
        await self.ai.aclose()

    def prepare_fallback(self, job: Job) -> PreparedCall:
        job, notes = _without_guidance(job)
        if isinstance(job, UpscaleJob) and job.params.model is None:
            call = self.ai.prepare_fallback(job, self.prepare)
        else:
            call = self.prepare(job)
        call.warnings[:0] = notes
        return call

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
        self.parse_options(job.params.options)
        guidance = _guidance_errors(job.params)
        if guidance:  # Lanczos and Real-ESRGAN take no guidance: refused, not ignored
            raise self.refuse(guidance)
        if self.ai.handles(job.params.model or MODEL):
            return self.ai.prepare(job, job.params.model or MODEL)
        limits = self.limits_for(job.params.model or MODEL, Operation.UPSCALE)
        info = _upright(job.image.info, pixels.orientation(job.image.data))
        errors = self._check(job.params, info, limits)
        if errors:
            raise self.refuse(errors)
        width, height, _ = target_size(job.params, info)
        out = job.params.output
        fmt = (out.format if out else None) or job.image.info.format
        return LocalCall(
            self.id,
            Operation.UPSCALE,
            MODEL,
            data=job.image.data,
            width=width,
            height=height,
            format=fmt,
            quality=out.quality if out else None,
            peak_bytes=self._peak(info, width, height),
        )

    def _peak(self, info: ImageInfo, width: int, height: int) -> int:
        return lanczos_peak(info.width, info.height, width, height, self._settings.max_answer_bytes)

    def _check(
        self, params: UpscaleParams, info: ImageInfo, limits: ModelLimits
    ) -> list[FieldError]:
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
        elif over_budget := self._budget.check(self._peak(info, width, height), (loc,)):
            errors.append(over_budget)
        return errors

    async def execute(self, call: PreparedCall, ctx: CallContext) -> ProviderResult:
        assert isinstance(call, LocalCall | EsrganCall)
        wait = min(self._settings.queue_timeout_s, max(ctx.deadline.remaining(), 0))
        async with self._budget.reserve(call.peak_bytes, wait):
            await self._take_slot(wait)
            try:
                if isinstance(call, EsrganCall):
                    return await self.ai.execute(call, ctx)
                encoded = await asyncio.to_thread(_upscale, call, self._settings.max_answer_bytes)
            finally:
                self._slots.release()
        image = OutputImage(
            mime_type=MIME_TYPES[call.format],
            width=encoded.width,
            height=encoded.height,
            data=encoded.data,
        )
        return ProviderResult(images=[image], model=MODEL, warnings=list(call.warnings))

    async def _take_slot(self, wait: float) -> None:
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=wait)
        except TimeoutError:
            raise ProviderUnavailable(
                "the local upscaler is busy; try again shortly",
                provider=self.id,
                retry_after=1,
                reason="saturated",
            ) from None


def _upright(info: ImageInfo, orientation: int) -> ImageInfo:
    width, height = pixels.upright_size(info.width, info.height, orientation)
    return ImageInfo(info.format, width, height, info.size, info.animated)


def _upscale(call: LocalCall, max_answer: int) -> pixels.Encoded:
    """Decode (orientation applied), convert for the output, resample with Lanczos,
    encode with the ICC profile kept. Runs in a worker thread; each copy is dropped as soon
    as the next exists, so the peak stays within the estimate the budget admitted."""
    image = pixels.decode_upright(call.data)
    image = pixels.for_output(image, call.format)
    info = image.info
    try:
        resized = image.resize((call.width, call.height), Image.Resampling.LANCZOS)
    except pixels.DECODE_ERRORS as exc:
        raise InvalidRequest(
            f"the image could not be resampled: {type(exc).__name__}",
            errors=[FieldError(("image",), "undecodable image")],
        ) from None
    del image
    resized.info = info
    data = pixels.encode(resized, call.format, call.quality, max_answer)
    return pixels.Encoded(data, resized.width, resized.height)


def _guidance_errors(params: UpscaleParams) -> list[FieldError]:
    return [
        FieldError((name,), f"{name} is not used by the local upscaler", f"local: no {name}")
        for name in ("prompt", "creativity")
        if getattr(params, name) is not None
    ]


def _without_guidance(job: Job) -> tuple[Job, list[str]]:
    """A fallback upscale keeps going without prompt/creativity, saying so in a warning."""
    if not isinstance(job, UpscaleJob) or not _guidance_errors(job.params):
        return job, []
    params = job.params.model_copy(update={"prompt": None, "creativity": None})
    note = "local: prompt and creativity were dropped; the local upscaler takes neither"
    return UpscaleJob(params, job.image), [note]
