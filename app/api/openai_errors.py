"""OpenAI's error shape for the OpenAI-compatible routes (``/v1/images/...``, ``/v1/models``).

``{"error": {"message", "type", "param", "code"}}`` with OpenAI's status conventions, so the
SDKs raise their usual classes: a parameter the gateway or the chosen model refuses is 400
(``BadRequestError``; the normalized API says 422 there), an unknown model 404, rate limits
429, vendor failures 5xx as on the normalized API. ``param`` names the caller's OpenAI field
(``size``, not the normalized ``width`` it was mapped onto). The one error renderer
(``app.middleware.problem_response_parts``) branches here by path; nothing else renders
these errors.
"""

from __future__ import annotations

from typing import Any, ClassVar

from app.errors import (
    ContentFiltered,
    FieldError,
    GatewayError,
    InvalidRequest,
    NotFound,
    PaymentRequired,
    RateLimited,
    UnsupportedMediaType,
    ValidationFailed,
)

#: Where a normalized field came from in the OpenAI request.
_PARAM_NAMES: dict[tuple[str | int, ...], str] = {
    ("width",): "size",
    ("height",): "size",
    ("aspect_ratio",): "size",
    ("output",): "output_format",
    ("output", "format"): "output_format",
    ("output", "quality"): "output_compression",
}
#: OpenAI's status where the normalized API's differs: refusals of a value are 400, and a
#: spent budget is OpenAI's 429 insufficient_quota.
_STATUSES = {415: 400, 422: 400, 402: 429}
#: Statuses the OpenAI SDKs retry on their own unless told otherwise (x-should-retry).
_SDK_RETRIES = frozenset({408, 409, 429})
_CODES: dict[type[GatewayError], str] = {
    ValidationFailed: "invalid_value",
    ContentFiltered: "content_policy_violation",
    RateLimited: "rate_limit_exceeded",
}


def is_openai_path(path: str) -> bool:
    return path.startswith("/v1/images/") or path == "/v1/models" or path.startswith("/v1/models/")


class OpenAIParamError(InvalidRequest):
    """A parameter the OpenAI mapping refuses, with OpenAI's own error code
    (``unknown_parameter``, ``invalid_type``, ``unsupported_value``, ...)."""

    def __init__(self, param: str | None, message: str, code: str = "invalid_value") -> None:
        errors = [FieldError((param,), message)] if param else []
        super().__init__(message, errors=errors)
        self.openai_code = code


class ModelNotFound(NotFound):
    """A ``model`` that is neither a model of an enabled provider nor a configured alias."""

    code: ClassVar[str] = "model_not_found"
    title: ClassVar[str] = "Model not found"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, errors=[FieldError(("model",), detail)])


def openai_error(error: GatewayError) -> tuple[int, dict[str, Any]]:
    """Status and body of the OpenAI-shaped answer for ``error``."""
    status = 404 if error.code == "model_discontinued" else _STATUSES.get(error.status, 0)
    status = status or error.status
    param = _param(error)
    message = error.detail
    if param and status == 400 and not isinstance(error, OpenAIParamError):
        message = f"Invalid '{param}': {message}"
    body = {"message": message, "type": _type(error, status), "param": param}
    body["code"] = _code(error)
    # The gateway's own members (e.g. a budget's remaining amount and reset) ride along.
    body.update({k: v for k, v in error.extensions.items() if k not in body})
    return status, {"error": body}


def should_retry(error: GatewayError, status: int) -> bytes | None:
    """``x-should-retry`` for answers the SDKs would resend by default (``status`` is the
    one sent): ``false`` when the gateway judged a resend harmful (Venice locks out keys
    that repeat 4xx, vendors.md §2.7; a vendor 500 may already be billed; a spent budget
    stays spent); 503 always means "come back later"."""
    if status not in _SDK_RETRIES and status < 500:
        return None
    return b"true" if error.retryable or status == 503 else b"false"


def _param(error: GatewayError) -> str | None:
    if not error.errors or not error.errors[0].loc:
        return None
    loc = error.errors[0].loc
    if loc[0] == "header":
        return str(loc[-1])
    return _PARAM_NAMES.get(loc) or ".".join(str(part) for part in loc)


def _type(error: GatewayError, status: int) -> str:
    if isinstance(error, PaymentRequired):
        return "insufficient_quota"
    if status == 429:
        return "requests"  # what OpenAI sends for its own request-rate limits
    return "server_error" if status >= 500 else "invalid_request_error"


def _code(error: GatewayError) -> str:
    if isinstance(error, OpenAIParamError):
        return error.openai_code
    if error.status == 401:
        return "invalid_api_key"
    if isinstance(error, PaymentRequired):
        return "insufficient_quota"
    if error.code == "model_discontinued":  # OpenAI: a shut-down model is model_not_found
        return "model_not_found"
    if isinstance(error, UnsupportedMediaType) and _param(error) == "image":
        return "invalid_image_format"
    for cls, code in _CODES.items():
        if isinstance(error, cls):
            return code
    return error.code
