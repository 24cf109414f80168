"""A fake Venice.ai image API, faithful to vendors.md §2 (notes for an emulator: §2.8).

- ``Authorization: Bearer <key>`` on the inference endpoints; anything else is 401
  ``{"error":"Authentication failed"}`` (the seed era; §2.8). ``/models`` and
  ``/image/styles`` need no key (§2.5).
- ``POST /api/v1/image/upscale`` takes JSON (raw base64) or multipart (``image`` file part,
  other fields as text) and answers a binary ``image/png`` of the upscaled size. The seed-era
  schema (§2.2a) is strict: unknown keys, wrong types and out-of-range values get a 400
  DetailedError with a zod ``format()`` tree; scale 1 needs enhance; the input must have
  65,536 px and be under 25 MB (413 otherwise); a scale of 4 is lowered to fit 16,777,216
  px, any other scale that does not fit is a 400. ``state.upscale_schema = "2026"`` switches
  to §2.2b (scale 2..4, ``creativity`` clamped to 0..0.02, unknown fields ignored, any scale
  lowered, >= 64 px per side).
- ``POST /api/v1/image/generate`` (§2.3, JSON only, strict): per-model prompt limit, steps
  max, resolutions, qualities and style-reference count from the model list; unknown model
  404; unknown style 400; ``variants > 1`` with ``return_binary`` 400. It answers JSON
  ``{id, images, request, timing}`` or raw bytes, with ``x-venice-is-blurred`` /
  ``x-venice-is-content-violation`` headers (``state.blurred``, ``state.content_violation``:
  a violation blacks out JSON images and returns a placeholder png in binary mode) and the
  deprecation headers for deprecated models.
- ``GET /api/v1/models?type=image`` and ``GET /api/v1/image/styles`` (§2.5).
- Every response carries the ``x-ratelimit-*`` and balance headers (§2.7). Vendor errors on
  demand: ``state.add_fault(venice_fault(429, retry_after=7))`` and the like, for 401, 402,
  403, 429, 500 and 503 with Venice's bodies.

Run alone: ``python -m tests.emulators.venice --port 9002`` (key: ``DEFAULT_API_KEY``).
"""

from __future__ import annotations

import binascii
import copy
import functools
import io
import json
import math
import time
import uuid
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators.common import ASGIApp, EmulatorState, Fault, serve_forever

DEFAULT_API_KEY = "venice-emulator-key"
MIN_INPUT_PIXELS = 65_536
MAX_OUTPUT_PIXELS = 16_777_216
MAX_FILE_BYTES = 25 * 1024 * 1024  # "less than 25MB" (§2.2a); MiB assumed
MAX_JSON_BYTES = 35 * 1024 * 1024  # §2.6: JSON bodies over 35 MB get 413
ERRORS = {  # §2.6 StandardError texts
    401: "Authentication failed",
    402: "Insufficient USD or Diem balance to complete request. "
    "Visit https://venice.ai/settings/api to add credits.",
    403: "Unauthorized access",
    429: "Rate limit exceeded",
    500: "Inference processing failed",
    503: "The model is at capacity. Please try again later.",
}
STYLES = ["3D Model", "Analog Film", "Anime", "Cinematic", "Comic Book", "Photographic"]
MODELS: list[dict[str, Any]] = [  # shaped like a live sample (§2.5)
    {"id": "venice-sd35", "constraints": {"promptCharacterLimit": 1500,
     "steps": {"default": 25, "max": 30}, "widthHeightDivisor": 16}},
    {"id": "z-image-turbo", "constraints": {"promptCharacterLimit": 7500,
     "steps": {"default": 8, "max": 8}, "widthHeightDivisor": 8}},
    {"id": "nano-banana-pro", "constraints": {"promptCharacterLimit": 32768,
     "steps": {"default": 8, "max": 8}, "widthHeightDivisor": 1,
     "aspectRatios": ["1:1", "16:9", "9:16", "4:3", "3:4"], "defaultAspectRatio": "1:1",
     "resolutions": ["1K", "2K", "4K"], "defaultResolution": "1K"}},
    {"id": "gpt-image-2", "constraints": {"promptCharacterLimit": 32000,
     "steps": {"default": 8, "max": 8}, "widthHeightDivisor": 1, "aspectRatios": ["1:1", "3:2"],
     "defaultAspectRatio": "1:1", "qualities": ["low", "medium", "high"],
     "defaultQuality": "high"}},
    {"id": "grok-imagine-image-2-0", "constraints": {"promptCharacterLimit": 4000,
     "steps": {"default": 8, "max": 8}, "widthHeightDivisor": 1, "aspectRatios": ["1:1"],
     "defaultAspectRatio": "1:1", "qualities": ["low", "medium"], "defaultQuality": "medium"}},
    {"id": "krea-v2-large", "constraints": {"promptCharacterLimit": 4000,
     "steps": {"default": 8, "max": 8}, "widthHeightDivisor": 16, "maxStyleReferences": 3},
     "supportsStyleReferences": True},
    {"id": "old-sd15", "constraints": {"promptCharacterLimit": 1500,
     "steps": {"default": 20, "max": 50}, "widthHeightDivisor": 8},
     "deprecation": {"date": "2026-01-15T00:00:00.000Z"}, "replacement": "venice-sd35"},
]  # fmt: skip
UPSCALE_2025_FIELDS = frozenset(
    {"image", "scale", "enhance", "enhanceCreativity", "enhancePrompt", "replication"}
)
GENERATE_FIELDS = frozenset({
    "model", "prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "seed",
    "style_preset", "format", "return_binary", "variants", "safe_mode", "hide_watermark",
    "embed_exif_metadata", "lora_strength", "inpaint", "aspect_ratio", "resolution",
    "enable_web_search", "quality", "disable_prompt_optimization_thinking", "enhance_prompt",
    "style_references",
})  # fmt: skip
GENERATE_BOOLEANS = (
    "return_binary",
    "safe_mode",
    "hide_watermark",
    "embed_exif_metadata",
    "enable_web_search",
    "disable_prompt_optimization_thinking",
    "enhance_prompt",
)
RESOLUTION_SIDE = {"1K": 1024, "2K": 2048, "4K": 4096}
PILLOW = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


class VeniceState(EmulatorState):
    """Recorded requests and faults, plus Venice's own switches."""

    def __init__(self, api_key: str = DEFAULT_API_KEY, upscale_schema: str = "2025") -> None:
        super().__init__()
        self.api_key = api_key
        self.reset(upscale_schema)

    def reset(self, upscale_schema: str = "2025") -> None:
        """Back to a fresh vendor (a module-scoped server is shared between tests)."""
        self.requests.clear()
        self.clear_faults()
        self.upscale_schema = upscale_schema
        self.content_violation = False
        self.blurred = False
        self.models = copy.deepcopy(MODELS)
        self.styles = list(STYLES)
        self.remaining_requests = 20


class VeniceError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error"))
        self.status, self.body = status, body


def venice_fault(
    status: int, *, path: str | None = None, retry_after: float | None = None, times: int = 1
) -> Fault:
    """A Venice error answer (§2.6 body, §2.7 headers) for ``state.add_fault``."""
    headers = rate_limit_headers(0 if status == 429 else 19)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    body = {"error": ERRORS[status]}
    return Fault(kind="status", status=status, body=body, headers=headers, path=path, times=times)


def rate_limit_headers(remaining: int) -> dict[str, str]:
    """§2.7; the reset is in Unix milliseconds (VEN-SK)."""
    return {
        "x-ratelimit-limit-requests": "20",
        "x-ratelimit-remaining-requests": str(max(remaining, 0)),
        "x-ratelimit-reset-requests": str(int(time.time() * 1000) + 60_000),
        "x-ratelimit-limit-tokens": "1000000",
        "x-ratelimit-remaining-tokens": "999000",
        "x-ratelimit-reset-tokens": "60",
        "x-venice-balance-usd": "10.0000",
        "x-venice-balance-diem": "0.0000",
    }


# --------------------------------------------------------------------------- zod-like checks


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "unknown")


class Issues:
    """Collects zod issues and raises them as a DetailedError (§2.6)."""

    def __init__(self) -> None:
        self.items: list[tuple[tuple[str, ...], str]] = []

    def add(self, path: tuple[str, ...], message: str) -> None:
        self.items.append((path, message))

    def unknown_keys(self, body: dict[str, Any], allowed: frozenset[str]) -> None:
        extra = [k for k in body if k not in allowed]
        if extra:  # zod .strict(): one issue at the root
            self.add((), "Unrecognized key(s) in object: " + ", ".join(f"'{k}'" for k in extra))

    def number(
        self,
        path: tuple[str, ...],
        value: Any,
        *,
        integer: bool = False,
        gt: float | None = None,
        ge: float | None = None,
        le: float | None = None,
    ) -> float | None:
        if _kind(value) != "number" or (isinstance(value, float) and math.isnan(value)):
            received = "nan" if isinstance(value, float) else _kind(value)
            self.add(path, f"Expected number, received {received}")
            return None
        if integer and not float(value).is_integer():
            self.add(path, "Expected integer, received float")
        if gt is not None and value <= gt:
            self.add(path, f"Number must be greater than {_n(gt)}")
        if ge is not None and value < ge:
            self.add(path, f"Number must be greater than or equal to {_n(ge)}")
        if le is not None and value > le:
            self.add(path, f"Number must be less than or equal to {_n(le)}")
        return float(value)

    def string(
        self, path: tuple[str, ...], value: Any, *, min_len: int = 0, max_len: int | None = None
    ) -> str | None:
        if not isinstance(value, str):
            self.add(path, f"Expected string, received {_kind(value)}")
            return None
        if len(value) < min_len:
            self.add(path, f"String must contain at least {min_len} character(s)")
        if max_len is not None and len(value) > max_len:
            self.add(path, f"String must contain at most {max_len} character(s)")
        return value

    def boolean(self, path: tuple[str, ...], value: Any) -> None:
        if not isinstance(value, bool):
            self.add(path, f"Expected boolean, received {_kind(value)}")

    def enum(self, path: tuple[str, ...], value: Any, allowed: list[str]) -> None:
        if value not in allowed:
            expected = " | ".join(f"'{a}'" for a in allowed)
            self.add(path, f"Invalid enum value. Expected {expected}, received '{value}'")

    def raise_any(self) -> None:
        if self.items:
            raise detailed_error(self.items)


def detailed_error(items: list[tuple[tuple[str, ...], str]]) -> VeniceError:
    """400 ``{"error": ..., "details": <zod format() tree>}`` (§2.6, S002)."""
    tree: dict[str, Any] = {"_errors": []}
    for path, message in items:
        node = tree
        for part in path:
            node = node.setdefault(part, {"_errors": []})
        node["_errors"].append(message)
    return VeniceError(400, {"error": "Invalid request parameters", "details": tree})


def _n(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# --------------------------------------------------------------------------- the app


def create_app(state: EmulatorState) -> ASGIApp:
    # serve_forever passes a plain EmulatorState: the switches then live in their own object.
    venice = state if isinstance(state, VeniceState) else VeniceState()

    def endpoint(handler: Any, auth: bool = True) -> Any:
        async def run(request: Request) -> Response:
            try:
                if auth:
                    _authorize(venice, request)
                response: Response = await handler(venice, request)
            except VeniceError as exc:
                response = JSONResponse(exc.body, status_code=exc.status)
            venice.remaining_requests -= 1
            response.headers.update(rate_limit_headers(venice.remaining_requests))
            return response

        return run

    return Starlette(
        routes=[
            Route("/api/v1/image/upscale", endpoint(upscale), methods=["POST"]),
            Route("/api/v1/image/generate", endpoint(generate), methods=["POST"]),
            Route("/api/v1/models", endpoint(list_models, auth=False), methods=["GET"]),
            Route("/api/v1/image/styles", endpoint(list_styles, auth=False), methods=["GET"]),
            Route("/api/v1/api_keys/rate_limits", endpoint(key_rate_limits), methods=["GET"]),
        ]
    )


def _authorize(state: VeniceState, request: Request) -> None:
    if request.headers.get("authorization") != f"Bearer {state.api_key}":
        raise VeniceError(401, {"error": ERRORS[401]})


async def list_models(state: VeniceState, request: Request) -> Response:
    kind = request.query_params.get("type", "text")
    issues = Issues()
    allowed = [
        "asr",
        "embedding",
        "image",
        "text",
        "tts",
        "upscale",
        "inpaint",
        "video",
        "all",
        "code",
    ]
    issues.enum(("type",), kind, allowed)
    issues.raise_any()
    data = [_model_entry(m) for m in state.models] if kind in ("image", "all") else []
    return JSONResponse({"object": "list", "type": kind, "data": data})


def _model_entry(model: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": model["id"],
        "privacy": "private",
        "constraints": model["constraints"],
        "traits": [],
        "offline": False,
        "pricing": {"generation": {"usd": 0.01}},
    }
    if "deprecation" in model:
        spec["deprecation"] = model["deprecation"]
    entry = {"id": model["id"], "type": "image", "object": "model", "owned_by": "venice.ai"}
    return {**entry, "created": 1_727_966_436, "model_spec": spec}


async def key_rate_limits(state: VeniceState, request: Request) -> Response:
    """GET /api_keys/rate_limits (vendors-2026 §5): the key's tier, balances and limits."""
    limits = [
        {"apiModelId": m["id"], "rateLimits": [{"amount": 20, "type": "RPM"},
                                               {"amount": 14400, "type": "RPD"}]}
        for m in state.models
    ]  # fmt: skip
    data = {
        "accessPermitted": True,
        "apiTier": {"id": "paid", "isCharged": True},
        "balances": {"USD": 12.5, "DIEM": 3.0},
        "keyExpiration": None,
        "nextEpochBegins": "2026-12-01T00:00:00.000Z",
        "rateLimits": limits,
    }
    return JSONResponse({"data": data})


async def list_styles(state: VeniceState, request: Request) -> Response:
    return JSONResponse({"object": "list", "data": state.styles})


# --------------------------------------------------------------------------- /image/upscale


async def upscale(state: VeniceState, request: Request) -> Response:
    fields, image = await _upscale_input(request)
    if state.upscale_schema == "2026":
        scale = _check_upscale_2026(fields)
    else:
        scale = _check_upscale_2025(fields)
    width, height = _input_size(image, state.upscale_schema == "2026")
    out_w, out_h = _fit(width, height, scale, lowers_any=state.upscale_schema == "2026")
    headers = {"x-venice-is-content-violation": "true" if state.content_violation else "false"}
    if state.blurred:
        headers["x-venice-is-blurred"] = "true"
    return Response(_png(out_w, out_h), media_type="image/png", headers=headers)


async def _upscale_input(request: Request) -> tuple[dict[str, Any], bytes | None]:
    """The fields (multipart values are text) and the image bytes, from either content type."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        body = await request.body()
        if len(body) > MAX_JSON_BYTES:
            raise VeniceError(413, {"code": "PAYLOAD_TOO_LARGE", "error": "Request body too large"})
        fields = _json_object(body)
        raw = fields.get("image")
        return fields, _b64(raw) if isinstance(raw, str) else None
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_part_size=MAX_JSON_BYTES)
        fields = {k: v for k, v in form.multi_items()}
        raw = fields.get("image")
        if isinstance(raw, UploadFile):
            return fields, await raw.read()
        return fields, _b64(raw) if isinstance(raw, str) else None
    raise VeniceError(415, {"error": "Invalid request content-type"})


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        raise VeniceError(400, {"error": "Invalid JSON request"}) from None
    if not isinstance(value, dict):
        raise detailed_error([((), "Expected object, received " + _kind(value))])
    return value


def _b64(text: str) -> bytes:
    try:  # raw base64 only (VEN-SK: no data: URI on /image/upscale)
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise detailed_error([(("image",), "Invalid base64 image")]) from None


def _coerced(value: Any) -> Any:
    """Multipart numbers arrive as text; zod coerces them (text that is no number -> NaN)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return float("nan")
    return value


def _check_upscale_2025(fields: dict[str, Any]) -> float:
    issues = Issues()
    issues.unknown_keys(fields, UPSCALE_2025_FIELDS)
    if fields.get("image") is None:
        issues.add(("image",), "Required")
    scale = 2.0
    if "scale" in fields:
        scale = issues.number(("scale",), _coerced(fields["scale"]), ge=1, le=4) or scale
    enhance = fields.get("enhance", "false")
    if not isinstance(enhance, bool) and enhance not in ("true", "false"):
        issues.add(("enhance",), "Expected boolean | 'true' | 'false', received " + _kind(enhance))
    for name in ("enhanceCreativity", "replication"):
        if fields.get(name) is not None:
            issues.number((name,), _coerced(fields[name]), ge=0, le=1)
    if "enhancePrompt" in fields:
        issues.string(("enhancePrompt",), fields["enhancePrompt"], max_len=1500)
    if scale == 1 and enhance in (False, "false"):  # §2.2a (wording UNCONFIRMED)
        issues.add(("scale",), "Scale of 1 requires enhance to be true")
    issues.raise_any()
    return scale


def _check_upscale_2026(fields: dict[str, Any]) -> float:
    # §2.2b: unknown fields and the old enhance fields are ignored, not refused.
    issues = Issues()
    if fields.get("image") is None:
        issues.add(("image",), "Required")
    scale = 2.0
    if "scale" in fields:
        scale = issues.number(("scale",), _coerced(fields["scale"]), ge=2, le=4) or scale
    if fields.get("creativity") is not None:
        issues.number(("creativity",), _coerced(fields["creativity"]))  # then clamped to 0..0.02
    issues.raise_any()
    return scale


def _input_size(image: bytes | None, sides_64: bool) -> tuple[int, int]:
    assert image is not None
    if len(image) >= MAX_FILE_BYTES:  # VEN-SK: 413 with a code
        raise VeniceError(
            413,
            {
                "code": "PAYLOAD_TOO_LARGE",
                "error": "File exceeds the maximum allowed size of 25 MB.",
            },
        )
    try:
        with Image.open(io.BytesIO(image)) as opened:  # reads the header only
            width, height = opened.size
    except (UnidentifiedImageError, OSError):
        raise detailed_error([(("image",), "Invalid image")]) from None
    if width * height < MIN_INPUT_PIXELS or (sides_64 and min(width, height) < 64):
        raise detailed_error([(("image",), "Image dimensions must be at least 65536 pixels")])
    return width, height


def _fit(width: int, height: int, scale: float, lowers_any: bool) -> tuple[int, int]:
    """§2.2a: a scale of 4 is lowered to fit the cap; other scales that do not fit are a 400
    (2026: any scale is lowered, and it is a 400 only when no real upscale fits)."""
    if width * height * scale * scale <= MAX_OUTPUT_PIXELS:
        return math.floor(width * scale), math.floor(height * scale)
    fitted = math.sqrt(MAX_OUTPUT_PIXELS / (width * height))
    if (scale < 4 and not lowers_any) or fitted <= 1:
        message = "Final dimensions after scaling must not exceed 16777216 pixels"
        raise detailed_error([(("scale",), message)])
    return math.floor(width * fitted), math.floor(height * fitted)


@functools.lru_cache(maxsize=16)
def _png(width: int, height: int) -> bytes:
    """A real png of the right size, cheap to make: grey, 8-bit grey when it is large."""
    mode, color = ("RGB", (128, 128, 128)) if width * height <= 4_194_304 else ("L", 128)
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


# --------------------------------------------------------------------------- /image/generate


async def generate(state: VeniceState, request: Request) -> Response:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise VeniceError(415, {"error": "Invalid request content-type"})
    body = _json_object(await request.body())
    _check_generate_schema(body)
    model = _model(state, body["model"])
    _check_generate_model(state, model, body)
    headers = _generate_headers(state, model)
    fmt = body.get("format", "webp")
    width, height = _generate_size(model, body)
    color = (0, 0, 0) if state.content_violation else (40, 90, 160)  # violations are blacked out
    if body.get("return_binary"):
        data = _png(64, 64) if state.content_violation else _image(fmt, width, height, color)
        media = "image/png" if state.content_violation else f"image/{fmt}"
        return Response(data, media_type=media, headers=headers)
    count = int(body.get("variants", 1))
    image = binascii.b2a_base64(_image(fmt, width, height, color), newline=False).decode()
    request_echo = {
        "success": True,
        "data": {k: v for k, v in body.items() if k != "style_references"},
    }
    answer = {
        "id": f"generate-image-{uuid.uuid4().hex[:12]}",
        "images": [image] * count,
        "request": request_echo,
        "timing": {
            "inferenceDuration": 900,
            "inferencePreprocessingTime": 20,
            "inferenceQueueTime": 30,
            "total": 950,
        },
    }
    return JSONResponse(answer, headers=headers)


def _check_generate_schema(body: dict[str, Any]) -> None:
    issues = Issues()
    issues.unknown_keys(body, GENERATE_FIELDS)
    for name in ("model", "prompt"):
        if name not in body:
            issues.add((name,), "Required")
    if "model" in body:
        issues.string(("model",), body["model"])
    for name in ("prompt", "negative_prompt"):
        if name in body:
            issues.string((name,), body[name], min_len=1 if name == "prompt" else 0, max_len=7500)
    ranges = {
        "width": (0, None, 1280),
        "height": (0, None, 1280),
        "steps": (0, None, 50),
        "variants": (None, 1, 4),
        "lora_strength": (None, 0, 100),
        "seed": (None, -999_999_999, 999_999_999),
    }
    for name, (gt, ge, le) in ranges.items():
        if name in body:
            issues.number((name,), body[name], integer=True, gt=gt, ge=ge, le=le)
    if "cfg_scale" in body:
        issues.number(("cfg_scale",), body["cfg_scale"], gt=0, le=20)
    for name in GENERATE_BOOLEANS:
        if name in body:
            issues.boolean((name,), body[name])
    for name, allowed in (
        ("format", ["jpeg", "png", "webp"]),
        ("quality", ["low", "medium", "high"]),
    ):
        if name in body:
            issues.enum((name,), body[name], allowed)
    for name in ("style_preset", "aspect_ratio", "resolution"):
        if name in body:
            issues.string((name,), body[name])
    _check_style_references(issues, body.get("style_references"))
    if body.get("inpaint") is not None:  # disabled 2025-05-19 (§2.3)
        issues.add(("inpaint",), "Inpainting is no longer supported")
    issues.raise_any()


def _check_style_references(issues: Issues, refs: Any) -> None:
    if refs is None:
        return
    if not isinstance(refs, list):
        issues.add(("style_references",), f"Expected array, received {_kind(refs)}")
        return
    for i, ref in enumerate(refs):
        path = ("style_references", str(i))
        if not isinstance(ref, dict):
            issues.add(path, f"Expected object, received {_kind(ref)}")
            continue
        issues.unknown_keys(ref, frozenset({"image", "strength"}))
        issues.string((*path, "image"), ref.get("image"), min_len=1)
        if ref.get("strength") is not None:
            issues.number((*path, "strength"), ref["strength"], ge=0.1, le=1)


def _model(state: VeniceState, model_id: str) -> dict[str, Any]:
    for model in state.models:
        if model["id"] == model_id:
            return model
    raise VeniceError(404, {"error": f"Specified model not found: {model_id}"})


def _check_generate_model(state: VeniceState, model: dict[str, Any], body: dict[str, Any]) -> None:
    issues, limits = Issues(), model["constraints"]
    for name in ("prompt", "negative_prompt"):
        if len(body.get(name, "")) > limits["promptCharacterLimit"]:
            issues.add(
                (name,),
                f"String must contain at most {limits['promptCharacterLimit']} character(s)",
            )
    if body.get("steps", 0) > limits["steps"]["max"]:
        issues.add(("steps",), f"Number must be less than or equal to {limits['steps']['max']}")
    if "style_preset" in body and body["style_preset"] not in state.styles:
        issues.add(("style_preset",), "Invalid style preset")
    for name, key in (("resolution", "resolutions"), ("quality", "qualities")):
        if name in body and key in limits and body[name] not in limits[key]:
            issues.add((name,), f"Invalid {name} for this model")
    refs = body.get("style_references") or []
    if refs and len(refs) > limits.get("maxStyleReferences", 0):
        issues.add(("style_references",), "Too many style references for this model")
    if body.get("variants", 1) > 1 and body.get("return_binary"):
        issues.add(("variants",), "variants is only supported with return_binary: false")
    issues.raise_any()


def _generate_headers(state: VeniceState, model: dict[str, Any]) -> dict[str, str]:
    headers = {
        "x-venice-is-blurred": "true" if state.blurred else "false",
        "x-venice-is-content-violation": "true" if state.content_violation else "false",
    }
    if "deprecation" in model:  # §2.4
        headers["x-venice-model-deprecation-warning"] = "This model is deprecated"
        headers["x-venice-model-deprecation-date"] = model["deprecation"]["date"]
        headers["x-venice-deprecated"] = "true"
        headers["x-venice-deprecated-replacement"] = model.get("replacement", "")
    return headers


def _generate_size(model: dict[str, Any], body: dict[str, Any]) -> tuple[int, int]:
    limits = model["constraints"]
    if "aspectRatios" not in limits:
        return int(body.get("width", 1024)), int(body.get("height", 1024))
    ratio = body.get("aspect_ratio", limits.get("defaultAspectRatio", "1:1"))
    if ratio not in limits["aspectRatios"]:  # not validated (§2.3): the default is used
        ratio = limits.get("defaultAspectRatio", "1:1")
    side = RESOLUTION_SIDE.get(body.get("resolution", limits.get("defaultResolution", "1K")), 1024)
    across, down = (int(p) for p in ratio.split(":"))
    return (side, side * down // across) if across >= down else (side * across // down, side)


@functools.lru_cache(maxsize=32)
def _image(fmt: str, width: int, height: int, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, PILLOW[fmt])
    return buffer.getvalue()


if __name__ == "__main__":
    serve_forever(create_app, "A fake Venice.ai image API (vendors.md §2).")
