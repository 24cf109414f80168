"""A faithful Vertex AI Imagen emulator (vendors.md §1.8), with Google's OAuth2 token endpoint.

- ``POST /token``: the JWT-bearer grant (RFC 7523) that google-auth's service-account
  credentials use. The assertion's RS256 signature is verified against the public keys the
  test registered (``state.register_key``), and its ``aud``, ``scope``, ``iat`` and ``exp``
  are checked as Google does; only then is an access token issued.
- ``POST /v1/projects/{p}/locations/{l}/publishers/google/models/{model}:predict``: bearer
  tokens must be ones this emulator issued, unrevoked and unexpired (401 otherwise); the model
  is routed on its name (``@`` included; unknown: 404); the body is validated per model as
  §1.2-§1.5 document (400 INVALID_ARGUMENT with a google.rpc body); answers carry real
  base64 PNG/JPEG images of the size Imagen would return.

This emulator is deliberately *stricter* than Google in one way: unknown ``parameters``
fields are refused, so that a misspelt field name fails a test instead of being ignored.
Its model table is transcribed from vendors.md independently of ``app.providers.vertex_limits``
so that it can catch mistakes there.

Run alone: ``python -m tests.emulators.vertex --port 9101 --key-file /tmp/vertex-key.json``
writes a service-account key file that this emulator trusts (its ``token_uri`` points here).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import functools
import io
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators.common import ASGIApp, EmulatorState, FaultMiddleware

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SEED_WITH_WATERMARK = (
    "Image generation failed with the following error: "
    "Seed is not supported when watermark is enabled."
)  # GH-SEED
PROMPT_BLOCKED = (
    "Image generation failed with the following error: The prompt could not be submitted. "
    "Your current safety filter threshold prohibited one or more words in this prompt. "
    "If you think this was an error, send feedback. Support codes: 61493863"
)  # GH-ADIOS
ALL_FILTERED = (
    "Unable to show generated images. All images were filtered out because they violated "
    "Vertex AI's usage guidelines. You will not be charged for blocked images. Try rephrasing "
    "the prompt. If you think this was an error, send feedback. Support codes: 39322892"
)  # FB-IOS
MAX_BASE64_CHARS = 10 * 1024 * 1024  # "Size limit: 10 MB" on the base64 string (S000)
MAX_UPSCALE_4_PIXELS = 17_000_000  # "maximum output resolution 17 megapixels" (V-UP4)
_RPC_HEADERS = {  # a live Vertex 400 carried these (GH-ADIOS)
    "content-type": "application/json; charset=UTF-8",
    "vary": "Origin, X-Origin, Referer",
    "server": "scaffolding on HTTPServer2",
    "x-xss-protection": "0",
}
# fmt: off
_SIZES_1K = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896),
             "9:16": (768, 1408), "16:9": (1408, 768)}
_SIZES_2K = {ratio: (w * 2, h * 2) for ratio, (w, h) in _SIZES_1K.items()}
_RATIOS_5 = ("1:1", "9:16", "16:9", "3:4", "4:3")
_IMAGEN_23_SIZES = ("64", "256", "512", "1024", "2048", "4096")
_PERSON = ("dont_allow", "allow_adult", "allow_all")
_SAFETY = ("block_low_and_above", "block_medium_and_above", "block_only_high", "block_none",
           "block_most", "block_some", "block_few", "block_fewest")
_LANGUAGES = ("auto", "en", "es", "hi", "ja", "ko", "pt", "zh", "zh-CN", "zh-TW")
_STYLES = ("photograph", "digital_art", "landscape", "sketch", "watercolor", "cyberpunk", "pop_art")


@dataclass(frozen=True)
class ModelSpec:
    """What one model accepts (§1.2, §1.4, §1.5)."""

    prompt_tokens: int | None = None
    counts: tuple[int, int] = (1, 4)
    ratios: tuple[str, ...] = _RATIOS_5
    negative: bool = True
    #: enhancePrompt: ``None`` when unsupported, else its default.
    enhance: bool | None = None
    watermark_default: bool = True
    sample_sizes: tuple[str, ...] = ()
    person_safety: bool = False
    language: bool = False
    style: bool = False
    generate: bool = True
    upscale_shape: str | None = None
    upscale_factors: tuple[str, ...] = ()


_IMAGEN_4 = ModelSpec(prompt_tokens=480, negative=False, enhance=True, person_safety=True,
                      language=True, sample_sizes=("1K", "2K"))
MODELS: dict[str, ModelSpec] = {
    "imagen-4.0-generate-001": _IMAGEN_4,
    "imagen-4.0-ultra-generate-001": _IMAGEN_4,
    "imagen-4.0-fast-generate-001": ModelSpec(prompt_tokens=480, negative=False, enhance=True,
                                              person_safety=True, language=True),
    "imagen-3.0-generate-002": ModelSpec(prompt_tokens=480, negative=False, enhance=True,
                                         person_safety=True, sample_sizes=_IMAGEN_23_SIZES),
    "imagen-3.0-generate-001": ModelSpec(prompt_tokens=480, person_safety=True, language=True,
                                         sample_sizes=_IMAGEN_23_SIZES),
    "imagen-3.0-fast-generate-001": ModelSpec(prompt_tokens=480, person_safety=True,
                                              sample_sizes=_IMAGEN_23_SIZES),
    "imagegeneration@006": ModelSpec(prompt_tokens=128, person_safety=True, language=True,
                                     sample_sizes=_IMAGEN_23_SIZES),
    "imagegeneration@005": ModelSpec(prompt_tokens=128, ratios=("1:1", "9:16"),
                                     watermark_default=False, sample_sizes=_IMAGEN_23_SIZES),
    "imagegeneration@002": ModelSpec(prompt_tokens=64, counts=(1, 8), ratios=("1:1",),
                                     watermark_default=False, style=True,
                                     upscale_shape="legacy", upscale_factors=("x2", "x4")),
    "imagen-4.0-upscale-preview": ModelSpec(generate=False, upscale_shape="imagen4",
                                            upscale_factors=("x2", "x3", "x4")),
}

_GENERATE_PARAMETERS = {
    "sampleCount", "aspectRatio", "negativePrompt", "seed", "addWatermark", "enhancePrompt",
    "personGeneration", "safetySetting", "includeRaiReason", "includeSafetyAttributes",
    "language", "sampleImageStyle", "sampleImageSize", "outputOptions", "storageUri",
    "guidanceScale",
}
_UPSCALE_PARAMETERS = {
    "legacy": {"sampleCount", "mode", "upscaleConfig", "outputOptions", "storageUri",
               "sampleImageSize"},
    "imagen4": {"sampleCount", "mode", "upscaleConfig", "addWatermark", "outputOptions",
                "storageUri", "includeRaiReason", "safetySetting", "personGeneration"},
}
_UPSCALE_CONFIG = {
    "legacy": {"upscaleFactor"},
    "imagen4": {"upscaleFactor", "enhanceInputImage", "imagePreservationFactor",
                "enableFasterUpscaling"},
}
# fmt: on


# --------------------------------------------------------------------------- state


@dataclass
class IssuedToken:
    email: str
    scopes: tuple[str, ...]
    expires_at: float
    revoked: bool = False


@dataclass
class VertexState(EmulatorState):
    """Recorded requests and faults (``EmulatorState``) plus Google's side of auth and the
    knobs a test turns."""

    #: Trusted service-account keys: client_email -> {private_key_id: public key}.
    keys: dict[str, dict[str, rsa.RSAPublicKey]] = field(default_factory=dict)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    token_lifetime_s: int = 3599
    clock: Callable[[], float] = time.time
    #: When set, other projects get 403 PERMISSION_DENIED.
    project: str | None = None
    #: How many of the images asked for the RAI filter drops.
    filter_images: int = 0
    #: Prompts containing any of these are refused with a 400 RAI block (§1.6).
    blocked_words: tuple[str, ...] = ("forbidden-word",)

    def __post_init__(self) -> None:
        EmulatorState.__init__(self)

    def register_key(self, email: str, key_id: str, public_key: rsa.RSAPublicKey) -> None:
        self.keys.setdefault(email, {})[key_id] = public_key

    def revoke_tokens(self) -> None:
        for token in self.tokens.values():
            token.revoked = True

    def reset(self) -> None:
        """Forget requests, faults and issued tokens; keep the trusted keys."""
        self.requests.clear()
        self.clear_faults()
        self.tokens.clear()
        self.token_lifetime_s, self.project, self.filter_images = 3599, None, 0

    def predict_requests(self) -> list[Any]:
        return self.requests_to(":predict")


def new_service_account(
    state: VertexState,
    token_uri: str,
    email: str = "gateway@emulated.iam.gserviceaccount.com",
    trusted: bool = True,
) -> dict[str, Any]:
    """A fresh service-account key (the JSON Google hands out), trusted by ``state``."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = secrets.token_hex(20)
    if trusted:
        state.register_key(email, key_id, private_key.public_key())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "emulated-project",
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }


# --------------------------------------------------------------------------- responses


class Invalid(Exception):
    """A 400 INVALID_ARGUMENT with this message."""


def rpc_error(code: int, status: str, message: str, reason: str | None = None) -> dict[str, Any]:
    """A google.rpc.Status error body (§1.7)."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason is not None:
        info = {"reason": reason, "domain": "googleapis.com"}
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", **info}]
    return {"error": error}


def _rpc_response(code: int, status: str, message: str, reason: str | None = None) -> Response:
    body = json.dumps(rpc_error(code, status, message, reason), indent=2).encode()
    return Response(body, status_code=code, headers=_RPC_HEADERS)


def _json(body: Any) -> Response:
    return Response(
        json.dumps(body).encode(), headers={"content-type": _RPC_HEADERS["content-type"]}
    )


@functools.lru_cache(maxsize=64)
def _image_b64(width: int, height: int, mime: str, quality: int) -> str:
    """A cheap real image of the given size (a flat colour compresses to almost nothing)."""
    buffer = io.BytesIO()
    image = Image.new("RGB", (width, height), (90, 140, 200))
    if mime == "image/jpeg":
        image.save(buffer, format="JPEG", quality=max(1, quality))
    else:
        image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- OAuth2


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _grant_error(error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)


def _verify_assertion(state: VertexState, assertion: str, own_uri: str) -> dict[str, Any]:
    """The claims of a JWT-bearer assertion, or ``Invalid`` with Google's grant error text."""
    try:
        head, body, signature = assertion.split(".")
        header, claims = json.loads(_b64url(head)), json.loads(_b64url(body))
        key = state.keys.get(claims.get("iss"), {}).get(header.get("kid"))
        if header.get("alg") != "RS256" or key is None:
            raise InvalidSignature
        key.verify(
            _b64url(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except (ValueError, AttributeError, InvalidSignature):
        raise Invalid("invalid_grant|Invalid JWT Signature.") from None
    if claims.get("aud") not in (GOOGLE_TOKEN_URI, own_uri):
        raise Invalid("invalid_grant|Invalid JWT: Failed audience check.")
    now, iat, exp = state.clock(), claims.get("iat"), claims.get("exp")
    if (
        not isinstance(iat, int)
        or not isinstance(exp, int)
        or not (iat - 300 <= now < exp and exp - iat <= 3600)
    ):
        raise Invalid(
            "invalid_grant|Invalid JWT: Token must be a short-lived token (60 minutes) "
            "and in a reasonable timeframe. Check your iat and exp values in the JWT "
            "claim."
        )
    if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
        raise Invalid("invalid_scope|Invalid OAuth scope or ID token audience provided.")
    return claims


async def token_endpoint(request: Request) -> Response:
    state: VertexState = request.app.state.vertex
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _grant_error(
            "invalid_request", "Content-Type must be application/x-www-form-urlencoded"
        )
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
    if form.get("grant_type") != JWT_BEARER:
        return _grant_error(
            "unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type')}"
        )
    try:
        claims = _verify_assertion(state, form.get("assertion", ""), str(request.url))
    except Invalid as exc:
        error, description = str(exc).split("|", 1)
        return _grant_error(error, description)
    token = "ya29.emu-" + secrets.token_urlsafe(32)
    state.tokens[token] = IssuedToken(
        claims["iss"], tuple(str(claims["scope"]).split()), state.clock() + state.token_lifetime_s
    )
    return JSONResponse(
        {"access_token": token, "expires_in": state.token_lifetime_s, "token_type": "Bearer"}
    )


_EXPECTED = (
    "Expected OAuth 2 access token, login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)


def _unauthenticated(message: str, reason: str) -> Response:
    return _rpc_response(401, "UNAUTHENTICATED", f"{message} {_EXPECTED}", reason)


def _auth_failure(state: VertexState, request: Request) -> Response | None:
    """401/403 exactly where Google answers them (§1.1, §1.7, GH-401)."""
    if "key" in request.query_params or "x-goog-api-key" in request.headers:
        return _unauthenticated("API keys are not supported by this API.", "CREDENTIALS_MISSING")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not token:
        missing = "Request is missing required authentication credential."
        return _unauthenticated(missing, "CREDENTIALS_MISSING")
    issued = state.tokens.get(token) if scheme.lower() == "bearer" else None
    if issued is None or issued.revoked or state.clock() >= issued.expires_at:
        reason = "ACCESS_TOKEN_TYPE_UNSUPPORTED" if issued is None else "ACCESS_TOKEN_EXPIRED"
        return _unauthenticated("Request had invalid authentication credentials.", reason)
    if CLOUD_PLATFORM not in issued.scopes:
        scopes = "Request had insufficient authentication scopes."
        return _rpc_response(403, "PERMISSION_DENIED", scopes, "ACCESS_TOKEN_SCOPE_INSUFFICIENT")
    return None


# --------------------------------------------------------------------------- :predict


async def predict(request: Request) -> Response:
    state: VertexState = request.app.state.vertex
    project, location = request.path_params["project"], request.path_params["location"]
    model = request.path_params["model"]
    resource = f"projects/{project}/locations/{location}/publishers/google/models/{model}"
    refused = _auth_failure(state, request)
    if refused is not None:
        return refused
    if state.project is not None and project != state.project:
        denied = (
            "Permission 'aiplatform.endpoints.predict' denied on resource "
            f"'//aiplatform.googleapis.com/{resource}' (or it may not exist)."
        )
        return _rpc_response(403, "PERMISSION_DENIED", denied, "IAM_PERMISSION_DENIED")
    spec = MODELS.get(model)
    if spec is None:  # GH-404
        return _rpc_response(404, "NOT_FOUND", f"Publisher Model `{resource}` not found.")
    try:
        return _json(_serve(state, spec, model, _read_body(await request.body(), request)))
    except Invalid as exc:
        return _rpc_response(400, "INVALID_ARGUMENT", str(exc))


def _read_body(raw: bytes, request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").lower().startswith("application/json"):
        raise Invalid("Invalid JSON payload received. Content-Type must be application/json.")
    try:
        body = json.loads(raw)
    except ValueError:
        raise Invalid("Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(body, dict):
        raise Invalid("Invalid JSON payload received. Expected an object.")
    _known(body, {"instances", "parameters", "labels"}, "")
    instances, parameters = body.get("instances"), body.get("parameters", {})
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        raise Invalid("instances must hold exactly one instance (only one prompt is supported).")
    if not isinstance(parameters, dict):
        raise Invalid('Invalid value at "parameters": expected an object.')
    return body


def _known(values: dict[str, Any], allowed: set[str], where: str) -> None:
    for name in values:
        if name not in allowed:
            raise Invalid(
                f'Invalid JSON payload received. Unknown name "{name}" at '
                f"'{where or 'request'}': Cannot find field."
            )


def _serve(state: VertexState, spec: ModelSpec, model: str, body: dict[str, Any]) -> dict[str, Any]:
    instance, parameters = body["instances"][0], body.get("parameters", {})
    if (
        parameters.get("mode") == "upscale"
        or spec.upscale_shape == "imagen4"
        or "image" in instance
    ):
        if spec.upscale_shape is None:
            raise Invalid(f"Upscaling is not supported by model {model}.")
        return _upscale(spec, instance, parameters)
    if not spec.generate:
        raise Invalid(f'Model {model} only supports mode "upscale".')
    return _generate(state, spec, model, instance, parameters)


# --------------------------------------------------------------------------- generate


def _tokens(text: str) -> int:
    """A crude token count (words and punctuation); the real tokenizer is unknown (§1.3)."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def _check_type(parameters: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = parameters.get(name)
    is_bool = isinstance(value, bool)
    if value is not None and (not isinstance(value, kind) or (is_bool and kind is not bool)):
        raise Invalid(f'Invalid value at "parameters.{name}": wrong type.')
    return value


def _check_enum(
    parameters: dict[str, Any],
    name: str,
    allowed: tuple[str, ...],
    supported: bool,
    model: str,
    fold: bool = False,
) -> Any:
    value = _check_type(parameters, name, str)
    if value is None:
        return None
    if not supported:
        raise Invalid(f"{name} is not supported by model {model}.")
    choices = [a.lower() for a in allowed] if fold else list(allowed)
    if (value.lower() if fold else value) not in choices:
        raise Invalid(f"{name} {value!r} is not supported. Supported values: {', '.join(allowed)}.")
    return value


def _generate(
    state: VertexState,
    spec: ModelSpec,
    model: str,
    instance: dict[str, Any],
    parameters: dict[str, Any],
) -> dict[str, Any]:
    _known(instance, {"prompt"}, "instances[0]")
    _known(parameters, _GENERATE_PARAMETERS, "parameters")
    prompt = instance.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise Invalid("The prompt is required.")
    count = _check_generate(spec, model, prompt, parameters)
    if any(word in prompt.lower() for word in state.blocked_words):
        raise Invalid(PROMPT_BLOCKED)
    return _generated(state, spec, prompt, parameters, count)


def _check_generate(spec: ModelSpec, model: str, prompt: str, parameters: dict[str, Any]) -> int:
    count = _check_type(parameters, "sampleCount", int)
    count = 4 if count is None else count  # the documented default (S001)
    if not spec.counts[0] <= count <= spec.counts[1]:
        raise Invalid(
            f"sampleCount must be between {spec.counts[0]} and {spec.counts[1]} for {model}."
        )
    if spec.prompt_tokens is not None and _tokens(prompt) > spec.prompt_tokens:
        raise Invalid(f"The prompt is longer than {spec.prompt_tokens} tokens.")
    _check_enum(parameters, "aspectRatio", spec.ratios, True, model)
    negative = _check_type(parameters, "negativePrompt", str)
    if negative is not None and not spec.negative:
        raise Invalid(f"negativePrompt is not supported by model {model}.")
    if (
        negative is not None
        and spec.prompt_tokens is not None
        and _tokens(negative) > spec.prompt_tokens
    ):
        raise Invalid(f"The negative prompt is longer than {spec.prompt_tokens} tokens.")
    if _check_type(parameters, "enhancePrompt", bool) is not None and spec.enhance is None:
        raise Invalid(f"enhancePrompt is not supported by model {model}.")
    _check_enum(parameters, "personGeneration", _PERSON, spec.person_safety, model, fold=True)
    _check_enum(parameters, "safetySetting", _SAFETY, spec.person_safety, model, fold=True)
    _check_enum(parameters, "language", _LANGUAGES, spec.language, model)
    _check_enum(parameters, "sampleImageStyle", _STYLES, spec.style, model)
    _check_enum(
        parameters, "sampleImageSize", spec.sample_sizes, bool(spec.sample_sizes), model, fold=True
    )
    _check_seed(spec, parameters)
    _check_common(parameters)
    return int(count)


def _check_seed(spec: ModelSpec, parameters: dict[str, Any]) -> None:
    seed = _check_type(parameters, "seed", int)
    if seed is None:
        return
    if not 1 <= seed <= 2_147_483_647:
        raise Invalid("seed must be between 1 and 2147483647.")
    watermark = _check_type(parameters, "addWatermark", bool)
    if watermark or (watermark is None and spec.watermark_default):
        raise Invalid(SEED_WITH_WATERMARK)


def _check_common(parameters: dict[str, Any]) -> None:
    for name in ("addWatermark", "includeRaiReason", "includeSafetyAttributes"):
        _check_type(parameters, name, bool)
    uri = _check_type(parameters, "storageUri", str)
    if uri is not None and not uri.startswith("gs://"):
        raise Invalid("storageUri must be a Cloud Storage URI (gs://...).")
    options = _check_type(parameters, "outputOptions", dict) or {}
    _known(options, {"mimeType", "compressionQuality"}, "parameters.outputOptions")
    _check_enum(options, "mimeType", ("image/png", "image/jpeg"), True, "any")
    quality = _check_type(options, "compressionQuality", int)
    if quality is not None and not 0 <= quality <= 100:
        raise Invalid("compressionQuality must be between 0 and 100.")


def _mime_and_quality(parameters: dict[str, Any]) -> tuple[str, int]:
    options = parameters.get("outputOptions") or {}
    return options.get("mimeType", "image/png"), options.get("compressionQuality", 75)


def _generated(
    state: VertexState, spec: ModelSpec, prompt: str, parameters: dict[str, Any], count: int
) -> dict[str, Any]:
    table = _SIZES_2K if str(parameters.get("sampleImageSize", "")).upper() == "2K" else _SIZES_1K
    width, height = table[parameters.get("aspectRatio", "1:1")]
    mime, quality = _mime_and_quality(parameters)
    enhance = parameters.get("enhancePrompt", spec.enhance)
    kept = count - min(state.filter_images, count)
    predictions = [
        _prediction(parameters, mime, _image_b64(width, height, mime, quality), i)
        for i in range(kept)
    ]
    for prediction in predictions:
        if enhance:
            prediction["prompt"] = f"{prompt}, highly detailed, soft natural light"
    if kept < count and parameters.get("includeRaiReason"):
        some = f"{count - kept} generated images were filtered out by the safety filter threshold."
        reason = ALL_FILTERED if kept == 0 else some
        predictions.append({"raiFilteredReason": reason})
    if parameters.get("includeSafetyAttributes") and kept:
        predictions.append(
            {"contentType": "Positive Prompt", "safetyAttributes": {"categories": [], "scores": []}}
        )
    return {"predictions": predictions} if predictions else {}  # all filtered: {} (FB-IOS)


def _prediction(parameters: dict[str, Any], mime: str, data: str, index: int) -> dict[str, Any]:
    uri = parameters.get("storageUri")
    if uri:
        extension = "jpg" if mime == "image/jpeg" else "png"
        return {"mimeType": mime, "gcsUri": f"{uri.rstrip('/')}/sample_{index}.{extension}"}
    out: dict[str, Any] = {"mimeType": mime, "bytesBase64Encoded": data}
    if parameters.get("includeSafetyAttributes"):
        out["safetyAttributes"] = {"categories": [], "scores": []}
    return out


# --------------------------------------------------------------------------- upscale


def _upscale(
    spec: ModelSpec, instance: dict[str, Any], parameters: dict[str, Any]
) -> dict[str, Any]:
    shape = str(spec.upscale_shape)
    _known(instance, {"prompt", "image"}, "instances[0]")  # §1.5 B: both shapes are accepted
    _known(parameters, _UPSCALE_PARAMETERS[shape], "parameters")
    mode = parameters.get("mode")
    if (mode is None and shape == "legacy") or (mode is not None and mode != "upscale"):
        raise Invalid('mode must be "upscale" for upscaling requests.')
    if parameters.get("sampleCount", 1) != 1:
        raise Invalid("sampleCount must be 1 for upscaling.")
    if instance.get("prompt") not in (None, "") and shape == "legacy":
        raise Invalid("The prompt must be empty for upscaling.")
    width, height = _input_image(instance.get("image"), shape)
    factor = _factor(spec, parameters, width, height)
    out_w, out_h = width * factor, height * factor
    if shape == "imagen4" and out_w * out_h > MAX_UPSCALE_4_PIXELS:
        raise Invalid(
            f"The upscaled image would be {out_w}x{out_h}, above the maximum output "
            "resolution of 17 megapixels."
        )
    _check_common(parameters)
    mime, quality = _mime_and_quality(parameters)
    data = _image_b64(out_w, out_h, mime, quality)
    return {"predictions": [_prediction(parameters, mime, data, 0)]}


def _input_image(image: Any, shape: str) -> tuple[int, int]:
    if not isinstance(image, dict):
        raise Invalid("instances[0].image is required for upscaling.")
    _known(image, {"bytesBase64Encoded", "gcsUri", "mimeType"}, "instances[0].image")
    data = image.get("bytesBase64Encoded")
    if ("gcsUri" in image) == (data is not None):
        raise Invalid("Exactly one of image.bytesBase64Encoded and image.gcsUri must be set.")
    if data is None:
        raise Invalid("The emulator cannot read image.gcsUri.")
    if not isinstance(data, str) or len(data) > MAX_BASE64_CHARS:
        raise Invalid("The image must be base64 of at most 10 MB.")
    try:
        with Image.open(io.BytesIO(binascii.a2b_base64(data, strict_mode=True))) as decoded:
            width, height, fmt = decoded.width, decoded.height, str(decoded.format).lower()
    except (binascii.Error, ValueError, UnidentifiedImageError):
        raise Invalid("The image could not be decoded.") from None
    allowed = ("png", "jpeg") if shape == "imagen4" else ("png", "jpeg", "webp")
    if fmt not in allowed:
        raise Invalid(f"Unsupported image MIME type; supported: {', '.join(allowed)}.")
    return width, height


def _factor(spec: ModelSpec, parameters: dict[str, Any], width: int, height: int) -> int:
    config = _check_type(parameters, "upscaleConfig", dict) or {}
    _known(config, _UPSCALE_CONFIG[str(spec.upscale_shape)], "parameters.upscaleConfig")
    preservation = _check_type(config, "imagePreservationFactor", (int, float))
    if preservation is not None and not 0 <= preservation <= 1:
        raise Invalid("imagePreservationFactor must be between 0 and 1.")
    factor = config.get("upscaleFactor")
    if factor is None and spec.upscale_shape == "legacy":
        # S000: without a factor it comes from the longer side and sampleImageSize.
        size = str(parameters.get("sampleImageSize", ""))
        factor = (
            {2.0: "x2", 4.0: "x4"}.get(int(size) / max(width, height)) if size.isdigit() else None
        )
    if factor not in spec.upscale_factors:
        raise Invalid(f"upscaleFactor must be one of {', '.join(spec.upscale_factors)}.")
    return int(str(factor)[1:])


# --------------------------------------------------------------------------- app


async def _unknown_path(request: Request) -> Response:
    return _rpc_response(404, "NOT_FOUND", "Method not found.")


def create_app(state: VertexState) -> ASGIApp:
    app = Starlette(
        routes=[
            Route("/token", token_endpoint, methods=["POST"]),
            Route(
                "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:predict",
                predict,
                methods=["POST"],
            ),
            Route("/{path:path}", _unknown_path, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]
    )
    app.state.vertex = state
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Vertex AI Imagen emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--key-file", type=Path, help="write a trusted service-account key here")
    args = parser.parse_args()
    state = VertexState()
    if args.key_file is not None:
        key = new_service_account(state, f"http://{args.host}:{args.port}/token")
        args.key_file.write_text(json.dumps(key, indent=2))
        print(f"service-account key for this emulator: {args.key_file}")
    app = FaultMiddleware(create_app(state), state)

    async def serve() -> None:
        state.stopping = asyncio.Event()
        await uvicorn.Server(
            uvicorn.Config(app, host=args.host, port=args.port, server_header=False)
        ).serve()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
