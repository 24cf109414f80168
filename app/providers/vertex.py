"""Google Vertex AI Imagen (``:predict``): generate and upscale (vendors.md §1).

One endpoint serves both operations, ``POST {endpoint}/v1/projects/{project}/locations/
{location}/publishers/google/models/{model}:predict``, with ``{"instances": [...],
"parameters": {...}}`` and base64 images in JSON both ways (§1.1). Auth is an OAuth2 bearer
token from google-auth (a service-account key file, or Application Default Credentials),
cached until near expiry and refreshed in a worker thread.

The limits table, the ``options.vertex`` model and the checks that read them live in
``app.providers.vertex_limits``; this module builds requests, maps answers and errors, and
holds the credentials.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import google.auth
import google.auth.exceptions
import google.auth.transport.requests
import httpx
import requests
from google.oauth2 import service_account

from app.errors import (
    ContentFiltered,
    FieldError,
    GatewayError,
    NotAcceptable,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    ValidationFailed,
)
from app.images import MIME_TYPES, ImageInfo, sniff_base64_header
from app.providers.base import (
    CallContext,
    Deadline,
    GenerateJob,
    Job,
    ModelLimits,
    Operation,
    OutputImage,
    PreparedCall,
    Provider,
    ProviderResult,
    UpscaleJob,
)
from app.providers.http import (
    json_or_none,
    make_client,
    parse_json,
    retry_after_seconds,
    timeout_for,
    transport_error,
)
from app.providers.vertex_limits import (
    LIMITS,
    PROVIDER,
    SCOPES,
    VertexModelLimits,
    VertexOptions,
    VertexOutputOptions,
    check_generate,
    check_options,
    check_output,
    check_upscale,
    documented_size,
    upscale_factor,
)
from app.schemas import GenerateParams, OutputOptions
from app.settings import Settings

#: Stands in for the caller's base64 image until ``_encode`` splices the image in as is.
_IMAGE_PLACEHOLDER = "\u0000image"
_IMAGE_SLOT = json.dumps(_IMAGE_PLACEHOLDER)
#: Base64 characters decoded to read an answer's format and size (PNG IHDR, JPEG SOF).
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: §1.6: a prompt blocked by RAI is a 400 whose message says so (GH-ADIOS, GH-DIAL); the
#: seed-with-watermark 400 (GH-SEED) shares the prefix but none of these words.
_SAFETY_BLOCK = re.compile(
    r"safety|blocked|violat|prohibit|usage guidelines|responsible ai|support codes", re.I
)
_MESSAGE_CHARS = 300


@dataclass
class VertexCall(PreparedCall):
    path: str = ""
    body: bytes = b""
    #: Images asked for (sampleCount), to tell the caller when some were filtered.
    requested: int = 1


class VertexProvider(Provider):
    id: ClassVar[str] = PROVIDER
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.UPSCALE, Operation.GENERATE})
    options_model = VertexOptions

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.vertex
        self._client: httpx.AsyncClient | None = None
        #: Set by ``start()``; public so that tests can steer its clock.
        self.tokens: TokenSource | None = None

    def default_model(self, operation: Operation) -> str:
        if operation is Operation.UPSCALE:
            return self._settings.upscale_model
        return self._settings.generate_model

    def model_limits(self) -> list[ModelLimits]:
        return list(LIMITS)

    async def start(self) -> None:
        credentials = await asyncio.to_thread(load_credentials, self._settings.credentials_file)
        self.tokens = TokenSource(
            credentials, request_timeout_s=min(30.0, self._settings.timeout_s)
        )
        self._client = make_client(self._settings.endpoint)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self.tokens is not None:
            self.tokens.close()

    # ------------------------------------------------------------------ prepare

    def prepare(self, job: Job) -> PreparedCall:
        operation = job.operation
        limits = self.limits_for(job.params.model or self.default_model(operation), operation)
        assert isinstance(limits, VertexModelLimits)
        options = self.parse_options(job.params.options)
        assert isinstance(options, VertexOptions)
        errors = check_options(limits, operation, options)
        errors += check_output(limits, job.params.output, options.outputOptions)
        if isinstance(job, GenerateJob):
            errors += check_generate(limits, job.params, options)
            if errors:
                raise self.refuse(errors)
            return self._generate_call(limits, job.params, options)
        errors += check_upscale(limits, job.params, job.image.info)
        if errors:
            raise self.refuse(errors)
        return self._upscale_call(limits, job, options)

    def _generate_call(
        self, limits: VertexModelLimits, params: GenerateParams, options: VertexOptions
    ) -> VertexCall:
        parameters: dict[str, Any] = {"sampleCount": params.n}
        ratio, size = _ratio_and_size(limits, params, options)
        _put(parameters, aspectRatio=ratio, negativePrompt=params.negative_prompt, seed=params.seed)
        _put(parameters, sampleImageSize=size, **_native_parameters(options, {"sampleImageSize"}))
        _put(parameters, outputOptions=_output_options(params.output, options.outputOptions))
        body = _with_labels(
            {"instances": [{"prompt": params.prompt}], "parameters": parameters}, options
        )
        return VertexCall(
            PROVIDER,
            Operation.GENERATE,
            limits.model,
            warnings=_seed_warning(limits, params, options),
            path=self._path(limits.model),
            body=_encode(body),
            requested=params.n,
        )

    def _upscale_call(
        self, limits: VertexModelLimits, job: UpscaleJob, options: VertexOptions
    ) -> VertexCall:
        factor = upscale_factor(limits, job.params, job.image.info)
        assert factor is not None
        config: dict[str, Any] = {"upscaleFactor": f"x{factor}"}
        _put(
            config,
            enhanceInputImage=options.enhanceInputImage,
            imagePreservationFactor=options.imagePreservationFactor,
        )
        # §1.5: shape A (S000) sends an empty prompt; shape B as the python-genai SDK sends it.
        image: dict[str, Any] = {"bytesBase64Encoded": _IMAGE_PLACEHOLDER}
        if limits.upscale_shape == "legacy":
            instance: dict[str, Any] = {"prompt": "", "image": image}
        else:
            instance = {"image": {**image, "mimeType": job.image.info.mime_type}}
        parameters: dict[str, Any] = {"sampleCount": 1, "mode": "upscale", "upscaleConfig": config}
        native = _native_parameters(
            options, exclude={"enhanceInputImage", "imagePreservationFactor"}
        )
        _put(
            parameters,
            **native,
            outputOptions=_output_options(job.params.output, options.outputOptions),
        )
        body = _with_labels({"instances": [instance], "parameters": parameters}, options)
        return VertexCall(
            PROVIDER,
            Operation.UPSCALE,
            limits.model,
            path=self._path(limits.model),
            body=_encode(body, job.image.base64_ascii()),
        )

    def _path(self, model: str) -> str:
        project = quote(self._settings.project or "", safe="")
        location = quote(self._settings.location, safe="")
        resource = f"projects/{project}/locations/{location}/publishers/google/models/{model}"
        return f"/v1/{resource}:predict"  # §1.1

    # ------------------------------------------------------------------ execute

    async def execute(self, call: PreparedCall, ctx: CallContext) -> ProviderResult:
        assert isinstance(call, VertexCall)
        if self._client is None or self.tokens is None:
            raise ProviderUnavailable("the vertex provider is not started", provider=PROVIDER)
        token = await self.tokens.get(ctx.deadline)
        response = await self._post(call, token, ctx)
        if response.status_code == 401:
            # The token was revoked or expired early: refresh once and retry once (§1.7 401).
            token = await self.tokens.get(ctx.deadline, stale=token)
            response = await self._post(call, token, ctx)
        if response.status_code != 200:
            raise _vendor_error(response, call, token)
        return _result(response, call, ctx.wants_bytes)

    async def _post(self, call: VertexCall, token: str, ctx: CallContext) -> httpx.Response:
        assert self._client is not None and self.tokens is not None
        headers = {
            "authorization": f"Bearer {token}",
            "content-type": "application/json; charset=utf-8",
        }
        if self.tokens.quota_project:
            headers["x-goog-user-project"] = self.tokens.quota_project
        timeout = timeout_for(ctx.deadline, PROVIDER, self._settings.timeout_s)
        try:
            return await self._client.post(
                call.path, content=call.body, headers=headers, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, PROVIDER) from None


# ---------------------------------------------------------------------- request building


def _put(target: dict[str, Any], **values: Any) -> None:
    """Set the fields that have a value; Vertex applies its own defaults to the rest."""
    target.update({key: value for key, value in values.items() if value is not None})


def _native_parameters(options: VertexOptions, exclude: set[str] | None = None) -> dict[str, Any]:
    """``options.vertex`` fields that go into ``parameters`` unchanged."""
    skip = {"outputOptions", "labels", *(exclude or ())}
    return options.model_dump(exclude_none=True, exclude=skip)


def _with_labels(body: dict[str, Any], options: VertexOptions) -> dict[str, Any]:
    if options.labels:
        body["labels"] = options.labels  # a sibling of parameters (§1.4)
    return body


def _ratio_and_size(
    limits: VertexModelLimits, params: GenerateParams, options: VertexOptions
) -> tuple[str | None, str | None]:
    """aspectRatio and sampleImageSize: as given, or of the documented size width x height
    (sampleImageSize only on models that take it; check_generate refused conflicts)."""
    size = options.sampleImageSize
    if params.aspect_ratio is not None:
        return params.aspect_ratio, size
    found = documented_size(limits, params.width, params.height)
    if found is None:
        return None, size
    ratio, documented = found
    return ratio, documented if limits.sample_image_sizes else size


def _output_options(
    output: OutputOptions | None, native: VertexOutputOptions | None
) -> dict[str, Any] | None:
    if native is not None:
        return native.model_dump(exclude_none=True) or None
    if output is None:
        return None
    out: dict[str, Any] = {}
    _put(
        out,
        mimeType=MIME_TYPES[output.format] if output.format else None,
        compressionQuality=output.quality,
    )
    return out or None


def _seed_warning(
    limits: VertexModelLimits, params: GenerateParams, options: VertexOptions
) -> list[str]:
    enhance = (
        options.enhancePrompt
        if options.enhancePrompt is not None
        else limits.enhance_prompt_default
    )
    if params.seed is None or not enhance:
        return []
    return ["vertex: seed has no effect while enhancePrompt is on (options.vertex.enhancePrompt)"]


def _encode(body: dict[str, Any], image_b64: bytes | memoryview | None = None) -> bytes:
    """The JSON body, with the caller's base64 spliced into the image slot as is. The slot is
    the first string after ``instances`` begins, so no caller text can come before it."""
    text = json.dumps(body, separators=(",", ":"))
    if image_b64 is None:
        return text.encode()
    head, slot, tail = text.partition(_IMAGE_SLOT)
    assert slot, "the image slot is missing"
    return b"".join((head.encode(), b'"', image_b64, b'"', tail.encode()))


# ---------------------------------------------------------------------- answers


def _result(response: httpx.Response, call: VertexCall, wants_bytes: bool) -> ProviderResult:
    predictions = _predictions(parse_json(response, PROVIDER))
    images: list[OutputImage] = []
    stored: list[str] = []
    filtered: list[str] = []
    rewritten: str | None = None
    for prediction in predictions:
        if "contentType" in prediction:
            continue  # the "Positive Prompt" safety entry of includeSafetyAttributes (§1.6)
        data, uri, reason = (
            prediction.get(k) for k in ("bytesBase64Encoded", "gcsUri", "raiFilteredReason")
        )
        if isinstance(data, str) and data:
            images.append(_output_image(data, prediction.get("mimeType")))
        elif isinstance(uri, str) and uri:
            stored.append(uri)  # storageUri was set: the image is in Cloud Storage (§1.6)
        elif isinstance(reason, str):
            filtered.append(reason)
        elif data is not None:
            raise _bad_response("an image that is not a base64 string")
        if isinstance(prediction.get("prompt"), str):
            rewritten = prediction["prompt"]
    if not images and not stored:
        raise ContentFiltered(
            _filtered_detail(filtered), provider=PROVIDER, reason="content_filtered"
        )
    if stored and not images and wants_bytes:
        raise NotAcceptable(
            f"vertex stored the images in Cloud Storage (storageUri): {', '.join(stored)}; "
            "ask for application/json",
            provider=PROVIDER,
        )
    warnings = [
        *call.warnings,
        *_result_warnings(call, len(images) + len(stored), filtered, stored, rewritten),
    ]
    return ProviderResult(images=images, model=call.model, warnings=warnings)


def _predictions(body: Any) -> list[dict[str, Any]]:
    """``predictions`` of a 200 answer; ``{}`` without it means zero images (§1.6, FB-IOS)."""
    if not isinstance(body, dict):
        raise _bad_response("a body that is not a JSON object")
    predictions = body.get("predictions", [])
    if not isinstance(predictions, list) or not all(isinstance(p, dict) for p in predictions):
        raise _bad_response("predictions that are not a list of objects")
    return predictions


def _filtered_detail(reasons: list[str]) -> str:
    detail = (
        "vertex filtered every image with its Responsible AI safety filters; rephrase the prompt"
    )
    return f"{detail}: {_clip(reasons[0])}" if reasons else detail


def _result_warnings(
    call: VertexCall, returned: int, filtered: list[str], stored: list[str], rewritten: str | None
) -> list[str]:
    warnings: list[str] = []
    if returned < call.requested:
        why = f": {_clip(filtered[0])}" if filtered else ""
        warnings.append(
            f"vertex filtered {call.requested - returned} of {call.requested} images "
            f"with its safety filters{why}"
        )
    if stored:
        warnings.append(
            f"vertex stored the images in Cloud Storage (storageUri): {', '.join(stored)}"
        )
    if rewritten is not None:
        warnings.append(f"vertex rewrote the prompt (enhancePrompt): {_clip(rewritten)}")
    return warnings


def _output_image(data: str, mime_type: Any) -> OutputImage:
    """The vendor's base64 passed through; format and size read from the first few KB."""
    info = _sniff_prefix(data)
    mime = mime_type if isinstance(mime_type, str) and mime_type else info.mime_type
    width = info.width or None
    height = info.height or None
    return OutputImage(mime_type=mime, width=width, height=height, b64=data)


def _sniff_prefix(data: str) -> ImageInfo:
    info = sniff_base64_header(data)
    if info is None:
        raise _bad_response("an image that is not png, jpeg or webp base64")
    return info


def _bad_response(what: str) -> UpstreamError:
    return UpstreamError(f"vertex answered with {what}", provider=PROVIDER, reason="bad_response")


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "…"


# ---------------------------------------------------------------------- errors


def _rpc_error(response: httpx.Response) -> tuple[str, str]:
    """(status, message) of a google.rpc error body (§1.7); python-genai also tolerates a
    top-level code/message/status and a one-element list, and so does the gateway."""
    data = json_or_none(response)
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        data = data["error"]
    if not isinstance(data, dict):
        return "", ""
    status, message = data.get("status"), data.get("message")
    return (status if isinstance(status, str) else ""), (
        message if isinstance(message, str) else ""
    )


def _vendor_error(response: httpx.Response, call: VertexCall, token: str) -> GatewayError:
    """One vendor failure, translated once (§1.7). The token never reaches a detail."""
    code = response.status_code
    status, message = _rpc_error(response)
    message = _clip(message.replace(token, "[redacted]"))
    where = f"HTTP {code} {status}".rstrip()
    retry_after = retry_after_seconds(response.headers)
    if code == 400 and _SAFETY_BLOCK.search(message):
        return ContentFiltered(
            f"vertex refused the prompt: {message}", provider=PROVIDER, reason="content_filtered"
        )
    if code == 400:
        return ValidationFailed(
            f"vertex refused the request ({where}): {message}",
            provider=PROVIDER,
            reason="client_error",
        )
    if code in (401, 403):
        return UpstreamError(
            f"vertex refused the gateway's Google credentials ({where}); check the "
            "service account, its roles and IMAGE_GATEWAY_VERTEX__PROJECT",
            provider=PROVIDER,
            reason="client_error",
        )
    if code == 404:
        return ValidationFailed(
            f"vertex has no model {call.model!r} for this project and location ({where})",
            errors=[
                FieldError(
                    ("model",), "model not found", f"vertex: model {call.model} was not found"
                )
            ],
            provider=PROVIDER,
            reason="client_error",
        )
    if code == 429:
        return RateLimited(
            f"vertex quota exhausted ({where}): {message}",
            provider=PROVIDER,
            retry_after=retry_after,
            reason="rate_limited",
        )
    return _server_error(code, where, retry_after)


def _server_error(code: int, where: str, retry_after: float | None) -> GatewayError:
    # The gateway's retry rule (issue 6) resends 502/503/504 from any vendor; INTERNAL (500)
    # is not resent, since the same input usually fails the same way. (AIP-194 is stricter
    # about DEADLINE_EXCEEDED; IMAGE_GATEWAY_RETRY__MAX_ATTEMPTS=1 turns retries off.)
    if code == 503:
        return ProviderUnavailable(
            f"vertex is unavailable ({where})",
            provider=PROVIDER,
            retry_after=retry_after,
            reason="server_error",
            retryable=True,
        )
    if code == 504:
        return UpstreamTimeout(
            f"vertex timed out on its side ({where})",
            provider=PROVIDER,
            reason="timeout",
            retryable=True,
        )
    reason = "server_error" if code >= 500 else "client_error"
    return UpstreamError(
        f"vertex failed ({where})", provider=PROVIDER, reason=reason, retryable=code == 502
    )


# ---------------------------------------------------------------------- auth


def load_credentials(path: Path | None) -> Any:
    """The service-account key file if configured, else Application Default Credentials
    (which honour ``GOOGLE_APPLICATION_CREDENTIALS``), with the cloud-platform scope (§1.1)."""
    try:
        if path is not None:
            return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(path), scopes=list(SCOPES)
            )
        credentials, _ = google.auth.default(scopes=list(SCOPES))
        return credentials
    except (OSError, ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        source = (
            f"IMAGE_GATEWAY_VERTEX__CREDENTIALS_FILE ({path})"
            if path is not None
            else "Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud, GCE)"
        )
        raise RuntimeError(
            f"vertex: cannot load Google credentials from {source}: {type(exc).__name__}"
        ) from None


@dataclass(frozen=True)
class _Token:
    value: str
    #: On the source's clock; refreshed before this point.
    fresh_until: float


@dataclass
class TokenSource:
    """OAuth2 access tokens from google-auth credentials, cached until near expiry.

    google-auth refreshes with blocking I/O (``requests``), so a refresh runs in a worker
    thread. At most one refresh is in flight: it is a shared task that every caller needing a
    token waits on (within its own deadline), so callers that give up never leave a second
    refresh racing the first on the same credentials object.
    """

    credentials: Any
    request_timeout_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    #: Refresh this long before expiry (at most half the token's lifetime).
    margin_s: float = 300.0
    _token: _Token | None = field(default=None, init=False)
    _refreshing: asyncio.Task[_Token] | None = field(default=None, init=False)
    _session: requests.Session = field(default_factory=requests.Session, init=False)

    def __post_init__(self) -> None:
        self._session.trust_env = False  # like the vendor client: no proxy from the environment

    @property
    def quota_project(self) -> str | None:
        value = getattr(self.credentials, "quota_project_id", None)
        return value if isinstance(value, str) and value else None

    async def get(self, deadline: Deadline, stale: str | None = None) -> str:
        """A fresh token; ``stale`` is one the vendor refused, which forces a refresh."""
        token = self._token
        if token is not None and token.value != stale and self.clock() < token.fresh_until:
            return token.value
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh())
            self._refreshing.add_done_callback(_retrieve_exception)
        try:
            async with asyncio.timeout(deadline.check(PROVIDER)):
                return (await asyncio.shield(self._refreshing)).value
        except TimeoutError:
            raise UpstreamTimeout(
                "the Google token endpoint did not answer within the deadline",
                provider=PROVIDER,
                reason="timeout",
            ) from None

    async def _refresh(self) -> _Token:
        try:
            value, lifetime = await asyncio.to_thread(self._refresh_blocking)
        except google.auth.exceptions.TransportError:
            raise ProviderUnavailable(
                "could not reach the Google token endpoint",
                provider=PROVIDER,
                reason="connect",
                retryable=True,
            ) from None
        except google.auth.exceptions.RefreshError as exc:
            raise _refresh_refused(exc) from None
        if lifetime is None:
            fresh_until = math.inf  # no expiry given: used until the vendor refuses it (401)
        else:
            fresh_until = self.clock() + lifetime - min(self.margin_s, lifetime / 2)
        self._token = _Token(value, fresh_until)
        return self._token

    def _refresh_blocking(self) -> tuple[str, float | None]:
        request = google.auth.transport.requests.Request(self._session)
        self.credentials.refresh(functools.partial(request, timeout=self.request_timeout_s))
        expiry = self.credentials.expiry
        if expiry is None:
            return str(self.credentials.token), None
        if expiry.tzinfo is None:  # google-auth keeps naive UTC datetimes
            expiry = expiry.replace(tzinfo=UTC)
        return str(self.credentials.token), (expiry - datetime.now(UTC)).total_seconds()

    def close(self) -> None:
        self._session.close()


def _retrieve_exception(task: asyncio.Task[_Token]) -> None:
    """Mark a failed refresh as seen: its callers may all have given up on it."""
    if not task.cancelled():
        task.exception()


def _refresh_refused(exc: google.auth.exceptions.RefreshError) -> GatewayError:
    # RefreshError's first argument is "<error>: <error_description>" from the token endpoint;
    # it carries neither the key nor the signed assertion.
    why = _clip(str(exc.args[0])) if exc.args else type(exc).__name__
    if getattr(exc, "retryable", False):
        return ProviderUnavailable(
            f"the Google token endpoint failed: {why}",
            provider=PROVIDER,
            reason="server_error",
            retryable=True,
        )
    return UpstreamError(
        f"the Google token endpoint refused the gateway's Google credentials: {why}",
        provider=PROVIDER,
        reason="client_error",
    )
