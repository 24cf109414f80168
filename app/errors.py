"""The gateway's error hierarchy. Nothing else raises HTTP errors.

Each class carries the HTTP status and the stable machine-readable ``code`` of DESIGN §1.
Providers translate vendor failures into these exactly once, at their boundary; the one
handler in ``app.main`` turns them into RFC 9457 ``application/problem+json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


class ProblemCode(StrEnum):
    """Every ``code`` a problem+json answer can carry: the OpenAPI enum (a named schema, so
    generators make a type of it). A test checks that each GatewayError's code is here."""

    INVALID_REQUEST = "invalid_request"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    UNAUTHORIZED = "unauthorized"
    BUDGET_EXCEEDED = "budget_exceeded"
    FORBIDDEN = "forbidden"
    MODEL_NOT_FOUND = "model_not_found"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    VALIDATION_FAILED = "validation_failed"
    CONTENT_FILTERED = "content_filtered"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    PROVIDER_NOT_CONFIGURED = "provider_not_configured"
    UPSTREAM_ERROR = "upstream_error"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    MODEL_DISCONTINUED = "model_discontinued"
    JOB_NOT_FOUND = "job_not_found"
    JOB_CONFLICT = "job_conflict"
    JOB_INTERRUPTED = "job_interrupted"
    QUEUE_FULL = "queue_full"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    STATE_UNAVAILABLE = "state_unavailable"
    #: Server-level refusals (app/server_limits.py): headers too slow / body not arriving,
    #: request line and headers over the size limit.
    REQUEST_TIMEOUT = "request_timeout"
    HEADERS_TOO_LARGE = "headers_too_large"


@dataclass(frozen=True)
class FieldError:
    """One broken rule: where (``loc``), what (``msg``) and, for vendor limits, which limit."""

    loc: tuple[str | int, ...]
    msg: str
    limit: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loc": list(self.loc), "msg": self.msg}
        if self.limit is not None:
            out["limit"] = self.limit
        return out


class GatewayError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"
    #: Safe to send again unchanged (set per instance by the provider that raised it).
    default_retryable: ClassVar[bool] = False

    def __init__(
        self,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        provider: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.provider = provider
        self.retry_after = retry_after
        self.retryable = self.default_retryable if retryable is None else retryable
        #: Bounded label for image_gateway_upstream_errors_total (timeout, connect, ...).
        self.reason = reason
        #: Extra response headers (``WWW-Authenticate``, ``RateLimit``) and problem members.
        self.headers: dict[str, str] = {}
        self.extensions: dict[str, Any] = {}


class InvalidRequest(GatewayError):
    status, code, title = 400, "invalid_request", "Invalid request"


class NotFound(GatewayError):
    status, code, title = 404, "not_found", "Not found"


class MethodNotAllowed(GatewayError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"

    def __init__(self, detail: str, *, allow: str) -> None:
        super().__init__(detail)
        # RFC 9110 §15.5.6: a 405 lists the methods the resource allows.
        self.headers["Allow"] = allow


class NotAcceptable(GatewayError):
    status, code, title = 406, "not_acceptable", "Not acceptable"


class Unauthorized(GatewayError):
    status, code, title = 401, "unauthorized", "Unauthorized"


class PaymentRequired(GatewayError):
    """The caller's key budget would be exceeded by this call (issue 17)."""

    status, code, title = 402, "budget_exceeded", "Budget exceeded"


class Forbidden(GatewayError):
    status, code, title = 403, "forbidden", "Forbidden"


class PayloadTooLarge(GatewayError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(GatewayError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class ValidationFailed(GatewayError):
    status, code, title = 422, "validation_failed", "Validation failed"


class ModelDiscontinued(ValidationFailed):
    """The vendor retired the model: refused before any call, naming the replacement."""

    code, title = "model_discontinued", "Model discontinued"

    def __init__(self, detail: str, *, replacement: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.replacement = replacement


class ContentFiltered(GatewayError):
    status, code, title = 422, "content_filtered", "Content filtered"


class RateLimited(GatewayError):
    status, code, title = 429, "rate_limited", "Rate limited"
    default_retryable = True


class ProviderNotConfigured(GatewayError):
    """The operator has not enabled a provider that could serve this: retrying cannot help,
    so it is 501 (which retry policies leave alone) without Retry-After, not 503."""

    status, code, title = 501, "provider_not_configured", "Provider not configured"


class UpstreamError(GatewayError):
    status, code, title = 502, "upstream_error", "Upstream error"


class ProviderUnavailable(GatewayError):
    status, code, title = 503, "provider_unavailable", "Provider unavailable"
    default_retryable = True


class UpstreamTimeout(GatewayError):
    status, code, title = 504, "upstream_timeout", "Upstream timeout"


class InternalError(GatewayError):
    status, code, title = 500, "internal_error", "Internal error"


# ------------------------------------------------------------------- jobs (app.jobs)
class JobNotFound(GatewayError):
    status, code, title = 404, "job_not_found", "Job not found"


class JobConflict(GatewayError):
    """The job is not in a state that allows this (its result is not ready, it finished)."""

    status, code, title = 409, "job_conflict", "Job conflict"


class IdempotencyConflict(GatewayError):
    """A request with this Idempotency-Key is still being served."""

    status, code, title = 409, "idempotency_conflict", "Request in progress"


class IdempotencyMismatch(GatewayError):
    """The Idempotency-Key was used before with a different request."""

    status, code, title = 422, "idempotency_key_reused", "Idempotency-Key reused"


class JobInterrupted(GatewayError):
    """The gateway stopped during a vendor call that cannot be resumed; never resubmitted."""

    status, code, title = 500, "job_interrupted", "Job interrupted"


class QueueFull(GatewayError):
    status, code, title = 503, "queue_full", "Job queue full"


class StateUnavailable(GatewayError):
    """The state store (SQLite file, Redis) cannot be reached: jobs and keys are on hold."""

    status, code, title = 503, "state_unavailable", "State store unavailable"


def problem_body(error: GatewayError, request_id: str) -> dict[str, Any]:
    """The problem+json document for ``error`` (RFC 9457 plus the gateway's fields)."""
    body: dict[str, Any] = {
        "type": f"urn:image-gateway:problem:{error.code}",
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
        "request_id": request_id,
    }
    if error.provider is not None:
        body["provider"] = error.provider
    if error.errors:
        body["errors"] = [e.as_dict() for e in error.errors]
    for key, value in error.extensions.items():
        body.setdefault(key, value)
    return body
