"""What an operation endpoint does once the body is parsed: content negotiation, the
deadline, routing, and the response (JSON, or raw image bytes for ``Accept: image/*``)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app import metrics
from app.callers.auth import caller_key
from app.callers.keys import CallerKey
from app.callers.spend import (
    COST_HEADER,
    CallSpend,
    Spending,
    dry_run_asked,
    providers_of,
    usd_text,
)
from app.domain import CallContext, Deadline, Job, Outcome, OutputImage, UpscaleJob
from app.errors import FieldError, InvalidRequest, NotAcceptable
from app.providers.pricing import Cost
from app.record import RequestRecord, record_of
from app.routing import Router
from app.schemas import OutputOptions
from app.settings import Settings

_IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp", "image/*": None}
#: Accept values that take an image of any type, on the raw endpoints.
_ANY_BYTES = {"*/*": "image/*", "application/octet-stream": "application/octet-stream"}


class GatewayService:
    def __init__(self, settings: Settings, router: Router, spending: Spending) -> None:
        self.settings = settings
        self.router = router
        self.spending = spending

    async def serve(
        self, request: Request, job: Job, raw: bool = False, dry_run: bool | None = None
    ) -> Response:
        """``raw``: the endpoint answers the image's bytes, never JSON. ``dry_run``: set by
        the dry-run endpoints, else ``?dry_run=true``."""
        started = time.perf_counter()
        wants = negotiate(request.headers.get("accept"), job, raw)
        dry_run = dry_run_asked(request) if dry_run is None else dry_run
        outcome = await self.run(request, job, wants_bytes=wants is not None, dry_run=dry_run)
        record = record_of(request)
        assert record.cost is not None  # run() priced it
        cost = record.cost
        if dry_run:
            return dry_run_response(outcome, cost)
        headers = result_headers(outcome, record.attempt_labels, cost)
        if wants is not None:
            return _image_response(outcome, headers, wants)
        return _json_response(outcome, headers, started, cost)

    async def run(
        self, request: Request, job: Job, wants_bytes: bool = False, dry_run: bool = False
    ) -> Outcome:
        """Route ``job`` within the request's deadline, for the caller's key (its providers,
        its budgets); what happened, and its cost (on a dry run the estimate), goes on
        the request's record (``app.record``)."""
        key = caller_key(request)
        estimates: list[Cost] = []
        state = record_of(request)
        ctx = self.context(key, job, state.request_id, self._timeout(request), estimates)
        ctx.wants_bytes, ctx.dry_run = wants_bytes, dry_run
        if ctx.spend is not None:
            ctx.spend.dry_run = dry_run
        if isinstance(job, UpscaleJob):
            metrics.IMAGE_BYTES.labels(direction="in").observe(job.image.info.size)
        try:
            outcome = await self.router.run(job, ctx)
        except BaseException:
            await self.release(ctx)
            raise
        finally:
            _record_attempts(state, ctx)
        state.provider, state.model = outcome.provider, outcome.result.model
        if dry_run:
            state.cost = estimates[-1]
            return outcome
        state.cost = await self.settle(key, job, outcome, ctx)
        return outcome

    def context(
        self,
        key: CallerKey | None,
        job: Job,
        request_id: str,
        deadline_s: float,
        estimates: list[Cost],
    ) -> CallContext:
        """The call context for ``key`` (its providers, its budgets); also used by a
        durable job (app.jobs), which runs without a request."""
        spend = CallSpend(self.spending, key, job, estimates)
        return CallContext(
            request_id=request_id,
            deadline=Deadline(deadline_s),
            on_vendor_headers=metrics.record_vendor_headers,
            allowed_providers=providers_of(key, job),
            before_call=spend.before_call,
            spend=spend,
        )

    async def settle(
        self, key: CallerKey | None, job: Job, outcome: Outcome, ctx: CallContext | None = None
    ) -> Cost:
        """What the call cost, recorded against ``key`` (its reserved budget settled)."""
        cost = self.spending.actual(job, outcome)
        spend = ctx.spend if ctx is not None else None
        reservations = spend.reservations if spend is not None else []
        request_id = ctx.request_id if ctx is not None else ""
        await self.spending.record(key, job, outcome, cost, reservations, request_id)
        return cost

    async def release(self, ctx: CallContext | None) -> None:
        """The call failed: what it reserved of the key's budgets is given back."""
        if ctx is not None and ctx.spend is not None:
            await ctx.spend.release()

    def _timeout(self, request: Request) -> float:
        """The configured deadline, lowered (never raised) by ``X-Request-Timeout`` seconds."""
        limit = self.settings.request_timeout_s
        given = request.headers.get("x-request-timeout")
        if given is None:
            return limit
        try:
            asked = float(given)
        except ValueError:
            asked = float("nan")
        if not asked > 0:  # also catches NaN
            raise InvalidRequest(
                "X-Request-Timeout must be a positive number of seconds",
                errors=[FieldError(("header", "X-Request-Timeout"), "not a positive number")],
            )
        return min(asked, limit)


def _record_attempts(state: RequestRecord, ctx: CallContext) -> None:
    """What the middleware logs and the error handler reports, success or not."""
    attempts = ctx.attempts
    state.attempts = sum(not a.skipped for a in attempts)
    state.attempt_labels = ", ".join(a.label() for a in attempts)
    state.upstream_s = sum(a.seconds for a in attempts)
    called = [a for a in attempts if not a.skipped]
    if called:
        state.provider = called[-1].provider


def negotiate(accept: str | None, job: Job, raw: bool = False) -> str | None:
    """``None`` for JSON, else the image media type the caller asked for. An ``image/jpeg``
    (or webp/png) Accept picks the output format when the request did not."""
    current = job.params.output.format if job.params.output else None
    wanted = _preferred_image(accept, current) if raw else _preferred(accept)
    if wanted is None:
        return None
    if getattr(job.params, "n", 1) > 1:
        raise NotAcceptable(
            "raw image bytes can carry one image; ask for application/json when n > 1"
        )
    fmt = _IMAGE_TYPES.get(wanted)
    if fmt is not None and current is not None and current != fmt:
        raise NotAcceptable(f"Accept: {wanted} contradicts output.format {current!r}")
    if fmt is not None and current is None:
        quality = job.params.output.quality if job.params.output else None
        job.params.output = OutputOptions(format=fmt, quality=quality)
    return wanted


def _preferred_image(accept: str | None, current: str | None) -> str:
    """For the raw endpoints: ``output.format`` when the Accept header allows it, else the
    first image type it ranks highest (a generated client lists png, jpeg, webp: png),
    ``image/*`` for any; ``application/octet-stream`` when that is all it takes."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate((accept or "*/*").split(",")):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        q = _q_value(params)
        if q > 0 and (media in _IMAGE_TYPES or media in _ANY_BYTES):
            ranked.append((q, -index, _ANY_BYTES.get(media, media)))
    accepted = {r[2] for r in ranked}
    typed = [r for r in ranked if r[2] in _IMAGE_TYPES and r[2] != "image/*"]
    if current is not None and accepted & {f"image/{current}", "image/*"}:
        return f"image/{current}"
    if current is None and ranked:
        return max(typed or ranked)[2]
    if accepted == {"application/octet-stream"}:
        return "application/octet-stream"
    raise NotAcceptable(
        "this endpoint answers image/png, image/jpeg, image/webp or application/octet-stream"
        + (f"; output.format is {current}" if current else "")
    )


def _preferred(accept: str | None) -> str | None:
    """The best of application/json and image/* by q-value; JSON wins ties and absence."""
    if not accept:
        return None
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(accept.split(",")):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        q = _q_value(params)
        if q > 0 and (
            media in _IMAGE_TYPES or media in ("application/json", "*/*", "application/*")
        ):
            ranked.append((q, -index, media))
    if not ranked:
        raise NotAcceptable(
            "this endpoint answers application/json or image/png, image/jpeg, image/webp"
        )
    ranked.sort(reverse=True)
    best = ranked[0][2]
    return best if best in _IMAGE_TYPES else None


def _q_value(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def result_headers(
    outcome: Outcome, attempt_labels: str, cost: Cost | None = None
) -> dict[str, str]:
    headers = {
        **outcome.result.headers,  # Deprecation / Sunset of a deprecated model
        "x-image-gateway-provider": outcome.provider,
        "x-image-gateway-model": outcome.result.model,
        "x-image-gateway-attempts": attempt_labels,
    }
    if cost is not None:
        headers[COST_HEADER] = usd_text(cost.usd)
    return headers


def dry_run_response(outcome: Outcome, estimate: Cost) -> Response:
    body = {
        "dry_run": True,
        "provider": outcome.provider,
        "model": outcome.result.model,
        "cost": estimate.as_dict(),
        "warnings": outcome.warnings,
    }
    headers = {
        "x-image-gateway-provider": outcome.provider,
        "x-image-gateway-model": outcome.result.model,
        COST_HEADER: usd_text(estimate.usd),
    }
    return Response(_dumps(body), media_type="application/json", headers=headers)


def _image_response(outcome: Outcome, headers: dict[str, str], wants: str) -> Response:
    image = outcome.result.images[0]
    data = image.as_bytes()
    metrics.IMAGE_BYTES.labels(direction="out").observe(len(data))
    if outcome.warnings:
        headers["x-image-gateway-warnings"] = json.dumps(outcome.warnings)
    if image.width and image.height:
        headers["x-image-width"], headers["x-image-height"] = str(image.width), str(image.height)
    untyped = wants == "application/octet-stream"
    return Response(content=data, media_type=wants if untyped else image.mime_type, headers=headers)


def _json_response(
    outcome: Outcome, headers: dict[str, str], started: float, cost: Cost
) -> Response:
    """The JSON body, assembled from parts so that each image's base64 is copied once (into
    the final body) instead of being escaped and re-encoded by ``json.dumps``; base64 text
    needs no JSON escaping."""
    parts = [
        b'{"id":"',
        uuid.uuid4().hex.encode(),
        b'","provider":',
        _dumps(outcome.provider),
        b',"model":',
        _dumps(outcome.result.model),
        b',"images":[',
    ]
    for index, image in enumerate(outcome.result.images):
        parts.extend(_image_parts(image, first=index == 0))
    timing = {
        "upstream_ms": round(outcome.upstream_seconds * 1000, 2),
        "total_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    parts += [b'],"warnings":', _dumps(outcome.warnings), b',"timing":', _dumps(timing)]
    parts += [b',"cost":', _dumps(cost.as_dict()), b"}"]
    return PartsResponse(parts, media_type="application/json", headers=headers)


class PartsResponse(Response):
    """A body sent as its parts: small neighbours are joined, but each image's
    multi-megabyte base64 goes to the socket as it is, never copied into one buffer."""

    def __init__(self, parts: list[bytes], media_type: str, headers: dict[str, str]) -> None:
        super().__init__(content=b"", media_type=media_type, headers=headers)
        self.chunks = _coalesce(parts)
        self.headers["content-length"] = str(sum(len(chunk) for chunk in self.chunks))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        last = len(self.chunks) - 1
        for index, chunk in enumerate(self.chunks):
            more = index < last
            await send({"type": "http.response.body", "body": chunk, "more_body": more})


def _coalesce(parts: list[bytes], small: int = 65536) -> list[bytes]:
    chunks: list[bytes] = []
    pending: list[bytes] = []
    for part in parts:
        if len(part) < small:
            pending.append(part)
            continue
        if pending:
            chunks.append(b"".join(pending))
            pending = []
        chunks.append(part)
    if pending or not chunks:
        chunks.append(b"".join(pending))
    return chunks


def _image_parts(image: OutputImage, first: bool) -> list[bytes]:
    data = image.as_base64_bytes()
    metrics.IMAGE_BYTES.labels(direction="out").observe(len(data) * 3 // 4)
    meta = {"mime_type": image.mime_type, "width": image.width, "height": image.height}
    return [b'{"data":"' if first else b',{"data":"', data, b'",', _dumps(meta)[1:]]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
