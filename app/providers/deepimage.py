"""The ``deepimage`` provider: Deep-Image.ai generative upscale and text-to-image (vendors.md §3).

One vendor job per request. ``POST /rest_api/process_result`` holds the job for about 25 s
and answers ``complete`` with a ``result_url`` when it finished in time; otherwise it answers
``received``/``in_progress`` with a job id, which is polled at ``GET /rest_api/result/{job}``
with backoff, inline and always within the request's deadline. Answers never carry image
bytes (§3.6): the result is downloaded from ``result_url``, capped at
``IMAGE_GATEWAY_DEEPIMAGE__MAX_RESULT_BYTES``. The API key goes only to the base URL's origin;
neither the key nor a job or result URL ever appears in an error or a warning.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

from yarl import URL

from app.errors import (
    FieldError,
    GatewayError,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    ValidationFailed,
)
from app.images import sniff
from app.providers.base import (
    CallContext,
    GenerateJob,
    InputImage,
    Job,
    ModelLimits,
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
from app.providers.deepimage_limits import (
    DEFAULT_GENERATE_MODEL,
    DEFAULT_SCALE,
    DEFAULT_UPSCALE_MODEL,
    LIMITS,
    PROVIDER,
    DeepImageOptions,
    check_factor,
    check_generative,
    factor_warnings,
    generate_payload,
    output_of,
    target_loc,
    upscale_payload,
)
from app.redact import redact
from app.schemas import GenerateParams, UpscaleParams
from app.settings import Settings
from app.transport import (
    Body,
    Multipart,
    Transport,
    VendorResponse,
    json_or_none,
    parse_json,
    retry_after_seconds,
    splice_json,
)
from app.transport.bodies import IMAGE_SLOT, FilePart

SUBMIT_PATH = "/rest_api/process_result"
RESULT_PATH = "/rest_api/result/"
#: Job states that mean "poll again" (§3.2, DI-OAS ``ProcessResult.status``).
PENDING = frozenset({"received", "not_started", "in_progress"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def default_poll_delays() -> Iterator[float]:
    """0.5 s, doubling up to 5 s. Deep-Image names no polling cadence (§3.2)."""
    delay = 0.5
    while True:
        yield delay
        delay = min(delay * 2, 5.0)


@dataclass
class DeepImageCall(PreparedCall):
    payload: dict[str, Any] = field(default_factory=dict)
    image: InputImage | None = None
    #: Send the image as a multipart ``image`` part instead of ``"url": "base64,..."``.
    multipart: bool = False
    #: The normalized field a vendor size refusal points at.
    target_loc: str = "scale"
    requested_format: str | None = None


@dataclass(frozen=True)
class JobStatus:
    status: str
    job: str
    result_url: str | None


class DeepImageProvider(Provider):
    id: ClassVar[str] = PROVIDER
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.UPSCALE, Operation.GENERATE})
    options_model = DeepImageOptions

    #: Images up to this size go inline as ``"url": "base64,<data>"`` in a JSON body (the
    #: caller's base64 text is reused as is); larger ones as a multipart ``image`` file part
    #: plus a ``parameters`` JSON part, a quarter smaller on the wire (§3.1, §3.3).
    inline_max_bytes: int = 512 * 1024

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.deepimage
        self._transport_settings = settings.transport
        self._origin = _origin(URL(self._settings.base_url))
        self._client: Transport | None = None
        #: Injectable for tests: how to wait between polls, and the waits themselves.
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.poll_delays: Callable[[], Iterator[float]] = default_poll_delays

    async def start(self) -> None:
        # No default headers: the key is added per request, and only for the vendor's origin.
        self._client = Transport(
            self.id,
            self._settings.base_url,
            self._transport_settings,
            cap_s=self._settings.timeout_s,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def default_model(self, operation: Operation) -> str:
        if operation is Operation.UPSCALE:
            return DEFAULT_UPSCALE_MODEL
        return DEFAULT_GENERATE_MODEL

    def model_limits(self) -> list[ModelLimits]:
        return list(LIMITS)

    # ----------------------------------------------------------------------- prepare

    def prepare(self, job: Job) -> PreparedCall:
        if isinstance(job, UpscaleJob):
            return self._prepare_upscale(job)
        return self._prepare_generate(job)

    def _options(self, params: UpscaleParams | GenerateParams) -> DeepImageOptions:
        options = self.parse_options(params.options)
        assert isinstance(options, DeepImageOptions)
        return options

    def _prepare_upscale(self, job: UpscaleJob) -> DeepImageCall:
        params, info = job.params, job.image.info
        model = params.model or DEFAULT_UPSCALE_MODEL
        limits = self.limits_for(model, Operation.UPSCALE)
        options = self._options(params)
        out_format, quality = output_of(params)
        errors = check_input_image(self.id, limits, info)
        errors += check_output(self.id, limits, out_format, quality)
        errors += check_factor(params, info, limits)
        errors += check_generative(params, options)
        if errors:
            raise self.refuse(errors)
        payload = upscale_payload(params, options, model, info)
        _, _, factor = target_size(params, info, DEFAULT_SCALE)
        return DeepImageCall(
            self.id,
            Operation.UPSCALE,
            model,
            factor_warnings(factor),
            payload=payload,
            image=job.image,
            multipart=info.size > self.inline_max_bytes,
            target_loc=target_loc(params),
            requested_format=out_format,
        )

    def _prepare_generate(self, job: GenerateJob) -> DeepImageCall:
        params = job.params
        model = params.model or DEFAULT_GENERATE_MODEL
        limits = self.limits_for(model, Operation.GENERATE)
        options = self._options(params)
        out_format, quality = output_of(params)
        errors = check_output(self.id, limits, out_format, quality)
        bad_n = check_range(self.id, "n", params.n, limits.n)
        errors += [bad_n] if bad_n else []
        if errors:
            raise self.refuse(errors)
        payload = generate_payload(params, options, model)
        return DeepImageCall(
            self.id,
            Operation.GENERATE,
            model,
            payload=payload,
            target_loc="width" if params.width is not None else "height",
            requested_format=out_format,
        )

    # ----------------------------------------------------------------------- execute

    async def execute(self, call: PreparedCall, ctx: CallContext) -> ProviderResult:
        assert isinstance(call, DeepImageCall)
        client = self._require_client()
        result_url = await self._result_url(client, call, ctx)
        data = await self._download(client, result_url, ctx)
        return _result(call, data)

    async def _result_url(self, client: Transport, call: DeepImageCall, ctx: CallContext) -> str:
        handle = ctx.resume.get(self.id) if ctx.resume else None
        if handle is not None:  # a durable job's earlier run submitted it: poll, never resend
            return await self._wait_for(client, handle, call, ctx)
        submitted = await self._submit(client, call, ctx)
        if submitted.result_url is not None:
            return submitted.result_url
        if ctx.on_vendor_job is not None:  # stored before the first poll (app.jobs)
            await ctx.on_vendor_job(self.id, submitted.job)
        return await self._wait_for(client, submitted.job, call, ctx)

    def _require_client(self) -> Transport:
        if self._client is None:
            raise RuntimeError("DeepImageProvider.start() was not awaited")
        return self._client

    @property
    def _auth(self) -> dict[str, str]:
        key = self._settings.api_key
        return {"x-api-key": key.get_secret_value() if key is not None else ""}

    async def _submit(self, client: Transport, call: DeepImageCall, ctx: CallContext) -> JobStatus:
        response = await client.send(
            "POST",
            SUBMIT_PATH,
            ctx.deadline,
            body=self._body(call),
            content_type="application/json",
            headers=self._auth,
        )
        return self._job_status(response, call)

    def _body(self, call: DeepImageCall) -> Body | Multipart:
        """The submission: multipart, inline base64, or plain JSON."""
        if call.image is None:
            return [json.dumps(call.payload, separators=(",", ":")).encode()]
        if call.multipart:  # §3.1: a file part `image` plus a text part `parameters`
            info = call.image.info
            upload = FilePart(f"image.{info.format}", call.image.data, info.mime_type)
            parameters = json.dumps(call.payload, separators=(",", ":"))
            return Multipart({"parameters": parameters}, {"image": upload})
        # §3.3: "url": "base64,<data>" with the literal prefix; the caller's base64 as is.
        document = {"url": IMAGE_SLOT, **call.payload}
        return splice_json(document, call.image.base64_ascii(), prefix=b"base64,")

    async def _wait_for(
        self, client: Transport, job: str, call: DeepImageCall, ctx: CallContext
    ) -> str:
        """Poll until the job completes; 504 as soon as the deadline leaves no time for the
        next poll, without another request for the job."""
        path = RESULT_PATH + quote(job, safe="")
        for delay in self.poll_delays():
            await self.sleep(min(delay, self._time_left(ctx)))
            self._time_left(ctx)
            # After acceptance a resend would pay for a second job: nothing is retryable.
            response = await client.send(
                "GET", path, ctx.deadline, headers=self._auth, resend_safe=False
            )
            status = self._job_status(response, call, accepted=True)
            if status.result_url is not None:
                return status.result_url
        raise self._fail("stopped polling without a result")

    def _time_left(self, ctx: CallContext) -> float:
        left = ctx.deadline.remaining()
        if left <= 0:
            raise UpstreamTimeout(
                f"{self.id} did not finish the job within the request deadline",
                provider=self.id,
                reason="timeout",
            )
        return left

    def _job_status(
        self, response: VendorResponse, call: DeepImageCall, *, accepted: bool = False
    ) -> JobStatus:
        if response.status_code != 200:
            raise self._vendor_error(response, call, accepted)
        body = parse_json(response, self.id)
        if not isinstance(body, dict):
            raise self._bad_response("a job status that is not a JSON object")
        status, job, url = body.get("status"), body.get("job"), body.get("result_url")
        if status == "complete":
            if not isinstance(url, str) or not url:
                raise self._bad_response("a complete job without a result_url")
            return JobStatus(status, str(job or ""), url)
        if status in PENDING and isinstance(job, str) and job:
            return JobStatus(status, job, None)
        if status == "failed":
            raise self._job_failed(200, retryable=True)
        raise self._bad_response(f"an unexpected job status {self._redact(str(status))[:40]!r}")

    # ----------------------------------------------------------------------- errors

    def _vendor_error(
        self, response: VendorResponse, call: DeepImageCall, accepted: bool
    ) -> GatewayError:
        """Deep-Image's error statuses, translated once (§3.7; odd ones flagged)."""
        status = response.status_code
        body = _error_body(response)
        message = self._redact(str(body.get("message") or ""))
        if status == 429:  # §3.7: a concurrency limit, code TOO_MANY_REQUESTS
            return RateLimited(
                f"{self.id} is already processing as many images as the plan allows",
                provider=self.id,
                retry_after=retry_after_seconds(response.headers),
                retryable=not accepted,
                reason="rate_limited",
            )
        if body.get("status") == "failed":  # §3.7: a 500 that says "No credits were lost"
            return self._job_failed(status, retryable=True)
        if status == 503:
            return ProviderUnavailable(
                f"{self.id} is unavailable: HTTP 503",
                provider=self.id,
                retry_after=retry_after_seconds(response.headers),
                retryable=not accepted,
                reason="server_error",
            )
        if status >= 500:  # 502/504: the proxy in front of the vendor; safe before acceptance
            retryable = status in (502, 504) and not accepted
            return self._fail(f"answered HTTP {status}", "server_error", retryable=retryable)
        if status == 400:
            return self._bad_request(body, message, call)
        if _job_lost(message):  # 404 on /result: "Job not found" / "Image deleted" (§3.2)
            return self._fail(f"no longer knows the job (HTTP {status}: {message})")
        if status in (401, 403, 404):
            return self._refused_credentials(status, message)
        return self._fail(f"rejected the request (HTTP {status}: {message})")

    def _bad_request(self, body: dict[str, Any], message: str, call: DeepImageCall) -> GatewayError:
        if body.get("code") == "NOT_ENOUGH_CREDITS":  # §3.7: no credits is a 400, not a 402
            return self._fail("refused the job: the account's credits are exhausted")
        if "cannot be upscaled above" in message:  # §3.7/§3.8: the server's size limit
            rule = f"{self.id}: {message}"
            error = FieldError(
                (call.target_loc,), "the output is over Deep-Image's size limit", rule
            )
            return ValidationFailed(rule, errors=[error], provider=self.id, reason="client_error")
        return self._fail(f"rejected the request (HTTP 400: {message})")

    def _refused_credentials(self, status: int, message: str) -> UpstreamError:
        """§3.7: a missing key is a 403, an unknown key a 404 "No user found for provided
        token"; 401 is the probable status of the unconfirmed-account family."""
        if "no more requests" in message.lower():  # 403: the plan's request quota
            why = "the plan has no requests left"
        else:
            why = (
                f"the credentials were refused (HTTP {status}); "
                "check IMAGE_GATEWAY_DEEPIMAGE__API_KEY"
            )
        return self._fail(f"refused the job: {why}")

    def _job_failed(self, status: int, *, retryable: bool) -> UpstreamError:
        what = f"failed to process the job (HTTP {status}, status failed)"
        return self._fail(what, reason="server_error", retryable=retryable)

    def _bad_response(self, what: str) -> UpstreamError:
        return self._fail(f"answered {what}", reason="bad_response")

    def _fail(
        self, what: str, reason: str = "client_error", retryable: bool = False
    ) -> UpstreamError:
        return UpstreamError(
            f"{self.id} {what}", provider=self.id, reason=reason, retryable=retryable
        )

    def _redact(self, text: str) -> str:
        """A vendor message made safe to show: no key, no URLs, bounded length."""
        key = self._settings.api_key.get_secret_value() if self._settings.api_key else ""
        return redact(text, [key], limit=200)

    # ----------------------------------------------------------------------- download

    async def _download(self, client: Transport, url: str, ctx: CallContext) -> bytes:
        target = self._result_location(url)
        # The result may live on another host (S3, §3.2): the key stays with the vendor.
        headers = self._auth if _origin(target) == self._origin else {}
        response = await client.send(
            "GET",
            str(target),
            ctx.deadline,
            headers=headers,
            max_bytes=self._settings.max_result_bytes,
            resend_safe=False,
        )
        status = response.status_code
        if status != 200:
            reason = "server_error" if status >= 500 else "bad_response"
            raise self._fail(f"answered HTTP {status} to the result download", reason)
        return response.content

    def _result_location(self, url: str) -> URL:
        try:
            target = URL(url, encoded=True)
        except ValueError:
            raise self._bad_response("a result location that is not a URL") from None
        if target.scheme not in _DEFAULT_PORTS or not target.host:
            raise self._bad_response("a result location that is not an http(s) URL")
        if not self._result_host_allowed(target):
            # A forged or compromised answer must not make the gateway fetch from anywhere
            # (an internal address, a metadata service): nothing is sent to that host.
            raise self._bad_response(
                f"a result location on a host it does not use ({self._redact(target.host)})"
            )
        return target

    def _result_host_allowed(self, target: URL) -> bool:
        """The API's own host (any scheme it uses), or https on a documented result host
        (``result_hosts``: deep-image.ai and its S3 store, §3.2)."""
        host = (target.host or "").lower()
        if host == (URL(self._settings.base_url).host or "").lower():
            return True
        return target.scheme == "https" and any(
            fnmatch.fnmatchcase(host, pattern) for pattern in self._settings.result_hosts
        )


# --------------------------------------------------------------------------- response mapping


def _result(call: DeepImageCall, data: bytes) -> ProviderResult:
    try:
        info = sniff(data)
    except GatewayError:
        what = "deepimage sent a result that is not a png, jpeg or webp image"
        raise UpstreamError(what, provider=PROVIDER, reason="bad_response") from None
    warnings = list(call.warnings)
    if call.requested_format is not None and info.format != call.requested_format:
        warnings.append(f"deepimage returned {info.format} instead of {call.requested_format}")
    image = OutputImage(mime_type=info.mime_type, width=info.width, height=info.height, data=data)
    return ProviderResult(images=[image], model=call.model, warnings=warnings)


def _error_body(response: VendorResponse) -> dict[str, Any]:
    """``{"message": ..., "code"?: ...}`` (§3.7), or ``{}`` for anything else."""
    body = json_or_none(response)
    return body if isinstance(body, dict) else {}


def _job_lost(message: str) -> bool:
    lowered = message.lower()
    return "job not found" in lowered or "image deleted" in lowered


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)
