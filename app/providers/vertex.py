"""Google Vertex AI: generate on the Gemini image models (``generateContent``,
vendors-2026 §2) and upscale on ``imagen-4.0-upscale-preview`` (``:predict``, vendors.md
§1.5 shape B, vendors-2026 §3).

``POST {host}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:
{method}`` where the host of ``global`` has no region prefix (§2.1): a model served only
there (``gemini-3.1-flash-image``) goes to it whatever the configured location. Auth is an
OAuth2 bearer from google-auth (``vertex_auth``). The table and the checks live in
``vertex_limits`` / ``vertex_checks``, the Gemini bodies and answers in ``vertex_gemini``;
this module sends, and translates failures once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

from app.errors import (
    ContentFiltered,
    FieldError,
    GatewayError,
    ModelDiscontinued,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    ValidationFailed,
)
from app.images import MIME_TYPES
from app.providers import vertex_gemini as gemini
from app.providers.base import (
    CallContext,
    GenerateJob,
    Job,
    ModelLimits,
    Operation,
    PreparedCall,
    Provider,
    ProviderResult,
    UpscaleJob,
    Usage,
)
from app.providers.vertex_auth import TokenSource, load_credentials
from app.providers.vertex_checks import (
    check_generate,
    check_options,
    check_output,
    check_upscale,
    upscale_factor,
)
from app.providers.vertex_limits import (
    PROVIDER,
    VertexModelLimits,
    VertexOptions,
    with_extra_models,
)
from app.redact import clip, redact
from app.settings import Settings
from app.transport import (
    Body,
    ProxyRules,
    Transport,
    VendorResponse,
    json_or_none,
    parse_json,
    retry_after_seconds,
    splice_json,
)
from app.transport.bodies import IMAGE_SLOT

#: vendors.md §1.6: a prompt blocked by RAI is a 400 whose message says so (GH-ADIOS).
_SAFETY_BLOCK = re.compile(
    r"safety|blocked|violat|prohibit|usage guidelines|responsible ai|support codes", re.I
)


@dataclass
class VertexCall(PreparedCall):
    url: str = ""
    #: One body per vendor call: n for generate (n images), one for upscale.
    bodies: Sequence[bytes | Body] = field(default_factory=list)
    api: str = "generateContent"


class VertexProvider(Provider):
    id: ClassVar[str] = PROVIDER
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.UPSCALE, Operation.GENERATE})
    options_model = VertexOptions

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._settings = settings.vertex
        self._transport_settings = settings.transport
        self._table = with_extra_models(self._settings.extra_models)
        self._client: Transport | None = None
        #: Set by ``start()``; public so that tests can steer its clock.
        self.tokens: TokenSource | None = None

    def default_model(self, operation: Operation) -> str:
        if operation is Operation.UPSCALE:
            return self._settings.upscale_model
        return self._settings.generate_model

    def model_limits(self) -> list[ModelLimits]:
        return list(self._table)

    async def start(self) -> None:
        credentials = await asyncio.to_thread(load_credentials, self._settings.credentials_file)
        self.tokens = TokenSource(
            credentials, request_timeout_s=min(30.0, self._settings.timeout_s)
        )
        self.tokens.use_network(
            ProxyRules.from_settings(self._transport_settings), self._transport_settings.ca_bundle
        )
        self._client = Transport(
            PROVIDER,
            self._settings.endpoint,
            self._transport_settings,
            cap_s=self._settings.timeout_s,
        )

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
        if limits.api is None:
            raise self.discontinued(limits.model, limits.lifecycle)
        options = self.parse_options(job.params.options)
        assert isinstance(options, VertexOptions)
        errors = check_options(limits, operation, options) + check_output(limits, job.params.output)
        if isinstance(job, GenerateJob):
            errors += check_generate(limits, job.params, options)
            if errors:
                raise self.refuse(errors)
            planned = gemini.plan(limits, job.params, options)
            return VertexCall(
                PROVIDER, operation, limits.model, warnings=planned.warnings,
                calls=len(planned.bodies), url=self._url(limits, "generateContent"),
                bodies=planned.bodies,
            )  # fmt: skip
        errors += check_upscale(limits, job.params, job.image.info)
        if errors:
            raise self.refuse(errors)
        return self._upscale_call(limits, job, options)

    def _upscale_call(
        self, limits: VertexModelLimits, job: UpscaleJob, options: VertexOptions
    ) -> VertexCall:
        factor = upscale_factor(limits, job.params, job.image.info)
        config: dict[str, Any] = {"upscaleFactor": f"x{factor}"}
        _put(
            config,
            enhanceInputImage=options.enhanceInputImage,
            imagePreservationFactor=options.imagePreservationFactor,
        )
        # vendors-2026 §3: mode "upscale" is Required in some copies: always sent.
        parameters: dict[str, Any] = {"sampleCount": 1, "mode": "upscale", "upscaleConfig": config}
        _put(parameters, addWatermark=options.addWatermark, outputOptions=_output(job))
        image = {"bytesBase64Encoded": IMAGE_SLOT, "mimeType": job.image.info.mime_type}
        body: dict[str, Any] = {"instances": [{"image": image}], "parameters": parameters}
        _put(body, labels=options.labels)
        return VertexCall(
            PROVIDER, Operation.UPSCALE, limits.model, url=self._url(limits, "predict"),
            bodies=[_encode(body, job.image.base64_ascii())], api="predict",
        )  # fmt: skip

    def _url(self, limits: VertexModelLimits, method: str) -> str:
        location = limits.location_for(self._settings.location)
        project = quote(self._settings.project or "", safe="")
        resource = (
            f"projects/{project}/locations/{quote(location, safe='')}"
            f"/publishers/google/models/{limits.model}"
        )
        return f"{self._settings.endpoint_for(location)}/v1/{resource}:{method}"

    # ------------------------------------------------------------------ execute

    async def execute(self, call: PreparedCall, ctx: CallContext) -> ProviderResult:
        assert isinstance(call, VertexCall)
        if call.api == "predict":
            return _upscale_result(await self._send(call, call.bodies[0], ctx), call)
        # n images, n calls at once, all within the one deadline (vendors-2026 §2.2).
        answers = await asyncio.gather(
            *(self._generate_once(call, body, ctx) for body in call.bodies), return_exceptions=True
        )
        return _gathered(call, answers)

    async def _generate_once(self, call: VertexCall, body: bytes | Body, ctx: CallContext) -> Any:
        return gemini.read_answer(await self._send(call, body, ctx))

    async def _send(self, call: VertexCall, body: bytes | Body, ctx: CallContext) -> Any:
        """POST one body; the JSON answer, or the vendor's failure translated once."""
        if self._client is None or self.tokens is None:
            raise ProviderUnavailable("the vertex provider is not started", provider=PROVIDER)
        token = await self.tokens.get(ctx.deadline)
        response = await self._post(call.url, body, token, ctx)
        if response.status_code == 401:
            # The token was revoked or expired early: refresh once and retry once (§1.7 401).
            token = await self.tokens.get(ctx.deadline, stale=token)
            response = await self._post(call.url, body, token, ctx)
        if response.status_code != 200:
            raise self._vendor_error(response, call, token)
        return parse_json(response, PROVIDER)

    async def _post(
        self, url: str, body: bytes | Body, token: str, ctx: CallContext
    ) -> VendorResponse:
        assert self._client is not None and self.tokens is not None
        headers = {
            "authorization": f"Bearer {token}",
            "content-type": "application/json; charset=utf-8",
        }
        if self.tokens.quota_project:
            headers["x-goog-user-project"] = self.tokens.quota_project
        return await self._client.send("POST", url, ctx.deadline, body=body, headers=headers)

    # ------------------------------------------------------------------ errors

    def _vendor_error(self, response: VendorResponse, call: VertexCall, token: str) -> GatewayError:
        """One vendor failure, translated once (vendors-2026 §2.6). The token never reaches
        a detail."""
        code = response.status_code
        status, message = _rpc_error(response)
        message = redact(message, [token])
        where = f"HTTP {code} {status}".rstrip()
        if code == 400 and _SAFETY_BLOCK.search(message):
            return ContentFiltered(
                f"vertex refused the prompt: {message}",
                provider=PROVIDER,
                reason="content_filtered",
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
            return self._retired(call, where)
        if code == 429:
            return RateLimited(
                f"vertex quota exhausted ({where}): {message}",
                provider=PROVIDER,
                retry_after=retry_after_seconds(response.headers),
                reason="rate_limited",
            )
        return _server_error(code, where, retry_after_seconds(response.headers))

    def _retired(self, call: VertexCall, where: str) -> ModelDiscontinued:
        """404 NOT_FOUND is how Vertex answers a retired model id (V-LIFE)."""
        lifecycle = self.lifecycle_of(call.model, call.operation)
        instead = (lifecycle.replacement if lifecycle else None) or self.default_model(
            call.operation
        )
        limit = (
            f"vertex: model {call.model} was not found (retired, or not served here); use {instead}"
        )
        return ModelDiscontinued(
            f"vertex has no model {call.model!r} for this project and location ({where}); "
            f"use {instead}",
            errors=[FieldError(("model",), "model not found", limit)],
            provider=PROVIDER,
            reason="client_error",
            replacement=instead,
        )


# ---------------------------------------------------------------------- helpers


def _put(target: dict[str, Any], **values: Any) -> None:
    target.update({key: value for key, value in values.items() if value is not None})


def _output(job: UpscaleJob) -> dict[str, Any] | None:
    output = job.params.output
    if output is None or (output.format is None and output.quality is None):
        return None
    out: dict[str, Any] = {"mimeType": MIME_TYPES[output.format or "png"]}
    _put(out, compressionQuality=output.quality)
    return out


def _encode(body: dict[str, Any], image_b64: bytes | memoryview) -> Body:
    """The JSON body with the caller's base64 spliced into the image slot as is. The slot is
    the first string after ``instances`` begins, so no caller text can come before it."""
    return splice_json(body, image_b64)


def _gathered(call: VertexCall, results: list[Any]) -> ProviderResult:
    """n answers as one result: filtered or failed calls are warnings while at least one
    image came back; otherwise the failure (or ``content_filtered``) is the answer."""
    crashed = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, GatewayError)
    ]
    if crashed:
        raise crashed[0]
    failures = [r for r in results if isinstance(r, GatewayError)]
    answers = [r for r in results if isinstance(r, gemini.Answer)]
    images = [image for answer in answers for image in answer.images]
    filtered = [a.filtered for a in answers if a.filtered]
    usage = sum((a.usage for a in answers), Usage())
    if not images:
        if failures:
            raise failures[0]
        raise ContentFiltered(
            f"vertex returned no image: {filtered[0]}", provider=PROVIDER, reason="content_filtered"
        )
    asked = len(call.bodies)
    warnings = list(call.warnings)
    if filtered:
        reasons = "; ".join(dict.fromkeys(filtered))
        warnings.append(f"vertex filtered {len(filtered)} of {asked} images: {reasons}")
    if failures:
        warnings.append(f"vertex: {len(failures)} of {asked} calls failed: {failures[0].detail}")
    return ProviderResult(images=images, model=call.model, warnings=warnings, usage=usage)


def _upscale_result(body: Any, call: VertexCall) -> ProviderResult:
    """``{"predictions":[{"mimeType","bytesBase64Encoded"}]}`` (vendors.md §1.6)."""
    predictions = body.get("predictions") if isinstance(body, dict) else None
    first = predictions[0] if isinstance(predictions, list) and predictions else {}
    if not isinstance(first, dict):
        raise gemini.bad_response("predictions that are not a list of objects")
    data, reason = first.get("bytesBase64Encoded"), first.get("raiFilteredReason")
    if not data and (isinstance(reason, str) or first == {}):
        why = f": {clip(reason)}" if isinstance(reason, str) else ""
        raise ContentFiltered(
            f"vertex filtered the upscaled image{why}", provider=PROVIDER, reason="content_filtered"
        )
    image = gemini.output_image(data, str(first.get("mimeType") or "image/png"))
    return ProviderResult(images=[image], model=call.model, warnings=list(call.warnings))


def _rpc_error(response: VendorResponse) -> tuple[str, str]:
    """(status, message) of a google.rpc error body (vendors.md §1.7); python-genai also
    tolerates a top-level code/message/status and a one-element list, and so does this."""
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


def _server_error(code: int, where: str, retry_after: float | None) -> GatewayError:
    # The gateway's retry rule resends 502/503/504 from any vendor; INTERNAL (500) is not
    # resent, since the same input usually fails the same way. Google advises at most two
    # retries from 1 s (V-ERR): IMAGE_GATEWAY_RETRY__MAX_ATTEMPTS bounds them.
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
