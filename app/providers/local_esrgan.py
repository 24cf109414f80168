"""The ``local`` provider's Real-ESRGAN models: availability, validation, and the call.

Without the optional extra (``pip install 'image-gateway[esrgan]'``) or its system
libraries, the gateway runs as before with Lanczos alone, and ``/v1/providers`` says how to
enable the rest. With it, each model's limits row is in the same table validation reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app import pixels
from app.errors import (
    FieldError,
    InternalError,
    InvalidRequest,
    ProviderUnavailable,
    UpstreamTimeout,
    ValidationFailed,
)
from app.esrgan import engine, vulkan
from app.esrgan.models import NETWORKS, LocalModelLimits, limits
from app.esrgan.pool import JobFailed, WorkerGone, WorkerPool
from app.images import MIME_TYPES, ImageInfo
from app.providers.base import (
    CallContext,
    OutputImage,
    PreparedCall,
    ProviderResult,
    UpscaleJob,
    check_input_image,
    check_output,
    check_range,
    target_size,
)
from app.providers.memory_budget import BYTES_PER_PIXEL, MemoryBudget
from app.schemas import UpscaleParams
from app.settings import LocalSettings

PROVIDER = "local"
ENABLE_HINT = (
    "Real-ESRGAN models ({names}) need the optional extra: pip install "
    "'image-gateway[esrgan]' plus the Debian packages libvulkan1 and libomp5 (the container "
    "image built with --build-arg ESRGAN=1 has them)"
)


@dataclass
class EsrganCall(PreparedCall):
    order: engine.Order | None = None
    #: What the job holds in the gateway process (the image in, the answer out); the
    #: pixels themselves live in the worker, under its own memory cap.
    peak_bytes: int = 0


def probe() -> str | None:
    """``None`` when the models can run here, else why not (for the catalog's note)."""
    try:
        engine.load_wrapper()
    except ImportError as exc:
        return str(exc)
    return None


class LocalAI:
    """What ``LocalProvider`` delegates to for every model other than ``lanczos``."""

    def __init__(self, settings: LocalSettings, budget: MemoryBudget) -> None:
        self._settings = settings
        self._budget = budget
        self.missing = probe()
        device = "cpu" if settings.gpu is None else f"vulkan device {settings.gpu}"
        self._rows = [limits(net, device) for net in NETWORKS.values()]
        self.pool = WorkerPool(
            settings.gpu, settings.worker_memory_mb or None, settings.worker_idle_s
        )

    @property
    def available(self) -> bool:
        return self.missing is None

    def limits(self) -> list[LocalModelLimits]:
        return self._rows if self.available else []

    def notes(self) -> list[str]:
        if self.available:
            return []
        return [ENABLE_HINT.format(names=", ".join(NETWORKS)) + f" ({self.missing})"]

    def start(self) -> None:
        """Refuse a GPU setting that names no real Vulkan device (see ``vulkan``)."""
        if self.available and self._settings.gpu is not None:
            vulkan.check_device(self._settings.gpu)

    async def aclose(self) -> None:
        await self.pool.aclose()

    def handles(self, model: str) -> bool:
        return model in NETWORKS

    def prepare(self, job: UpscaleJob, model: str) -> EsrganCall:
        if not self.available:
            raise _refuse(
                [
                    FieldError(
                        ("model",), f"{model} is not installed", ENABLE_HINT.format(names=model)
                    )
                ]
            )
        row = next(r for r in self._rows if r.model == model)
        info = _upright(job.image.info, pixels.orientation(job.image.data))
        errors = _check(job.params, info, row)
        width, height, _ = target_size(job.params, info)
        peak = self._parent_peak(job.image.info.size, width * height)
        if not errors and (over := self._budget.check(peak)):
            errors.append(over)
        if errors:
            raise _refuse(errors)
        params, out = job.params, job.params.output
        order = engine.Order(
            data=job.image.data,
            model=model,
            scale=params.scale,
            width=params.width,
            height=params.height,
            format=(out.format if out else None) or job.image.info.format,
            quality=out.quality if out else None,
            max_output_pixels=row.max_output_pixels or 0,
            max_answer_bytes=self._settings.max_answer_bytes,
        )
        return EsrganCall(PROVIDER, row.operations[0], model, order=order, peak_bytes=peak)

    def _parent_peak(self, input_bytes: int, output_pixels: int) -> int:
        answer = min(output_pixels * BYTES_PER_PIXEL, self._settings.max_answer_bytes)
        return input_bytes + answer + answer * 4 // 3

    def prepare_fallback(
        self, job: UpscaleJob, plain: Callable[[UpscaleJob], PreparedCall]
    ) -> PreparedCall:
        """A fallback upscale with ``IMAGE_GATEWAY_LOCAL__FALLBACK_MODEL`` when it is set,
        installed and fits; otherwise ``plain`` (Lanczos), saying why in a warning."""
        model = self._settings.fallback_model
        if model is None or model not in NETWORKS:
            return plain(job)
        try:
            call: PreparedCall = self.prepare(job, model)
        except ValidationFailed as exc:
            call = plain(job)
            call.warnings.append(
                f"local: fallback model {model} refused ({exc.detail}); used lanczos"
            )
            return call
        call.warnings.append(f"local: served as the fallback with {model} on this machine")
        return call

    async def execute(self, call: EsrganCall, ctx: CallContext) -> ProviderResult:
        assert call.order is not None
        timeout = ctx.deadline.check(PROVIDER)
        try:
            reply = await self.pool.run(call.order, timeout)
        except TimeoutError:
            raise UpstreamTimeout(
                f"local {call.model} did not finish within the request deadline; "
                "the job was stopped",
                provider=PROVIDER,
                reason="timeout",
            ) from None
        except (JobFailed, WorkerGone) as exc:
            raise _translate(exc, call.model) from None
        result = reply.result
        image = OutputImage(
            mime_type=MIME_TYPES[call.order.format],
            width=result.width,
            height=result.height,
            data=result.data,
        )
        return ProviderResult(images=[image], model=call.model, warnings=list(call.warnings))


def _upright(info: ImageInfo, orientation: int) -> ImageInfo:
    width, height = pixels.upright_size(info.width, info.height, orientation)
    return ImageInfo(info.format, width, height, info.size, info.animated)


def _check(params: UpscaleParams, info: ImageInfo, row: LocalModelLimits) -> list[FieldError]:
    out = params.output
    errors = check_input_image(PROVIDER, row, info)
    errors += check_output(PROVIDER, row, out.format if out else None, out.quality if out else None)
    width, height, factor = target_size(params, info)
    loc = "width" if params.width is not None else "height" if params.height else "scale"
    name = loc if loc == "scale" else f"{loc} / input {loc}"
    bad = check_range(PROVIDER, name, factor, row.scale, (loc,))
    if bad:
        errors.append(bad)
    if row.max_output_pixels is not None and width * height > row.max_output_pixels:
        errors.append(
            FieldError(
                (loc,),
                f"output would be {width}x{height} px",
                f"local: output must be <= {row.max_output_pixels} px",
            )
        )
    return errors


def _refuse(errors: list[FieldError]) -> ValidationFailed:
    detail = "; ".join(e.limit or e.msg for e in errors)
    return ValidationFailed(detail, errors=errors, provider=PROVIDER)


def _translate(exc: JobFailed | WorkerGone, model: str) -> Exception:
    if isinstance(exc, WorkerGone):
        return ProviderUnavailable(
            f"the local {model} worker stopped before it answered ({exc}); "
            "it may have reached IMAGE_GATEWAY_LOCAL__WORKER_MEMORY_MB",
            provider=PROVIDER,
            retry_after=1,
            retryable=False,  # the same job would stop the same way
            reason="worker_crash",
        )
    if exc.kind == "decode":
        return InvalidRequest(
            f"the image could not be decoded: {exc.detail}",
            errors=[FieldError(("image",), "undecodable image")],
        )
    if exc.kind == "too_large":
        return _refuse([FieldError(("output",), exc.detail, f"local: {exc.detail}")])
    if exc.kind in ("memory", "unavailable"):
        return ProviderUnavailable(
            f"the local {model} worker could not run the job: {exc.detail}",
            provider=PROVIDER,
            retry_after=1,
            retryable=False,
            reason=exc.kind,
        )
    return InternalError(f"the local {model} model failed ({exc.detail})", provider=PROVIDER)
