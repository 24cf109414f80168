"""The OpenAPI contract beyond what FastAPI infers: every status with its problem schema,
every header, examples, ``servers``, and the request-body schemas that the operation
endpoints read themselves (they parse bodies by hand, off the hot path of pydantic).

``tests/test_openapi.py`` enforces the rules on every operation, so a new route must
follow them (docs/design-notes.md, "The OpenAPI contract").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.api.openai_errors import is_openai_path
from app.callers import openapi as callers_openapi
from app.errors import ProblemCode
from app.schemas import (
    GenerateBytesRequest,
    GenerateRequest,
    Problem,
    UpscaleForm,
    UpscaleRequest,
)

_REF = "#/components/schemas/"


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


#: Sent on every answer by the middleware.
COMMON_HEADERS = {
    "X-Request-ID": _header("The request's id: the caller's X-Request-ID when valid, else new."),
    "Server-Timing": _header("total and upstream durations in ms (W3C Server Timing)."),
}
#: Sent with an answer that some provider served or refused.
_ATTEMPT = {
    "X-Image-Gateway-Attempts": _header(
        "Each vendor call as provider:outcome, in order (e.g. venice:rate_limited, venice:ok)."
    ),
}
_RESULT_HEADERS = {
    **COMMON_HEADERS,
    "X-Image-Gateway-Provider": _header("The provider that served the request."),
    "X-Image-Gateway-Model": _header("The vendor model that served it."),
    **_ATTEMPT,
    **callers_openapi.success_headers(),
    "Deprecation": _header("The model is deprecated: @<Unix seconds> of the date (RFC 9745)."),
    "Sunset": _header("The day a deprecated model stops answering, an HTTP-date (RFC 8594)."),
}
#: Sent when the call ran as a job (app/jobs: Prefer or Idempotency-Key given).
_JOB_HEADERS = {
    "X-Image-Gateway-Job": _header("The job that served the call (GET /v1/jobs/{job_id})."),
    "Idempotent-Replayed": _header(
        "true: the stored answer of an earlier request with the same Idempotency-Key and "
        "body; no vendor was called again."
    ),
    "Preference-Applied": _header("The Prefer preferences applied (RFC 7240)."),
}
_RESULT_HEADERS.update(_JOB_HEADERS)
RAW_HEADERS = {
    **_RESULT_HEADERS,
    "X-Image-Width": _header("Width of the image in pixels.", {"type": "integer"}),
    "X-Image-Height": _header("Height of the image in pixels.", {"type": "integer"}),
    "X-Image-Gateway-Warnings": _header("The answer's warnings as a JSON array, when any."),
}
RETRY_AFTER = {
    "Retry-After": _header("Seconds to wait before retrying.", {"type": "integer", "minimum": 1})
}

#: status -> (code, description) for the operations; the problem+json examples use them.
OPERATION_ERRORS: dict[int, tuple[str, str]] = {
    401: (
        "unauthorized",
        "No key, or an unknown or revoked key, when caller keys are on (WWW-Authenticate set)",
    ),
    402: (
        "budget_exceeded",
        "The estimate would take the key over a budget; the problem's budget member says "
        "which, how much is left and when it resets",
    ),
    403: ("forbidden", "The key may not run this operation or use this provider"),
    400: (
        "invalid_request",
        "Malformed request: bad JSON or base64, unknown or missing field, "
        'a wrong type (no coercion: "2" is not a number)',
    ),
    406: ("not_acceptable", "The Accept header asks for an answer this operation cannot give"),
    413: ("payload_too_large", "Body over IMAGE_GATEWAY_MAX_BODY_BYTES"),
    415: ("unsupported_media_type", "Body or image of a type this operation does not take"),
    422: (
        "validation_failed",
        "A value breaks the normalized ranges or the chosen provider's "
        "limits (code validation_failed), or the vendor filtered the content "
        "(content_filtered)",
    ),
    429: ("rate_limited", "Rate limited by the gateway or the vendor; Retry-After says when"),
    500: ("internal_error", "An unexpected error; it has been logged"),
    501: (
        "provider_not_configured",
        "No configured provider can serve this operation (or the "
        "one named): an operator must enable one. Retrying cannot help: no Retry-After",
    ),
    502: ("upstream_error", "The vendor failed or answered nonsense"),
    503: (
        "provider_unavailable",
        "Every provider that fits is unavailable now (open circuit, "
        "saturated, draining); Retry-After says when to retry",
    ),
    504: ("upstream_timeout", "The vendor did not answer within the deadline"),
}
_TITLES = {code: code.replace("_", " ").capitalize() for code, _ in OPERATION_ERRORS.values()}


def problem_response(status: int, code: str, description: str) -> dict[str, Any]:
    headers = {**COMMON_HEADERS, **_ATTEMPT}
    if status in (429, 503):
        headers.update(RETRY_AFTER)
    if status == 401:
        headers["WWW-Authenticate"] = _header("How to authenticate: a Bearer key.")
    if status == 429:
        headers.update(callers_openapi.RATELIMIT_HEADERS)
    example = {
        "type": f"urn:image-gateway:problem:{code}",
        "title": _TITLES.get(code, code),
        "status": status,
        "detail": description.split(";")[0].split(":")[0],
        "code": code,
        "request_id": "3f2a9c0e5b7d4e1f8a6b2c4d9e0f1a2b",
    }
    return {
        "description": description,
        "headers": headers,
        "content": {
            "application/problem+json": {
                "schema": {"$ref": _REF + "Problem"},
                "example": example,
            }
        },
    }


#: application/octet-stream last: the same bytes for a client that accepts only it
#: (openapi-python-client reads bytes only for that type).
RAW_MEDIA_TYPES = ("image/png", "image/jpeg", "image/webp", "application/octet-stream")


def operation_responses(answer: str) -> dict[int | str, dict[str, Any]]:
    """``answer``: json (ImageResponse), dry-run (DryRunResponse) or bytes (the image)."""
    errors: dict[int | str, dict[str, Any]] = {
        s: problem_response(s, *OPERATION_ERRORS[s]) for s in sorted(OPERATION_ERRORS)
    }
    if answer == "dry-run":
        ok = {
            "description": "Validated and routed, with the cost estimate; no vendor was called",
            "headers": {**COMMON_HEADERS, **callers_openapi.success_headers()},
        }
        return {200: ok, **errors}
    conflict = problem_response(
        409, "idempotency_conflict", "A request with this Idempotency-Key is in progress"
    )
    if answer == "json":
        ok = {"description": "The images, as JSON", "headers": _RESULT_HEADERS}
        return {200: ok, 202: _ACCEPTED, **errors, 409: conflict}
    binary = {"schema": {"type": "string", "format": "binary"}}
    content = {t: binary for t in RAW_MEDIA_TYPES}
    ok = {
        "description": "The image's bytes, encoded as output.format if given, else as the "
        "first image type the Accept header lists, else in the provider's default format. "
        "Content-Type is the image's type, or application/octet-stream when that is the "
        "only type the Accept header allows",
        "headers": RAW_HEADERS,
        "content": content,
    }
    return {200: ok, **errors, 409: conflict}


_ACCEPTED = {
    "description": "Prefer: respond-async (or a wait that ran out): the job, to poll at "
    "Location (GET /v1/jobs/{job_id}); its result comes from /v1/jobs/{job_id}/result",
    "headers": {
        "Location": _header("Where to poll the job."),
        **RETRY_AFTER,
        "Idempotent-Replayed": _JOB_HEADERS["Idempotent-Replayed"],
        "Preference-Applied": _JOB_HEADERS["Preference-Applied"],
    },
    "content": {"application/json": {"schema": {"$ref": _REF + "JobResource"}}},
}
_KEY_CHAR, _KEY_EDGE = r"[\x20\x21\x23-\x5b\x5d-\x7e]", r"[\x21\x23-\x5b\x5d-\x7e]"
_KEY = f"{_KEY_EDGE}({_KEY_CHAR}{{0,253}}{_KEY_EDGE})?"
_IDEMPOTENCY_KEY = f'^({_KEY}|"{_KEY}")$'
#: The JSON operations can run as jobs (app/jobs): RFC 7240 Prefer and Idempotency-Key.
#: The /bytes operations take the Idempotency-Key only (they answer synchronously: a 202
#: JSON beside their image would make openapi-generator's Go client send Accept:
#: application/json only); the dry runs, which bill nothing, take neither.
ASYNC_HEADERS = [
    {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "description": "respond-async: answer 202 with a job at once; wait=N: answer "
        "synchronously if done within N seconds, else 202. Other preferences are ignored.",
        "schema": {"type": "string"},
        "example": "respond-async",
    },
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "1..255 printable ASCII characters (optionally quoted): the same key "
        "and body run once; the same key with another body is 422 idempotency_key_reused.",
        # app/jobs/headers.py: printable ASCII but " and \, optionally in quotes
        "schema": {"type": "string", "pattern": _IDEMPOTENCY_KEY},
    },
]

_JOB_PARAMETERS = {"json": ASYNC_HEADERS, "bytes": ASYNC_HEADERS[1:]}


def operation_extra(body_schema: str, answer: str = "json") -> dict[str, Any]:
    """Request body and request headers of an operation endpoint (``answer``: json, bytes
    or dry-run)."""
    media = "multipart/form-data" if body_schema.endswith("Form") else "application/json"
    content: dict[str, Any] = {"schema": {"$ref": _REF + body_schema}}
    if media == "application/json":
        content["example"] = _EXAMPLES[body_schema]
    else:
        content["encoding"] = {"image": {"contentType": "image/png, image/jpeg, image/webp"}}
    return {
        "requestBody": {"required": True, "content": {media: content}},
        "parameters": REQUEST_HEADERS + _JOB_PARAMETERS.get(answer, []),
    }


REQUEST_HEADERS = [
    {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "description": "Your id for this request, echoed in the answer and the logs: 1-128 "
        "of A-Z a-z 0-9 ._:@/+=-. Any other value is not refused but replaced by a new id "
        "(as is an absent one), so the schema does not constrain it.",
        "schema": {"type": "string"},
    },
    {
        "name": "X-Request-Timeout",
        "in": "header",
        "required": False,
        "description": "Seconds this request may take; lowers (never raises) the gateway's "
        "IMAGE_GATEWAY_REQUEST_TIMEOUT_S.",
        "schema": {"type": "number", "exclusiveMinimum": 0},
    },
]

_EXAMPLES = {
    name: model.model_json_schema()["examples"][0]
    for name, model in (
        ("UpscaleRequest", UpscaleRequest),
        ("GenerateRequest", GenerateRequest),
        ("GenerateBytesRequest", GenerateBytesRequest),
    )
}

SERVERS = [{"url": "http://localhost:8080", "description": "A gateway run with `make run`."}]


def build_spec(app: FastAPI, extra_models: Sequence[type[BaseModel]] = ()) -> dict[str, Any]:
    """FastAPI's spec plus the schemas of the hand-read bodies, and ``servers``."""
    spec = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=SERVERS,
    )
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    models: list[type[BaseModel]] = [UpscaleRequest, UpscaleForm, GenerateRequest, Problem]
    models.append(GenerateBytesRequest)
    for model in [*models, *extra_models]:
        schema = model.model_json_schema(ref_template=_REF + "{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    for name in _REQUEST_SCHEMAS:
        _defaults_in_words(components[name])
    _parts_not_nullable(components["UpscaleForm"])
    _drop_fastapi_validation_error(spec)
    _drop_object_defaults(components)
    for path, item in spec["paths"].items():
        for operation in item.values():
            _complete(path, operation, components)
    return spec


def _complete(path: str, operation: dict[str, Any], components: dict[str, Any]) -> None:
    """What holds for every route, said once: the middleware's headers on every answer, a
    500 in the route's error shape, and the body schema's example on its media type."""
    responses = operation["responses"]
    if "500" not in responses:
        responses["500"] = _openai_error("Unexpected error") if is_openai_path(path) else _INTERNAL
    if is_openai_path(path) and "requestBody" in operation:
        for status, (_, description) in OPERATION_ERRORS.items():
            if status in _OPENAI_STATUSES:
                responses.setdefault(str(status), _openai_error(description))
    _dry_run_alternative(operation)
    for status, response in responses.items():
        response["headers"] = {**COMMON_HEADERS, **response.get("headers", {})}
        problem = response.get("content", {}).get("application/problem+json")
        if problem is not None and "example" not in problem:
            problem["example"] = _problem_example(status, response["description"])
    for media in operation.get("requestBody", {}).get("content", {}).values():
        name = media["schema"].get("$ref", "").removeprefix(_REF)
        examples = components.get(name, {}).get("examples")
        if examples and "example" not in media:
            media["example"] = examples[0]


#: What the OpenAI-compatible operations answer in OpenAI's error shape besides their own
#: list (415 and 422 become 400 there, app/api/openai_errors.py).
_OPENAI_STATUSES = (401, 402, 403, 406, 501)


def _dry_run_alternative(operation: dict[str, Any]) -> None:
    """An operation that takes ``?dry_run=true`` (the OpenAI-compatible ones) answers a
    DryRunResponse then: its 200 says so. (The gateway's own operations have /dry-run
    twins instead, so that their 200 stays one type for generated clients.)"""
    names = {p.get("name") for p in operation.get("parameters", [])}
    media = operation["responses"].get("200", {}).get("content", {}).get("application/json")
    if "dry_run" in names and media is not None and "$ref" in media.get("schema", {}):
        media["schema"] = {"anyOf": [media["schema"], {"$ref": _REF + "DryRunResponse"}]}


def _problem_example(status: str, description: str) -> dict[str, Any]:
    """An example for a route's own problem response: the code its description names."""
    named = [code.value for code in ProblemCode if code.value in description]
    by_status = OPERATION_ERRORS.get(int(status), ("internal_error", ""))[0]
    code = named[0] if named else "not_found" if status == "404" else by_status
    media = problem_response(int(status), code, description)["content"]
    example: dict[str, Any] = media["application/problem+json"]["example"]
    return example


def _openai_error(description: str) -> dict[str, Any]:
    schema = {"$ref": _REF + "OpenAIErrorResponse"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _drop_object_defaults(node: Any) -> None:
    """An object as a ``default`` (a pydantic model default, e.g. ModelLimits.lifecycle)
    becomes Go that does not compile (openapi-generator writes ``= {status=ga}``)."""
    if isinstance(node, dict):
        if isinstance(node.get("default"), dict):
            del node["default"]
        for value in node.values():
            _drop_object_defaults(value)
    elif isinstance(node, list):
        for value in node:
            _drop_object_defaults(value)


def _drop_fastapi_validation_error(spec: dict[str, Any]) -> None:
    """FastAPI declares its own 422 body for routes with parameters; the gateway never
    sends it (validation errors leave as problem+json 400, or OpenAI's shape)."""
    for item in spec["paths"].values():
        for operation in item.values():
            response = operation["responses"].get("422", {})
            if "HTTPValidationError" in json.dumps(response):
                del operation["responses"]["422"]
    for name in ("HTTPValidationError", "ValidationError"):
        spec["components"]["schemas"].pop(name, None)


def _parts_not_nullable(schema: dict[str, Any]) -> None:
    """A form part is there or not; it cannot be null. ``anyOf [T, null]`` becomes ``T``, so
    generators type the parts plainly."""
    for prop in schema["properties"].values():
        variants = prop.get("anyOf", [])
        if len(variants) == 2 and {"type": "null"} in variants:
            variants.remove({"type": "null"})
            prop.update(variants[0])
            del prop["anyOf"]


#: Request bodies: an optional field is simply left out, and the gateway applies its
#: default. A ``default`` keyword would make openapi-typescript type the field as required
#: (its defaultNonNullable), so the default is said in the description instead.
_REQUEST_SCHEMAS = (
    "UpscaleRequest",
    "UpscaleForm",
    "GenerateRequest",
    "GenerateBytesRequest",
    "OutputOptions",
)


def _defaults_in_words(schema: dict[str, Any]) -> None:
    for prop in schema.get("properties", {}).values():
        if "default" not in prop:
            continue
        default = prop.pop("default")
        if default is not None:
            prop["description"] += f" Default: {json.dumps(default)}."


#: GET /metrics without its token, when IMAGE_GATEWAY_CALLERS__METRICS_TOKEN is set.
UNAUTHORIZED_METRICS = problem_response(
    401, "unauthorized", "IMAGE_GATEWAY_CALLERS__METRICS_TOKEN is set and not given"
)

_INTERNAL = problem_response(500, *OPERATION_ERRORS[500])
