"""Request bodies into jobs: JSON or multipart, the image decoded and sniffed once.

Shape errors (unknown or missing field, wrong type, malformed JSON) are 400
``invalid_request``; values outside the normalized ranges are 422 ``validation_failed``;
image bytes that are not png/jpeg/webp are 415.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from app import images
from app.domain import GenerateJob, InputImage, UpscaleJob
from app.errors import (
    FieldError,
    GatewayError,
    InvalidRequest,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.schemas import GenerateParams, UpscaleParams

ParamsT = TypeVar("ParamsT", bound=BaseModel)

#: Pydantic error types that mean "the request has the wrong shape" (400), not "a value is
#: out of range" (422).
_SHAPE_ERRORS = frozenset(
    {"missing", "extra_forbidden", "json_invalid", "model_type", "model_attributes_type"}
)
#: Multipart parts that carry JSON objects.
_JSON_PARTS = frozenset({"options", "output"})


#: Which body an endpoint takes: ``None`` for either (told apart by Content-Type).
BodyKind = Literal["json", "multipart"] | None


async def read_upscale(request: Request, body: BodyKind = None) -> UpscaleJob:
    multipart = _body_is_multipart(request, body)
    if multipart:
        fields, data, b64 = await read_multipart(request)
        image = uploaded_image(data, b64)
    else:
        fields, image = _upscale_json(await _read_json_body(request))
        images.guard(image.info)
    params = parse_params(UpscaleParams, fields, strict=not multipart)
    return UpscaleJob(params=params, image=image)


def _body_is_multipart(request: Request, body: BodyKind) -> bool:
    multipart = _is_multipart(request)
    if body == "multipart" and not multipart:
        raise UnsupportedMediaType("this endpoint takes multipart/form-data")
    return multipart and body != "json"


def uploaded_image(data: bytes, b64: str | None) -> InputImage:
    """An uploaded image, sniffed and checked against the gateway's ceilings."""
    image = InputImage(data, images.sniff(data), b64)
    images.guard(image.info)
    return image


def _upscale_json(body: bytes) -> tuple[dict[str, Any], InputImage]:
    split = _split_image(body)
    if split is None:  # not the simple shape: parse it whole (and report errors exactly)
        fields = _parse_object(body)
        data, b64 = _image_from_json(fields.pop("image", None))
        return fields, InputImage(data, images.sniff(data), b64)
    fields, start, end = split
    start += images.data_uri_length(body[start : start + 64].decode("latin-1"))
    info = images.inspect_base64_span(body, start, end)
    return fields, InputImage(None, info, b64_view=memoryview(body)[start:end])


def _split_image(body: bytes) -> tuple[dict[str, Any], int, int] | None:
    """The top-level ``"image"`` string located in the body, the rest parsed as JSON.

    A multi-megabyte base64 string needs no JSON parsing: it has no character JSON escapes.
    So it is found in place (a view into the body, no copy), replaced by ``null``, and the
    small remainder is parsed. Any doubt (an escape, another shape, a duplicate key, a key
    that was not top-level) returns None, and the body is parsed whole instead.
    """
    key = body.find(b'"image"')
    if key <= 0 or body[key - 1] == 0x5C:  # absent, or inside a string as \"image\"
        return None
    colon = _skip_space(body, key + 7)
    quote = _skip_space(body, colon + 1)
    if body[colon : colon + 1] != b":" or body[quote : quote + 1] != b'"':
        return None
    start, end = quote + 1, body.find(b'"', quote + 1)
    if end == -1 or body.find(b"\\", start, end) != -1:
        return None
    try:
        fields = json.loads(body[:quote] + b"null" + body[end + 1 :])
    except (ValueError, RecursionError):
        return None
    if not isinstance(fields, dict) or "image" not in fields or fields.pop("image") is not None:
        return None
    return fields, start, end


def _skip_space(body: bytes, pos: int) -> int:
    while body[pos : pos + 1] in (b" ", b"\t", b"\r", b"\n"):
        pos += 1
    return pos


async def read_generate(request: Request, body: BodyKind = None) -> GenerateJob:
    multipart = _body_is_multipart(request, body)
    if multipart:
        fields, _, _ = await read_multipart(request, image_allowed=False)
    else:
        fields = await read_json(request)
    return GenerateJob(params=parse_params(GenerateParams, fields, strict=not multipart))


def parse_params(model: type[ParamsT], fields: dict[str, Any], strict: bool = False) -> ParamsT:
    """``strict`` for JSON: no coercion, so ``"2"`` for a number or ``"yes"`` for a boolean
    is the 400 the README promises. Multipart parts are text, read in lax mode."""
    try:
        return model.model_validate(_integral(fields) if strict else fields, strict=strict)
    except ValidationError as exc:
        raise _params_error(exc) from None
    except RecursionError:
        raise _too_deep("the body") from None


def _integral(fields: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema counts 15.0 as an integer; strict pydantic does not. Integral floats
    become ints (a float field still takes them), here and in ``output``."""
    out: dict[str, Any] = {k: _int_if_integral(v) for k, v in fields.items()}
    output = out.get("output")
    if isinstance(output, dict):
        out["output"] = _integral(output)
    return out


def _int_if_integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _params_error(exc: ValidationError) -> GatewayError:
    details = exc.errors(include_url=False, include_context=False, include_input=False)
    errors = [FieldError(tuple(d["loc"]), d["msg"]) for d in details]
    summary = "; ".join(f"{'.'.join(map(str, e.loc)) or 'body'}: {e.msg}" for e in errors)
    shape = any(
        d["type"] in _SHAPE_ERRORS or d["type"].endswith(("_type", "_parsing")) for d in details
    )
    if shape:
        return InvalidRequest(summary, errors=errors)
    return ValidationFailed(summary, errors=errors)


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_json(request: Request) -> dict[str, Any]:
    return _parse_object(await _read_json_body(request))


async def _read_json_body(request: Request) -> bytes:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(
            f"content type {ctype!r} is not accepted; send application/json or multipart/form-data"
        )
    body = await request.body()
    if not body.strip():
        raise InvalidRequest("the request body is empty; send a JSON object")
    return body


def _parse_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise _too_deep("the body") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("the body must be a JSON object")
    return parsed


def _too_deep(what: str) -> InvalidRequest:
    return InvalidRequest(
        f"{what} nests JSON arrays or objects too deeply",
        errors=[FieldError(("body",), "JSON nested too deeply")],
    )


def _image_from_json(value: Any) -> tuple[bytes, str]:
    if value is None:
        raise InvalidRequest("image is required", errors=[FieldError(("image",), "field required")])
    if not isinstance(value, str):
        raise InvalidRequest(
            "image must be a base64 string",
            errors=[FieldError(("image",), "expected a base64 string")],
        )
    return images.decode_base64_image(value)


async def read_multipart(
    request: Request, image_allowed: bool = True
) -> tuple[dict[str, Any], bytes, str | None]:
    try:
        form = await request.form(max_files=1, max_fields=64)
    except StarletteHTTPException as exc:
        raise InvalidRequest(f"the multipart body is malformed: {exc.detail}") from None
    fields: dict[str, Any] = {}
    data, b64 = b"", None
    try:
        if image_allowed and "image" not in form:
            raise InvalidRequest(
                "multipart body has no file part named 'image'",
                errors=[FieldError(("image",), "field required")],
            )
        for key, value in form.multi_items():
            if key == "image" and image_allowed:
                data, b64 = await _image_part(value)
            else:
                fields[key] = _form_value(key, value)
    finally:
        await form.close()
    return fields, data, b64


async def _image_part(value: UploadFile | str) -> tuple[bytes, str | None]:
    if isinstance(value, str):  # a text part: base64, as in the JSON body
        data, b64 = images.decode_base64_image(value)
        return data, b64
    return await value.read(), None


def _form_value(key: str, value: UploadFile | str) -> Any:
    if not isinstance(value, str):
        raise InvalidRequest(
            f"part {key!r} must be a text field, not a file",
            errors=[FieldError((key,), "unexpected file part")],
        )
    if key in _JSON_PARTS:
        try:
            return json.loads(value)
        except RecursionError:
            raise _too_deep(f"part {key!r}") from None
        except ValueError:
            raise InvalidRequest(
                f"part {key!r} must be a JSON object", errors=[FieldError((key,), "invalid JSON")]
            ) from None
    return value
