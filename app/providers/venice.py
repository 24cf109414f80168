"""The Venice.ai provider (vendors.md §2): ``POST /image/upscale`` and ``POST /image/generate``.

Upscale follows the seed-era schema (§2.2a) unless ``IMAGE_GATEWAY_VENICE__UPSCALE_SCHEMA``
is ``2026`` (§2.2b). Generate reaches every field of §2.3 through the normalized request or
``options.venice``. Prompt limits, steps, resolutions and styles come from
``GET /models?type=image`` and ``GET /image/styles`` (§2.5), cached for ``catalog_ttl_s``.
The limits and the mapping live in ``venice_limits``; this module does the HTTP.
Venice locks out keys that keep failing with 4xx (§2.7), so no 4xx is ever ``retryable``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError

from app import metrics
from app.errors import (
    ContentFiltered,
    FieldError,
    GatewayError,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    ValidationFailed,
)
from app.images import sniff, sniff_base64_header
from app.providers import venice_limits as vl
from app.providers.base import (
    CallContext,
    Deadline,
    GenerateJob,
    InputImage,
    Job,
    ModelLimits,
    Operation,
    OutputImage,
    PreparedCall,
    Provider,
    ProviderCatalog,
    ProviderResult,
    UpscaleJob,
)
from app.redact import redact
from app.schemas import Options
from app.settings import Settings
from app.transport import (
    Multipart,
    Transport,
    VendorResponse,
    json_or_none,
    parse_json,
    retry_after_seconds,
    splice_json,
)
from app.transport.bodies import IMAGE_SLOT, FilePart
from app.url_rules import url_problem

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

#: §2.6 MODEL_OVERLOADED defaults to 30 s; §2.7's error-budget lockout lasts 30 s.
DEFAULT_RETRY_AFTER_S = 30.0
_REFUSALS = {
    401: "refused the credentials (authentication failed; check IMAGE_GATEWAY_VENICE__API_KEY)",
    402: "balance exhausted (insufficient USD or Diem balance)",
    403: "refused access (API access disabled, or the key's model privacy blocks the model)",
}


@dataclass
class VeniceUpscaleCall(PreparedCall):
    fields: dict[str, Any] = field(default_factory=dict)  # every Venice field except image
    image: InputImage | None = None
    multipart: bool = False


@dataclass
class VeniceGenerateCall(PreparedCall):
    body: dict[str, Any] = field(default_factory=dict)
    variants: int = 1
    return_binary: bool | None = None  # the caller's choice; None lets execute() choose
    mime_type: str = "image/webp"


class VeniceProvider(Provider):
    id: ClassVar[str] = "venice"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.UPSCALE, Operation.GENERATE})

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings.venice
        self._allow_private_urls = settings.caller_urls.allow_private
        self._transport_settings = settings.transport
        self._schema = vl.UPSCALE_SCHEMAS[self._settings.upscale_schema]
        self._clock = clock
        self._client: Transport | None = None
        self._models: vl.Cached[dict[str, vl.ImageModel]] = vl.Cached()
        self._styles: vl.Cached[frozenset[str]] = vl.Cached()
        self._key_limits: vl.Cached[vl.KeyRateLimits] = vl.Cached()
        self._refresh_lock = asyncio.Lock()

    # ------------------------------------------------------------------ tables

    def default_model(self, operation: Operation) -> str:
        if operation is Operation.UPSCALE:
            return vl.UPSCALE_MODEL
        return self._settings.generate_model

    def model_limits(self) -> list[ModelLimits]:
        models = self._models.value
        if models:
            generate = [vl.generate_limits(m.id, m) for m in models.values()]
        else:
            generate = [vl.generate_limits(self._settings.generate_model, None)]
        return [self._schema.limits, *generate]

    def catalog(self, enabled: bool = True) -> ProviderCatalog:
        catalog = super().catalog(enabled)
        catalog.options_schema = {
            "upscale": self._schema.options_model.model_json_schema(),
            "generate": vl.GenerateOptions.model_json_schema(),
        }
        catalog.notes = [
            f"upscale schema {self._schema.version} (IMAGE_GATEWAY_VENICE__UPSCALE_SCHEMA)"
        ]
        if self._key_limits.value is not None:
            catalog.account = self._key_limits.value.model_dump(exclude_none=True)
        return catalog

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._client = Transport(
            self.id,
            self._settings.base_url,
            self._transport_settings,
            headers={"authorization": f"Bearer {self._key()}"},  # §2.1
            cap_s=self._settings.timeout_s,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _key(self) -> str:
        key = self._settings.api_key
        return key.get_secret_value() if key is not None else ""

    def _http(self) -> Transport:
        if self._client is None:
            raise RuntimeError("VeniceProvider.start() was not awaited")
        return self._client

    # ------------------------------------------------------------------ catalog (§2.5)

    async def refresh_catalog(self) -> None:
        """Cheap while fresh; never raises (validation falls back to the schema limits)."""
        if self._client is None or not self._catalog_due():
            return
        async with self._refresh_lock:
            if self._catalog_due():  # not refreshed by another request meanwhile
                await asyncio.gather(
                    self._refresh_models(), self._refresh_styles(), self._refresh_key_limits()
                )

    def _catalog_due(self) -> bool:
        now, ttl = self._clock(), self._settings.catalog_ttl_s
        limits_due = self._key_limits.due(now, self._settings.rate_limits_ttl_s)
        return self._models.due(now, ttl) or self._styles.due(now, ttl) or limits_due

    async def _refresh_key_limits(self) -> None:
        """The key's real limits (vendors-2026 §5), for /v1/providers and the metrics."""
        if not self._key_limits.due(self._clock(), self._settings.rate_limits_ttl_s):
            return
        content = await self._fetch("/api_keys/rate_limits", None)
        self._store(
            self._key_limits, content, lambda c: vl.KeyRateLimitsAnswer.model_validate_json(c).data
        )
        value = self._key_limits.value
        if content is not None and value is not None:
            metrics.record_key_limits(self.id, value.limits(), value.balance())

    async def _refresh_models(self) -> None:
        if self._models.due(self._clock(), self._settings.catalog_ttl_s):
            content = await self._fetch("/models", {"type": "image"})
            self._store(
                self._models, content, lambda c: vl.ModelList.model_validate_json(c).image_models()
            )

    async def _refresh_styles(self) -> None:
        if self._styles.due(self._clock(), self._settings.catalog_ttl_s):
            content = await self._fetch("/image/styles", None)
            self._store(
                self._styles, content, lambda c: frozenset(vl.StyleList.model_validate_json(c).data)
            )

    async def _fetch(self, path: str, params: dict[str, str] | None) -> bytes | None:
        deadline = Deadline(vl.CATALOG_TIMEOUT_S)
        try:
            response = await self._http().send("GET", path, deadline, params=params)
        except GatewayError as exc:
            log.warning("venice catalog %s unavailable: %s", path, exc.reason)
            return None
        if response.status_code != 200:
            log.warning("venice catalog %s answered HTTP %d", path, response.status_code)
            return None
        return response.content

    def _store(
        self, entry: vl.Cached[Any], content: bytes | None, parse: Callable[[bytes], Any]
    ) -> None:
        try:
            if content is not None:
                entry.succeeded(parse(content), self._clock())
                return
        except ValueError:  # pydantic's ValidationError is a ValueError
            log.warning("venice catalog answer could not be parsed")
        entry.failed(self._clock())  # keeps the last good value, if any

    # ------------------------------------------------------------------ prepare

    def prepare(self, job: Job) -> PreparedCall:
        if isinstance(job, UpscaleJob):
            return self._prepare_upscale(job)
        return self._prepare_generate(job)

    def _prepare_upscale(self, job: UpscaleJob) -> VeniceUpscaleCall:
        params = job.params
        self.limits_for(params.model or vl.UPSCALE_MODEL, Operation.UPSCALE)
        options = self._options(self._schema.options_model, params.options, vl.UPSCALE_NORMALIZED)
        plan = vl.plan_upscale(self._schema, params, job.image.info, options)
        if plan.errors:
            raise self.refuse(plan.errors)
        # JSON when the caller's base64 is at hand (no re-encode), multipart otherwise.
        image = job.image
        multipart = not image.has_base64 or image.base64_length > vl.MAX_JSON_IMAGE_CHARS
        return VeniceUpscaleCall(
            self.id,
            Operation.UPSCALE,
            vl.UPSCALE_MODEL,
            warnings=plan.warnings,
            fields=plan.fields,
            image=job.image,
            multipart=multipart,
        )

    def _prepare_generate(self, job: GenerateJob) -> VeniceGenerateCall:
        params = job.params
        model = params.model or self._settings.generate_model
        spec = self._image_model(model)
        options = self._options(vl.GenerateOptions, params.options, vl.GENERATE_NORMALIZED)
        limits = vl.generate_limits(model, spec)
        errors = vl.check_generate(limits, spec, self._styles.value, params, options)
        errors += self._url_errors(options)
        if errors:
            raise self.refuse(errors)
        fmt = (params.output.format if params.output else None) or vl.GEN_DEFAULT_FORMAT
        body, warnings = vl.generate_body(params, model, fmt, options, spec)
        return VeniceGenerateCall(
            self.id,
            Operation.GENERATE,
            model,
            warnings=warnings,
            body=body,
            variants=params.n,
            return_binary=options.return_binary,
            mime_type=f"image/{fmt}",
        )

    def _image_model(self, model: str) -> vl.ImageModel | None:
        """The catalog entry; None while the model list is unavailable (schema limits)."""
        models = self._models.value
        if models is None:
            return None
        if model not in models:  # Venice: 404 "Specified model not found" (§2.3)
            limit = f"model must be one of {sorted(models)}"
            raise self.refuse([vl.rule(("model",), f"unknown image model {model!r}", limit)])
        return models[model]

    def _options(self, model: type[M], options: Options | None, moved: Mapping[str, str]) -> M:
        """options.venice by ``model``: unknown fields are refused as Venice refuses them
        (strict schemas, §2.3); fields with a normalized twin point to it."""
        raw = (options or {}).get("venice") or {}
        twins = [
            vl.rule(
                vl.opt(key),
                f"set {moved[key]} instead",
                f"options.venice.{key} is set through {moved[key]}",
            )
            for key in raw
            if key in moved
        ]
        if twins:
            raise self.refuse(twins)
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise self.refuse(
                [vl.rule(("options", self.id, *e["loc"]), e["msg"], e["msg"]) for e in errors]
            ) from None

    # ------------------------------------------------------------------ execute

    async def execute(self, call: PreparedCall, ctx: CallContext) -> ProviderResult:
        if isinstance(call, VeniceUpscaleCall):
            return await self._execute_upscale(call, ctx)
        if isinstance(call, VeniceGenerateCall):
            return await self._execute_generate(call, ctx)
        raise TypeError(f"not a Venice call: {type(call).__name__}")

    async def _execute_upscale(self, call: VeniceUpscaleCall, ctx: CallContext) -> ProviderResult:
        image = call.image
        assert image is not None
        if call.multipart:  # §2.8: the file part plus text parts
            upload = FilePart(f"image.{image.info.format}", image.data, image.info.mime_type)
            form = Multipart(
                {name: _form_text(value) for name, value in call.fields.items()}, {"image": upload}
            )
            response = await self._post("/image/upscale", ctx, form)
        else:
            # Base64 needs no JSON escaping: the caller's text goes out as is (DESIGN §5).
            body = splice_json({"image": IMAGE_SLOT, **call.fields}, image.base64_ascii())
            response = await self._post("/image/upscale", ctx, body)
        return ProviderResult(
            [self._binary_image(response)],
            call.model,
            call.warnings + _warnings(response, self._key()),
        )

    async def _execute_generate(self, call: VeniceGenerateCall, ctx: CallContext) -> ProviderResult:
        # Binary spares a base64 round trip when the caller wants bytes; variants need JSON.
        binary = call.return_binary
        if binary is None:
            binary = ctx.wants_bytes and call.variants == 1
        body = call.body
        if binary or call.return_binary is not None:
            body = {**body, "return_binary": binary}
        response = await self._post(
            "/image/generate", ctx, [json.dumps(body, separators=(",", ":")).encode()]
        )
        if response.headers.get("content-type", "").startswith("application/json"):
            images = self._json_images(response, call.mime_type)
        else:
            images = [self._binary_image(response)]
        return ProviderResult(images, call.model, call.warnings + _warnings(response, self._key()))

    async def _post(
        self, path: str, ctx: CallContext, body: list[bytes | memoryview] | Multipart
    ) -> VendorResponse:
        response = await self._http().send(
            "POST", path, ctx.deadline, body=body, content_type="application/json"
        )
        rate = {
            k.lower(): v
            for k, v in response.headers.items()
            if k.lower().startswith("x-ratelimit-")
        }
        if rate and ctx.on_vendor_headers is not None:
            ctx.on_vendor_headers(self.id, rate)
        if response.status_code != 200:
            raise self._vendor_error(response, path)
        # §2.4: a flagged image is still a 200 (blacked out, or a placeholder png).
        if response.headers.get("x-venice-is-content-violation", "").lower() == "true":
            raise ContentFiltered(
                "venice flagged the image as a content violation (x-venice-is-content-violation)",
                provider=self.id,
                reason="content_filtered",
                retryable=False,
            )
        return response

    def _json_images(self, response: VendorResponse, mime_type: str) -> list[OutputImage]:
        body = parse_json(response, self.id)
        images = body.get("images") if isinstance(body, dict) else None
        if (
            not isinstance(images, list)
            or not images
            or not all(isinstance(i, str) and i for i in images)
        ):
            raise UpstreamError(
                "venice answered without images", provider=self.id, reason="bad_response"
            )
        # Venice's base64 is passed through as is (DESIGN §5); only its header is decoded.
        results = []
        for b64 in images:
            info = sniff_base64_header(b64)
            results.append(
                OutputImage(
                    mime_type=info.mime_type if info else mime_type,
                    width=info.width if info else None,
                    height=info.height if info else None,
                    b64=b64,
                )
            )
        return results

    def _binary_image(self, response: VendorResponse) -> OutputImage:
        data = response.content
        try:
            info = sniff(data)  # the bytes decide the type, not Content-Type (§2.4)
        except GatewayError:
            raise UpstreamError(
                "venice answered with a body that is not an image",
                provider=self.id,
                reason="bad_response",
            ) from None
        return OutputImage(
            mime_type=info.mime_type, width=info.width, height=info.height, data=data
        )

    # ------------------------------------------------------------------ errors (§2.6)

    def _vendor_error(self, response: VendorResponse, path: str) -> GatewayError:
        status, body = response.status_code, json_or_none(response)
        message = self._scrub(_error_text(body))
        said = f" ({message})" if message else ""
        if status in (400, 413) or (status == 422 and _code(body) == "IMAGE_TOO_LARGE"):
            return ValidationFailed(
                f"venice refused the request: HTTP {status}{said}",
                errors=list(self._field_errors(body, message)),
                provider=self.id,
                reason="client_error",
                retryable=False,
            )
        if status == 404 and path == "/image/generate":
            return ValidationFailed(
                f"venice does not know the model{said}",
                errors=[
                    vl.rule(
                        ("model",),
                        message or "model not found",
                        "model must be a Venice image model",
                    )
                ],
                provider=self.id,
                reason="client_error",
                retryable=False,
            )
        if status == 422:
            return ContentFiltered(
                f"venice refused the content{said}",
                provider=self.id,
                reason="content_filtered",
                retryable=False,
            )
        return self._status_error(status, said, response.headers)

    def _status_error(self, status: int, said: str, headers: Mapping[str, str]) -> GatewayError:
        if status == 429:  # never re-sent to Venice (§2.7); routing may try another provider
            wait = retry_after_seconds(headers) or DEFAULT_RETRY_AFTER_S
            return RateLimited(
                f"venice rate limit reached{said}",
                provider=self.id,
                retry_after=wait,
                retryable=False,
                reason="rate_limited",
            )
        if status == 503:
            return ProviderUnavailable(
                f"venice is at capacity: HTTP 503{said}",
                provider=self.id,
                retry_after=retry_after_seconds(headers),
                reason="server_error",
                retryable=True,
            )
        if status >= 500:
            # 502/504 are the proxy in front of Venice; a 500 is inference failing on this
            # input, which sending it again would likely repeat (and bill).
            return UpstreamError(
                f"venice failed: HTTP {status}{said}",
                provider=self.id,
                reason="server_error",
                retryable=status in (502, 504),
            )
        cause = _REFUSALS.get(status, "refused the request")
        return UpstreamError(
            f"venice {cause}: HTTP {status}{said}",
            provider=self.id,
            reason="client_error",
            retryable=False,
        )

    def _field_errors(self, body: Any, message: str) -> Iterator[FieldError]:
        """A zod ``format()`` tree (DetailedError ``details``, §2.6) as errors at gateway
        locations; else the flat ``issues`` list; else one error for the whole request."""
        details = body.get("details") if isinstance(body, dict) else None
        found = list(self._walk(details, ())) if isinstance(details, dict) else []
        issues = body.get("issues") if isinstance(body, dict) else None
        if not found and isinstance(issues, list):
            found = [
                self._field_error(_issue_path(i), str(i.get("message")))
                for i in issues
                if isinstance(i, dict)
            ]
        yield from found or [self._field_error((), message or "venice refused the request")]

    def _walk(self, tree: dict[str, Any], path: tuple[str, ...]) -> Iterator[FieldError]:
        for msg in tree.get("_errors") or []:
            yield self._field_error(path, str(msg))
        for key, sub in tree.items():
            if key != "_errors" and isinstance(sub, dict):
                yield from self._walk(sub, (*path, str(key)))

    def _field_error(self, path: tuple[str, ...], msg: str) -> FieldError:
        text = self._scrub(msg)
        return vl.rule(_gateway_loc(path), text, f"{'.'.join(path) or 'request'}: {text}")

    def _url_errors(self, options: vl.GenerateOptions) -> list[FieldError]:
        """Style references given as URLs: https and public only (``app/url_rules.py``)."""
        found = []
        for i, ref in enumerate(options.style_references or []):
            why = url_problem(ref.image, self._allow_private_urls)
            if why:
                loc = ("options", self.id, "style_references", i, "image")
                found.append(vl.rule(loc, why, "style reference URLs must be public https"))
        return found

    def _scrub(self, text: str) -> str:
        """Vendor text goes into error details: bounded, and never with the key in it."""
        return redact(text, [self._key()])


# --------------------------------------------------------------------------- wire helpers


def _form_text(value: Any) -> str:
    if isinstance(value, bool):  # §2.8: multipart booleans are the strings "true"/"false"
        return "true" if value else "false"
    return str(value)


def _warnings(response: VendorResponse, key: str) -> list[str]:
    """§2.4: a blurred image and a deprecated model become warnings. Every header text is
    the vendor's: redacted (the key masked before any cut) like any vendor text."""
    headers, warnings = response.headers, []
    if headers.get("x-venice-is-blurred", "").lower() == "true":
        warnings.append("venice: safe_mode blurred the image (x-venice-is-blurred)")
    notice = redact(headers.get("x-venice-model-deprecation-warning", ""), [key])
    if notice or headers.get("x-venice-deprecated", "").lower() == "true":
        text = "venice: the model is deprecated"
        if date := headers.get("x-venice-model-deprecation-date"):
            text += f" from {redact(date, [key], limit=64)}"
        if replacement := headers.get("x-venice-deprecated-replacement"):
            text += f" (replacement: {redact(replacement, [key], limit=128)})"
        warnings.append(text + (f": {notice}" if notice else ""))
    return warnings


def _error_text(body: Any) -> str:
    """StandardError ``error`` (§2.6), prefixed with ``code`` where Venice adds one."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return ""
    code = _code(body)
    return f"{code}: {body['error']}" if code else str(body["error"])


def _code(body: Any) -> str | None:
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def _issue_path(issue: dict[str, Any]) -> tuple[str, ...]:
    path = issue.get("path")
    return tuple(str(p) for p in path) if isinstance(path, list) else ()


def _gateway_loc(path: tuple[str, ...]) -> vl.Loc:
    """Where a Venice field lives in the normalized request (``variants`` is ``n``, ...)."""
    if not path:
        return ("body",)
    head = vl.VENDOR_LOCS.get(path[0], vl.opt(path[0]))
    return head + tuple(int(p) if p.isdigit() else p for p in path[1:])
