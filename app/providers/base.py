"""The provider interface and the limits-as-data model.

A provider turns a normalized job into a vendor call in two steps:

1. ``prepare(job)``: pure and synchronous. It checks the job against the provider's limits
   table and builds the exact vendor request. It raises ``ValidationFailed`` (with
   ``errors[].limit`` quoting the rule) before any money is spent. Routing also uses it to
   skip providers whose limits refuse a request.
2. ``execute(call, ctx)``: performs the vendor call(s) within ``ctx.deadline`` and maps the
   answer, or translates the vendor's failure into a ``GatewayError`` once, here.

Limits are data (``ModelLimits``), read by validation, ``GET /v1/providers`` and the docs.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from datetime import time as dtime
from email.utils import format_datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError

from app.domain import (
    CallContext as CallContext,
)
from app.domain import (
    Deadline as Deadline,
)
from app.domain import (
    GenerateJob as GenerateJob,
)
from app.domain import (
    InputImage as InputImage,
)
from app.domain import (
    Job as Job,
)
from app.domain import (
    Operation as Operation,
)
from app.domain import (
    OutputImage as OutputImage,
)
from app.domain import (
    PreparedCall as PreparedCall,
)
from app.domain import (
    ProviderResult as ProviderResult,
)
from app.domain import (
    UpscaleJob as UpscaleJob,
)
from app.domain import (
    Usage as Usage,
)
from app.errors import FieldError, ModelDiscontinued, ValidationFailed
from app.images import ImageInfo
from app.schemas import UpscaleParams
from app.settings import Settings

# --------------------------------------------------------------------------- limits as data


class NumberRange(BaseModel):
    """An inclusive (or exclusive, where flagged) numeric range."""

    model_config = ConfigDict(frozen=True)

    min: float | None = Field(default=None, description="Lower bound; null for none.")
    max: float | None = Field(default=None, description="Upper bound; null for none.")
    min_exclusive: bool = Field(default=False, description="The lower bound is excluded.")
    max_exclusive: bool = Field(default=False, description="The upper bound is excluded.")

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.min_exclusive else '>='} {_num(self.min)}")
        if self.max is not None:
            parts.append(f"{'<' if self.max_exclusive else '<='} {_num(self.max)}")
        return " and ".join(parts)

    def contains(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.min is not None and (
            value < self.min or (self.min_exclusive and value == self.min)
        ):
            return False
        return not (
            self.max is not None
            and (value > self.max or (self.max_exclusive and value == self.max))
        )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


LifecycleStatus = Literal["ga", "preview", "deprecated", "discontinued"]


class Lifecycle(BaseModel):
    """Where a model stands with its vendor. A discontinued model is refused before any call
    (422 ``model_discontinued`` naming ``replacement``); a deprecated one is served with a
    warning and ``Deprecation``/``Sunset`` headers (RFC 9745 / RFC 8594)."""

    model_config = ConfigDict(frozen=True)

    status: LifecycleStatus = Field(
        default="ga", description="ga, preview, deprecated or discontinued."
    )
    released: date | None = Field(
        default=None, description="The day the vendor released it (GA or preview)."
    )
    deprecated: date | None = Field(
        default=None, description="The day it was (or will be) deprecated: still served."
    )
    sunset: date | None = Field(default=None, description="The day it stops (stopped) answering.")
    replacement: str | None = Field(default=None, description="The model to move to.")
    note: str | None = Field(
        default=None, description="Where the facts come from, or what is not confirmed."
    )

    def headers(self) -> dict[str, str]:
        """``Deprecation`` (RFC 9745: ``@`` + Unix seconds) and ``Sunset`` (RFC 8594: an
        HTTP-date) for a deprecated model; nothing otherwise."""
        if self.status != "deprecated":
            return {}
        out = {"deprecation": f"@{_epoch(self.deprecated)}" if self.deprecated else "@0"}
        if self.sunset is not None:
            out["sunset"] = format_datetime(_midnight(self.sunset), usegmt=True)
        return out

    def warning(self, provider: str, model: str) -> str | None:
        if self.status != "deprecated":
            return None
        text = f"{provider}: model {model} is deprecated"
        if self.sunset is not None:
            text += f" and stops answering on {self.sunset.isoformat()}"
        return text + (f"; move to {self.replacement}" if self.replacement else "")


def _midnight(day: date) -> datetime:
    return datetime.combine(day, dtime(0, 0), tzinfo=UTC)


def _epoch(day: date) -> int:
    return int(_midnight(day).timestamp())


class ModelLimits(BaseModel):
    """What one vendor model accepts for one or both operations. ``None`` means no limit.
    A provider may add fields of its own (local's engine, native_scales, summary)."""

    # Said in the schema: generators (openapi-generator's Go) otherwise refuse extra fields.
    model_config = ConfigDict(frozen=True, json_schema_extra={"additionalProperties": True})

    model: str = Field(description="Vendor model id, as the request's model field takes it.")
    operations: tuple[Operation, ...] = Field(description="Operations this model serves.")
    lifecycle: Lifecycle = Field(
        default=Lifecycle(), description="Where the model stands with its vendor."
    )
    # input image (upscale)
    input_formats: tuple[str, ...] = Field(
        default=("png", "jpeg", "webp"), description="Input image formats accepted."
    )
    max_input_bytes: int | None = Field(default=None, description="Largest input image, bytes.")
    min_input_pixels: int | None = Field(default=None, description="Smallest input, pixels.")
    max_input_pixels: int | None = Field(default=None, description="Largest input, pixels.")
    # output
    max_output_pixels: int | None = Field(default=None, description="Largest output, pixels.")
    output_formats: tuple[str, ...] = Field(
        default=("png",), description="Values output.format may take."
    )
    output_quality: bool = Field(default=False, description="Whether output.quality is used.")
    # upscale factor: a range, or a set of discrete factors
    scale: NumberRange | None = Field(default=None, description="Allowed scale range.")
    scale_factors: tuple[float, ...] | None = Field(
        default=None, description="The only scale factors allowed, when discrete."
    )
    size_targets: bool = Field(default=True, description="Whether width/height may be given.")
    # generate
    prompt_required: bool = Field(default=False, description="Whether a prompt is required.")
    prompt_max_chars: int | None = Field(default=None, description="Longest prompt, characters.")
    prompt_max_tokens: int | None = Field(default=None, description="Longest prompt, tokens.")
    negative_prompt: bool = Field(default=True, description="Whether negative_prompt is used.")
    n: NumberRange | None = Field(default=None, description="Allowed number of images.")
    aspect_ratios: tuple[str, ...] | None = Field(
        default=None, description="Allowed aspect_ratio values."
    )
    width: NumberRange | None = Field(default=None, description="Allowed width, pixels.")
    height: NumberRange | None = Field(default=None, description="Allowed height, pixels.")
    seed: NumberRange | None = Field(default=None, description="Allowed seed range.")
    # relations between fields and vendor behaviours, in words (for docs and /v1/providers)
    rules: tuple[str, ...] = Field(
        default=(), description="Relations between fields and vendor behaviours, in words."
    )


class ProviderCatalog(BaseModel):
    """What ``GET /v1/providers`` shows for one provider: the same tables validation reads."""

    id: str = Field(description="Provider id, as the request's provider field takes it.")
    enabled: bool = Field(description="Whether it is configured and routed to.")
    operations: list[Operation] = Field(description="Operations it serves.")
    default_models: dict[str, str] = Field(description="Default model per operation.")
    #: Serialized as their own (sub)class, so vendor-specific fields are shown too.
    models: list[SerializeAsAny[ModelLimits]] = Field(
        description="Each model's limits: the tables that validation reads."
    )
    options_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of options.<provider>; null when it has none."
    )
    account: dict[str, Any] | None = Field(
        default=None,
        description="What the vendor reports about the gateway's key (Venice: tier, balances "
        "and per-model rate limits from GET /api_keys/rate_limits); null when unknown.",
    )
    circuit: str | None = Field(
        default=None, description="Circuit breaker state: closed, open or half_open."
    )
    notes: list[str] = Field(default=[], description="Notes on its behaviour, in words.")


# --------------------------------------------------------------------------- images


# --------------------------------------------------------------------------- the interface


class Provider(ABC):
    id: ClassVar[str]
    operations: ClassVar[frozenset[Operation]]
    #: Pydantic model of ``options.<id>``; ``None`` when the provider takes no options.
    options_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def model_aliases(self) -> Mapping[str, str]:
        """Operator-set ``old id -> new id`` (``IMAGE_GATEWAY_<ID>__MODEL_ALIASES``)."""
        section = getattr(getattr(self, "settings", None), self.id, None)
        aliases = getattr(section, "model_aliases", None)
        return aliases if isinstance(aliases, Mapping) else {}

    @abstractmethod
    def default_model(self, operation: Operation) -> str: ...

    @abstractmethod
    def model_limits(self) -> list[ModelLimits]: ...

    @abstractmethod
    def prepare(self, job: Job) -> PreparedCall:
        """Validate ``job`` against this provider's limits and build the vendor request."""

    def prepare_fallback(self, job: Job) -> PreparedCall:
        """``prepare`` for a job that another provider failed or refused first (routing
        calls this instead); a provider may serve fallbacks differently."""
        return self.prepare(job)

    @abstractmethod
    async def execute(self, call: PreparedCall, ctx: CallContext) -> ProviderResult:
        """Send ``call`` and map the vendor's answer, within ``ctx.deadline``."""

    async def start(self) -> None:
        """Open clients; called once by the app's lifespan."""

    async def refresh_catalog(self) -> None:
        """Refresh vendor metadata that ``prepare`` validates against (e.g. Venice's model
        list). Awaited by routing before ``prepare``: cheap while the cache is fresh, and it
        never raises (validation falls back to the static limits table)."""

    async def aclose(self) -> None:
        """Close clients; called once by the app's lifespan."""

    def catalog(self, enabled: bool = True) -> ProviderCatalog:
        schema = self.options_model.model_json_schema() if self.options_model else None
        return ProviderCatalog(
            id=self.id,
            enabled=enabled,
            operations=sorted(self.operations),
            default_models={op.value: self.default_model(op) for op in sorted(self.operations)},
            models=self.model_limits(),
            options_schema=schema,
        )

    def prepare_checked(self, job: Job, fallback: bool = False) -> PreparedCall:
        """``prepare`` behind the two rules every provider shares: an operator alias maps
        the model id (said in a warning, never silently), and the model's lifecycle decides
        (discontinued: refused before any call; deprecated: a warning and headers)."""
        asked = job.params.model or self.default_model(job.operation)
        model = self.model_aliases.get(asked, asked)
        notes: list[str] = []
        if model != asked:
            notes.append(
                f"{self.id}: model {asked} is served by {model} "
                f"(operator alias, IMAGE_GATEWAY_{self.id.upper()}__MODEL_ALIASES)"
            )
            params = job.params.model_copy(update={"model": model})
            job = dataclasses.replace(job, params=params)  # type: ignore[arg-type]
        lifecycle = self.lifecycle_of(model, job.operation)
        if lifecycle is not None and lifecycle.status == "discontinued":
            raise self.discontinued(model, lifecycle)
        call = self.prepare_fallback(job) if fallback else self.prepare(job)
        if lifecycle is not None:
            notice = lifecycle.warning(self.id, model)
            call.warnings[:0] = [*notes, *([notice] if notice else [])]
            call.headers.update(lifecycle.headers())
        else:
            call.warnings[:0] = notes
        return call

    def lifecycle_of(self, model: str, operation: Operation) -> Lifecycle | None:
        for row in self.model_limits():
            if row.model == model and operation in row.operations:
                return row.lifecycle
        return None

    def discontinued(self, model: str, lifecycle: Lifecycle) -> ModelDiscontinued:
        when = f" on {lifecycle.sunset.isoformat()}" if lifecycle.sunset else ""
        instead = lifecycle.replacement or self.default_model(Operation.GENERATE)
        limit = f"{self.id}: model {model} was discontinued{when}; use {instead}"
        return ModelDiscontinued(
            limit,
            errors=[FieldError(("model",), f"model {model} is discontinued", limit)],
            provider=self.id,
            replacement=instead,
        )

    def limits_for(self, model: str, operation: Operation) -> ModelLimits:
        """The table row for ``model``; unknown or wrong-operation models are a 422."""
        for row in self.model_limits():
            if row.model == model and operation in row.operations:
                return row
        known = [r.model for r in self.model_limits() if operation in r.operations]
        raise self.refuse(
            [
                FieldError(
                    ("model",),
                    f"unknown {operation} model {model!r}",
                    f"{self.id}: model must be one of {known}",
                )
            ]
        )

    def parse_options(self, options: Mapping[Any, Any] | None) -> BaseModel | None:
        """``options.<id>`` validated by the provider's own model (unknown fields refused)."""
        if self.options_model is None:
            if options and options.get(self.id):
                raise self.refuse(
                    [FieldError(("options", self.id), "this provider takes no options")]
                )
            return None
        raw = (options or {}).get(self.id) or {}
        try:
            return self.options_model.model_validate(raw)
        except ValidationError as exc:
            raise self.refuse(
                [
                    FieldError(("options", self.id, *e["loc"]), e["msg"], f"{self.id}: {e['msg']}")
                    for e in exc.errors(include_url=False)
                ]
            ) from None

    def refuse(self, errors: list[FieldError]) -> ValidationFailed:
        detail = "; ".join(e.limit or e.msg for e in errors)
        return ValidationFailed(detail, errors=errors, provider=self.id)


# --------------------------------------------------------------------------- shared checks


#: How far an image's width/height may stray from the asked ratio (Gemini's 21:9 at 1K is
#: 1584x672, 1% off; 2.5 Flash's is 1536x672, 2% off).
RATIO_TOLERANCE = 0.03


def size_notes(provider: str, job: Job, result: ProviderResult) -> list[str]:
    """What the answer says about the size asked for: a vendor that ignored ``aspect_ratio``
    or ``width``/``height`` is reported, never passed over in silence."""
    if not isinstance(job, GenerateJob):
        return []
    params = job.params
    wrong = []
    for image in result.images:
        if not image.width or not image.height:
            continue
        if params.aspect_ratio is not None:
            across, down = (int(p) for p in params.aspect_ratio.split(":"))
            if abs(image.width / image.height / (across / down) - 1) > RATIO_TOLERANCE:
                wrong.append(f"{image.width}x{image.height}")
        elif (params.width or image.width, params.height or image.height) != (
            image.width,
            image.height,
        ):
            wrong.append(f"{image.width}x{image.height}")
    if not wrong:
        return []
    asked = params.aspect_ratio or f"{params.width or '*'}x{params.height or '*'}"
    return [f"{provider} returned {', '.join(dict.fromkeys(wrong))}, not the {asked} asked for"]


def check_range(
    provider: str,
    name: str,
    value: float | None,
    limit: NumberRange | None,
    loc: tuple[str, ...] | None = None,
) -> FieldError | None:
    if value is None or limit is None or limit.contains(value):
        return None
    rule = f"{provider}: {name} must be {limit.describe()}"
    return FieldError(loc or (name,), f"{name} {_num(value)} is out of range", rule)


def check_choice(
    provider: str,
    name: str,
    value: Any,
    allowed: Iterable[Any] | None,
    loc: tuple[str, ...] | None = None,
) -> FieldError | None:
    if value is None or allowed is None:
        return None
    allowed = list(allowed)
    if value in allowed:
        return None
    rule = f"{provider}: {name} must be one of {allowed}"
    return FieldError(loc or (name,), f"{name} {value!r} is not supported", rule)


def check_input_image(provider: str, limits: ModelLimits, info: ImageInfo) -> list[FieldError]:
    """Format, byte and pixel limits of the input image, from its header alone."""
    errors: list[FieldError] = []
    if info.format not in limits.input_formats:
        errors.append(
            FieldError(
                ("image",),
                f"{info.format} input is not accepted",
                f"{provider}: input format must be one of {list(limits.input_formats)}",
            )
        )
    if limits.max_input_bytes is not None and info.size > limits.max_input_bytes:
        errors.append(
            FieldError(
                ("image",),
                f"image is {info.size} bytes",
                f"{provider}: input must be <= {limits.max_input_bytes} bytes",
            )
        )
    pixels = info.width * info.height
    if limits.min_input_pixels is not None and pixels < limits.min_input_pixels:
        errors.append(
            FieldError(
                ("image",),
                f"image has {pixels} px",
                f"{provider}: input must be >= {limits.min_input_pixels} px",
            )
        )
    if limits.max_input_pixels is not None and pixels > limits.max_input_pixels:
        errors.append(
            FieldError(
                ("image",),
                f"image has {pixels} px",
                f"{provider}: input must be <= {limits.max_input_pixels} px",
            )
        )
    return errors


def target_size(
    params: UpscaleParams, info: ImageInfo, default_scale: float = 2.0
) -> tuple[int, int, float]:
    """Output width, height and effective scale from ``scale`` or a target width/height
    (one of the two; aspect ratio kept). Rounds to whole pixels, never below 1."""
    if params.width is not None:
        factor = params.width / info.width
    elif params.height is not None:
        factor = params.height / info.height
    else:
        factor = params.scale if params.scale is not None else default_scale
    width = params.width or max(1, round(info.width * factor))
    height = params.height or max(1, round(info.height * factor))
    return width, height, factor


def check_output(
    provider: str, limits: ModelLimits, fmt: str | None, quality: int | None
) -> list[FieldError]:
    errors: list[FieldError] = []
    bad_fmt = check_choice(
        provider, "output.format", fmt, limits.output_formats, ("output", "format")
    )
    if bad_fmt:
        errors.append(bad_fmt)
    if quality is not None and not limits.output_quality:
        errors.append(
            FieldError(
                ("output", "quality"),
                "quality is not adjustable",
                f"{provider}: output.quality is not supported by {limits.model}",
            )
        )
    return errors
