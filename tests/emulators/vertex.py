"""A faithful Vertex AI emulator with Google's OAuth2 token endpoint: the Gemini image models
on ``generateContent`` (vendors-2026 §2, §7) and ``imagen-4.0-upscale-preview`` on
``:predict`` (vendors.md §1.5 shape B, vendors-2026 §3).

- ``POST /token``: the JWT-bearer grant (RFC 7523) that google-auth's service-account
  credentials use. The assertion's RS256 signature is verified against the public keys the
  test registered (``state.register_key``), and its ``aud``, ``scope``, ``iat`` and ``exp``
  are checked as Google does; only then is an access token issued.
- Two hosts on one port (vendors-2026 §2.1): the regional host of ``state.region`` at ``/``
  and the ``global`` host (no region prefix) at ``/_global`` (point
  ``IMAGE_GATEWAY_VERTEX__GLOBAL_BASE_URL`` there). Each host serves only its own location,
  and a model only in the locations that serve it (404 NOT_FOUND elsewhere).
- ``…/publishers/google/models/{model}:generateContent``: per-model rules from
  ``tests.emulators.vertex_gemini``; every discontinued id of vendors-2026 §4 is a 404.
- ``…/models/imagen-4.0-upscale-preview:predict``: x2/x3/x4, png/jpeg, 10 MB, 17 MP,
  ``mode: "upscale"`` required (stricter than the docs, which disagree).
- Bearer tokens must be ones this emulator issued, unrevoked and unexpired (401 otherwise).
- Faults: ``EmulatorState`` faults (429 with the §2.6 text, 503, ...) plus the Gemini knobs
  (``state.gemini``: blocked prompts with HTTP 200, NO_IMAGE/IMAGE_SAFETY candidates).

Run alone: ``python -m tests.emulators.vertex --port 9101 --key-file /tmp/vertex-key.json``
writes a service-account key file that this emulator trusts (its ``token_uri`` points here).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import io
import json
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

from tests.emulators import vertex_gemini as gemini
from tests.emulators.common import ASGIApp, EmulatorState, FaultMiddleware
from tests.emulators.vertex_gemini import Invalid, known

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
UPSCALE_MODEL = "imagen-4.0-upscale-preview"
MAX_BASE64_CHARS = 10 * 1024 * 1024  # "Size limit: 10 MB" on the base64 string (S000)
MAX_UPSCALE_PIXELS = 17_000_000  # "maximum output resolution 17 megapixels" (V-UP4)
GLOBAL_PREFIX = "/_global"
_RPC_HEADERS = {  # a live Vertex 400 carried these (GH-ADIOS)
    "content-type": "application/json; charset=UTF-8",
    "vary": "Origin, X-Origin, Referer",
    "server": "scaffolding on HTTPServer2",
    "x-xss-protection": "0",
}
_UPSCALE_PARAMETERS = {
    "sampleCount",
    "mode",
    "upscaleConfig",
    "addWatermark",
    "outputOptions",
    "storageUri",
    "includeRaiReason",
    "safetySetting",
    "personGeneration",
}
_UPSCALE_CONFIG = {
    "upscaleFactor",
    "enhanceInputImage",
    "imagePreservationFactor",
    "enableFasterUpscaling",
}


def resource_error(code: int, status: str, message: str) -> dict[str, Any]:
    return rpc_error(code, status, message)


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
    #: The region of the regional host.
    region: str = "us-central1"
    gemini: gemini.GeminiKnobs = field(default_factory=gemini.GeminiKnobs)
    #: The Gemini models served; a test may add one (a model newer than the table).
    gemini_models: dict[str, gemini.GeminiSpec] = field(default_factory=lambda: dict(gemini.GEMINI))

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
        self.token_lifetime_s, self.project = 3599, None
        self.gemini = gemini.GeminiKnobs()
        self.gemini_models = dict(gemini.GEMINI)

    def predict_requests(self) -> list[Any]:
        return self.requests_to(":predict")

    def generate_requests(self) -> list[Any]:
        return self.requests_to(":generateContent")


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


# --------------------------------------------------------------------------- the model routes


async def generate_content(request: Request) -> Response:
    return await _serve(request, "generateContent")


async def predict(request: Request) -> Response:
    return await _serve(request, "predict")


async def _serve(request: Request, method: str) -> Response:
    state: VertexState = request.app.state.vertex
    project, location = request.path_params["project"], request.path_params["location"]
    model = request.path_params["model"]
    resource = f"projects/{project}/locations/{location}/publishers/google/models/{model}"
    refused = _auth_failure(state, request) or _project_or_host(state, request, resource)
    if refused is not None:
        return refused
    spec = state.gemini_models.get(model)
    served = (method == "generateContent" and spec is not None and location in spec.locations) or (
        method == "predict" and model == UPSCALE_MODEL and location != "global"
    )
    if not served:  # unknown, retired (V-LIFE) or not in this location: GH-404
        return _rpc_response(404, "NOT_FOUND", f"Publisher Model `{resource}` not found.")
    try:
        body = _read_body(await request.body(), request)
        if spec is not None:
            return _json(gemini.generate(state.gemini, spec, body))
        return _json(_upscale(body))
    except Invalid as exc:
        return _rpc_response(400, "INVALID_ARGUMENT", str(exc))


def _project_or_host(state: VertexState, request: Request, resource: str) -> Response | None:
    """403 for another project; each host serves its own location only (§2.1)."""
    project, location = request.path_params["project"], request.path_params["location"]
    if state.project is not None and project != state.project:
        denied = (
            "Permission 'aiplatform.endpoints.predict' denied on resource "
            f"'//aiplatform.googleapis.com/{resource}' (or it may not exist)."
        )
        return _rpc_response(403, "PERMISSION_DENIED", denied, "IAM_PERMISSION_DENIED")
    on_global = request.url.path.startswith(GLOBAL_PREFIX + "/")
    if on_global != (location == "global") or (not on_global and location != state.region):
        host = (
            "aiplatform.googleapis.com"
            if on_global
            else f"{state.region}-aiplatform.googleapis.com"
        )
        return _rpc_response(
            400, "INVALID_ARGUMENT", f"Location {location} is not served by the host {host}."
        )
    return None


def _read_body(raw: bytes, request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").lower().startswith("application/json"):
        raise Invalid("Invalid JSON payload received. Content-Type must be application/json.")
    try:
        body = json.loads(raw)
    except ValueError:
        raise Invalid("Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(body, dict):
        raise Invalid("Invalid JSON payload received. Expected an object.")
    return body


def _typed(values: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = values.get(name)
    if (
        value is not None
        and (not isinstance(value, kind) or isinstance(value, bool))
        and kind is not bool
    ):
        raise Invalid(f'Invalid value at "parameters.{name}": wrong type.')
    if value is not None and kind is bool and not isinstance(value, bool):
        raise Invalid(f'Invalid value at "parameters.{name}": wrong type.')
    return value


# --------------------------------------------------------------------------- upscale


def _upscale(body: dict[str, Any]) -> dict[str, Any]:
    known(body, {"instances", "parameters", "labels"}, "")
    instances, parameters = body.get("instances"), body.get("parameters", {})
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        raise Invalid("instances must hold exactly one instance.")
    if not isinstance(parameters, dict):
        raise Invalid('Invalid value at "parameters": expected an object.')
    instance = instances[0]
    known(instance, {"prompt", "image"}, "instances[0]")  # both locale shapes (§1.5 B)
    known(parameters, _UPSCALE_PARAMETERS, "parameters")
    if parameters.get("mode") != "upscale":  # vendors-2026 §3: Required in some copies
        raise Invalid('mode must be "upscale" for upscaling requests.')
    if parameters.get("sampleCount", 1) != 1:
        raise Invalid("sampleCount must be 1 for upscaling.")
    width, height = _input_image(instance.get("image"))
    factor = _factor(parameters)
    out_w, out_h = width * factor, height * factor
    if out_w * out_h > MAX_UPSCALE_PIXELS:
        raise Invalid(
            f"The upscaled image would be {out_w}x{out_h}, above the maximum output "
            "resolution of 17 megapixels."
        )
    _typed(parameters, "addWatermark", bool)
    options = _typed(parameters, "outputOptions", dict) or {}
    known(options, {"mimeType", "compressionQuality"}, "parameters.outputOptions")
    mime = options.get("mimeType", "image/png")
    if mime not in ("image/png", "image/jpeg"):
        raise Invalid(f"outputOptions.mimeType {mime!r} is not supported.")
    quality = options.get("compressionQuality", 75)
    data = gemini.image_b64(out_w, out_h, mime, quality)
    return {"predictions": [{"mimeType": mime, "bytesBase64Encoded": data}]}


def _input_image(image: Any) -> tuple[int, int]:
    if not isinstance(image, dict):
        raise Invalid("instances[0].image is required for upscaling.")
    known(image, {"bytesBase64Encoded", "gcsUri", "mimeType"}, "instances[0].image")
    data = image.get("bytesBase64Encoded")
    if not isinstance(data, str) or len(data) > MAX_BASE64_CHARS:
        raise Invalid("The image must be base64 of at most 10 MB.")
    try:
        with Image.open(io.BytesIO(binascii.a2b_base64(data, strict_mode=True))) as decoded:
            width, height, fmt = decoded.width, decoded.height, str(decoded.format).lower()
    except (binascii.Error, ValueError, UnidentifiedImageError):
        raise Invalid("The image could not be decoded.") from None
    if fmt not in ("png", "jpeg"):
        raise Invalid("Unsupported image MIME type; supported: png, jpeg.")
    return width, height


def _factor(parameters: dict[str, Any]) -> int:
    config = _typed(parameters, "upscaleConfig", dict) or {}
    known(config, _UPSCALE_CONFIG, "parameters.upscaleConfig")
    preservation = config.get("imagePreservationFactor")
    if preservation is not None and not (
        isinstance(preservation, int | float) and 0 <= preservation <= 1
    ):
        raise Invalid("imagePreservationFactor must be between 0 and 1.")
    factor = config.get("upscaleFactor")
    if factor not in ("x2", "x3", "x4"):
        raise Invalid("upscaleFactor must be one of x2, x3, x4.")
    return int(str(factor)[1:])


# --------------------------------------------------------------------------- app


async def _unknown_path(request: Request) -> Response:
    return _rpc_response(404, "NOT_FOUND", "Method not found.")


_MODEL = "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}"


def create_app(state: VertexState) -> ASGIApp:
    routes = [Route("/token", token_endpoint, methods=["POST"])]
    for prefix in ("", GLOBAL_PREFIX):
        routes += [
            Route(prefix + _MODEL + ":generateContent", generate_content, methods=["POST"]),
            Route(prefix + _MODEL + ":predict", predict, methods=["POST"]),
        ]
    routes.append(
        Route("/{path:path}", _unknown_path, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    )
    app = Starlette(routes=routes)
    app.state.vertex = state
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Vertex AI emulator (Gemini image + upscale)")
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
