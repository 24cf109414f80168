"""The neutral core: what a request is while it is served, for the web layer and the
providers alike (DESIGN §4b). Jobs (the normalized request with its image), images in and
out, the call context with its deadline, and the attempts routing made. Nothing here
imports the web layer or a provider.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from app import codec
from app.errors import UpstreamTimeout
from app.images import ImageInfo
from app.schemas import GenerateParams, UpscaleParams


class Operation(StrEnum):
    UPSCALE = "upscale"
    GENERATE = "generate"


# --------------------------------------------------------------------------- images


class InputImage:
    """The caller's image, in the form it arrived, converted at most once, on demand.

    From multipart it is bytes. From JSON it is the caller's base64, kept as a zero-copy
    view into the request body (``b64_view``) or as text: vendors that want base64 (Venice,
    Vertex) get it spliced into their body as is, and only a vendor that wants bytes pays
    for the decode."""

    __slots__ = ("_b64", "_data", "_view", "info")

    def __init__(
        self,
        data: bytes | None,
        info: ImageInfo,
        b64: str | None = None,
        b64_view: memoryview | None = None,
    ) -> None:
        if data is None and b64 is None and b64_view is None:
            raise ValueError("an InputImage needs bytes or base64")
        self.info = info
        self._data = data
        self._b64 = b64
        self._view = b64_view

    @property
    def data(self) -> bytes:
        if self._data is None:
            source = self._b64 if self._b64 is not None else self._view
            assert source is not None
            self._data = codec.decode_strict(source)
        return self._data

    @property
    def has_base64(self) -> bool:
        """The caller's base64 (or an earlier encode) is at hand: no encode needed."""
        return self._b64 is not None or self._view is not None

    @property
    def base64_length(self) -> int:
        if self._view is not None:
            return len(self._view)
        return len(self.base64())

    def base64_ascii(self) -> bytes | memoryview:
        """The base64 as ASCII bytes, without a copy when it came from the request body."""
        if self._view is not None:
            return self._view
        return self.base64().encode("ascii")

    def base64(self) -> str:
        if self._b64 is None:
            if self._view is not None:
                self._b64 = str(self._view, "ascii")
            else:
                self._b64 = codec.encode_str(self.data)
        return self._b64


class OutputImage:
    """One result image, held as bytes or base64, converted at most once, on demand."""

    __slots__ = ("_b64", "_data", "height", "mime_type", "width")

    def __init__(
        self,
        *,
        mime_type: str,
        width: int | None,
        height: int | None,
        data: bytes | None = None,
        b64: str | None = None,
    ) -> None:
        if data is None and b64 is None:
            raise ValueError("an OutputImage needs bytes or base64")
        self.mime_type = mime_type
        self.width = width
        self.height = height
        self._data = data
        self._b64 = b64

    def as_bytes(self) -> bytes:
        if self._data is None:
            assert self._b64 is not None
            self._data = codec.decode_strict(self._b64)
        return self._data

    def as_base64(self) -> str:
        if self._b64 is None:
            assert self._data is not None
            self._b64 = codec.encode_str(self._data)
        return self._b64

    def as_base64_bytes(self) -> bytes:
        """Base64 as ASCII bytes, for splicing into a response body without another copy."""
        if self._b64 is not None:
            return self._b64.encode("ascii")
        assert self._data is not None
        return codec.encode(self._data)

    @property
    def has_bytes(self) -> bool:
        return self._data is not None


# --------------------------------------------------------------------------- jobs and calls


@dataclass
class UpscaleJob:
    params: UpscaleParams
    image: InputImage
    operation: ClassVar[Operation] = Operation.UPSCALE


@dataclass
class GenerateJob:
    params: GenerateParams
    operation: ClassVar[Operation] = Operation.GENERATE


Job = UpscaleJob | GenerateJob


@dataclass
class PreparedCall:
    """A validated vendor request, ready to send. Providers subclass it with their payload."""

    provider: str
    operation: Operation
    model: str
    warnings: list[str] = field(default_factory=list)
    #: Vendor calls this request makes at once (Gemini: n images are n calls); routing
    #: holds that many bulkhead slots.
    calls: int = 1
    #: Response headers the answer must carry (set by ``Provider.prepare_checked``).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    """Token counts a vendor reported for this request, summed over its calls (Gemini
    ``usageMetadata``, vendors-2026 §2.5). What cost accounting prices."""

    calls: int = 0
    prompt_tokens: int = 0
    #: Every output token (``candidatesTokenCount``), images and text.
    output_tokens: int = 0
    #: Output tokens of modality IMAGE (``candidatesTokensDetails``).
    image_output_tokens: int = 0
    thoughts_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            *(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self))
        )


@dataclass
class ProviderResult:
    images: list[OutputImage]
    model: str
    warnings: list[str] = field(default_factory=list)
    #: Token usage where the vendor reports it (Gemini ``usageMetadata``), ``None``
    #: otherwise; the price table reads ``image_output_tokens`` for the actual cost.
    usage: Usage | None = None
    #: Extra response headers (``Deprecation``/``Sunset`` of a deprecated model).
    headers: dict[str, str] = field(default_factory=dict)


class Deadline:
    """An absolute point on the monotonic clock by which the whole request must be done."""

    __slots__ = ("_clock", "at")

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = clock() + seconds

    def remaining(self) -> float:
        return self.at - self._clock()

    def check(self, provider: str) -> float:
        """The time left, or ``UpstreamTimeout`` when there is none."""
        left = self.remaining()
        if left <= 0:
            raise UpstreamTimeout(
                f"{provider} did not answer within the request deadline",
                provider=provider,
                reason="timeout",
            )
        return left


@dataclass
class CallContext:
    request_id: str
    deadline: Deadline
    #: The caller wants raw bytes (``Accept: image/*``), so base64 need not be kept.
    wants_bytes: bool = False
    #: Vendor response headers worth exporting (e.g. Venice ``x-ratelimit-remaining-requests``).
    on_vendor_headers: Callable[[str, Mapping[str, str]], None] | None = None
    #: Every provider call made for this request (filled in by routing).
    attempts: list[Attempt] = field(default_factory=list)
    #: The providers the caller's key may use (None: any).
    allowed_providers: frozenset[str] | None = None
    #: Awaited with each prepared call before it is sent (budgets); may refuse it.
    before_call: Callable[[PreparedCall], Awaitable[None]] | None = None
    #: Validate and route only: the first provider that would be called answers.
    dry_run: bool = False
    #: A durable job's hooks (app.jobs): ``on_vendor_job(provider, handle)`` is awaited the
    #: moment a vendor accepted a job it runs on its side (e.g. Deep-Image's job hash), and
    #: ``resume`` maps a provider id to such a handle from an earlier run, so the provider
    #: picks that job up instead of submitting (and paying for) it again.
    on_vendor_job: Callable[[str, str], Awaitable[None]] | None = None
    resume: Mapping[str, str] | None = None
    #: The web layer's per-call spend bookkeeping (``app.callers``: budget reservations);
    #: opaque to routing and the providers.
    spend: Any = None


# --------------------------------------------------------------------------- what routing did


@dataclass
class Attempt:
    provider: str
    outcome: str  # "ok", an error code, or "skipped:<why>" (no vendor call)
    seconds: float

    def label(self) -> str:
        return f"{self.provider}:{self.outcome}"

    @property
    def skipped(self) -> bool:
        return self.outcome.startswith("skipped:")


@dataclass
class Outcome:
    result: ProviderResult
    provider: str
    attempts: list[Attempt]
    upstream_seconds: float
    warnings: list[str] = field(default_factory=list)
