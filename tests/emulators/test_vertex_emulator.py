"""The Vertex emulator itself enforces vendors-2026 §2/§7 and vendors.md §1.8: Google's
JWT-bearer token endpoint, bearer-token checks, the regional and global hosts, per-model
``generateContent`` rules with google.rpc error bodies, 404 for every discontinued id, the
fault modes, and the upscale preview answering real images of the documented sizes."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.auth.transport.requests
import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.oauth2 import service_account
from PIL import Image

from tests.conftest import png_bytes
from tests.emulators.common import EmulatorServer, Fault
from tests.emulators.vertex import (
    CLOUD_PLATFORM,
    GLOBAL_PREFIX,
    GOOGLE_TOKEN_URI,
    JWT_BEARER,
    IssuedToken,
    VertexState,
    create_app,
    rpc_error,
)
from tests.emulators.vertex_gemini import DISCONTINUED, MULTIPLE_CANDIDATES, RESOURCE_EXHAUSTED
from tests.process import free_port

EMAIL = "tester@emulated.iam.gserviceaccount.com"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "k1"
PNG = png_bytes(32, 24)
NOW = int(time.time())
UP = "imagen-4.0-upscale-preview"
G25, G3P, G31 = "gemini-2.5-flash-image", "gemini-3-pro-image", "gemini-3.1-flash-image"


def model_path(model: str, method: str, project: str = "p", location: str = "us-central1") -> str:
    prefix = GLOBAL_PREFIX if location == "global" else ""
    return (
        f"{prefix}/v1/projects/{project}/locations/{location}/publishers/google/models/"
        f"{model}:{method}"
    )


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    state = VertexState()
    state.register_key(EMAIL, KID, KEY.public_key())
    with EmulatorServer(create_app(state), state) as running:
        yield running


@pytest.fixture
def state(server: EmulatorServer) -> VertexState:
    assert isinstance(server.state, VertexState)
    server.state.reset()
    server.state.clock = time.time
    return server.state


@pytest.fixture
def client(server: EmulatorServer, state: VertexState) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, trust_env=False) as http:
        yield http


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(
    key: rsa.RSAPrivateKey = KEY, header: dict[str, Any] | None = None, **claims: Any
) -> str:
    now = int(time.time())
    body = {
        "iss": EMAIL,
        "aud": GOOGLE_TOKEN_URI,
        "scope": CLOUD_PLATFORM,
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    head = b64url(json.dumps(header or {"alg": "RS256", "typ": "JWT", "kid": KID}).encode())
    signing_input = f"{head}.{b64url(json.dumps(body).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def grant(client: httpx.Client, jwt: str, grant_type: str = JWT_BEARER) -> httpx.Response:
    return client.post("/token", data={"grant_type": grant_type, "assertion": jwt})


def token(client: httpx.Client) -> str:
    value: str = grant(client, assertion()).json()["access_token"]
    return value


def call(
    client: httpx.Client,
    model: str,
    body: dict[str, Any],
    bearer: str | None = None,
    location: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    method = "predict" if model == UP else "generateContent"
    where = location or ("global" if model in (G31, G3P) else "us-central1")
    headers = {"authorization": f"Bearer {bearer or token(client)}"}
    return client.post(
        model_path(model, method, location=where, **kwargs), json=body, headers=headers
    )


def gen(prompt: str = "a cat", **config: Any) -> dict[str, Any]:
    image = config.pop("image", None)
    generation = {"responseModalities": ["IMAGE"], **config}
    if image is not None:
        generation["imageConfig"] = image
    return {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": generation,
    }


def up(data: bytes = PNG, factor: str = "x2", **parameters: Any) -> dict[str, Any]:
    image = {"bytesBase64Encoded": base64.b64encode(data).decode(), "mimeType": "image/png"}
    return {
        "instances": [{"image": image}],
        "parameters": {"mode": "upscale", "sampleCount": 1,
                       "upscaleConfig": {"upscaleFactor": factor}, **parameters},
    }  # fmt: skip


def images(response: httpx.Response) -> list[tuple[str, int, int]]:
    """(mime, width, height) of each non-thought image part."""
    out = []
    for part in response.json()["candidates"][0]["content"]["parts"]:
        data = part.get("inlineData")
        if data and not part.get("thought"):
            image = Image.open(io.BytesIO(base64.b64decode(data["data"])))
            assert data["mimeType"] == Image.MIME[str(image.format)]
            out.append((data["mimeType"], image.width, image.height))
    return out


def rpc(response: httpx.Response) -> tuple[int, str, str]:
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    error = response.json()["error"]
    assert error["code"] == response.status_code
    return response.status_code, error["status"], error["message"]


# --------------------------------------------------------------------------- OAuth2 token endpoint


def test_a_signed_assertion_gets_an_access_token(client: httpx.Client, state: VertexState) -> None:
    response = grant(client, assertion())
    assert response.status_code == 200
    body = response.json()
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3599)
    assert state.tokens[body["access_token"]].email == EMAIL


def test_google_auth_service_account_credentials_work_against_it(
    server: EmulatorServer, state: VertexState
) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "private_key_id": KID,
        "private_key": pem,
        "client_email": EMAIL,
        "token_uri": server.url + "/token",
    }
    credentials = service_account.Credentials.from_service_account_info(
        info, scopes=[CLOUD_PLATFORM]
    )
    credentials.refresh(google.auth.transport.requests.Request())
    assert credentials.token in state.tokens


OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
# fmt: off
BAD_GRANTS = [
    ("other key, same kid", assertion(OTHER_KEY), "invalid_grant", "Invalid JWT Signature."),
    ("unknown issuer", assertion(iss="stranger@x.iam.gserviceaccount.com"), "invalid_grant",
     "Invalid JWT Signature."),
    ("unknown kid", assertion(header={"alg": "RS256", "kid": "k2"}), "invalid_grant",
     "Invalid JWT Signature."),
    ("alg none", assertion(header={"alg": "none", "kid": KID}), "invalid_grant",
     "Invalid JWT Signature."),
    ("not a jwt", "abc.def", "invalid_grant", "Invalid JWT Signature."),
    ("audience", assertion(aud="https://example.com/token"), "invalid_grant",
     "Failed audience check."),
    ("expired", assertion(iat=NOW - 7200, exp=NOW - 3600), "invalid_grant", "short-lived"),
    ("too long", assertion(exp=NOW + 7200), "invalid_grant", "short-lived"),
    ("scope", assertion(scope="https://www.googleapis.com/auth/devstorage.read_only"),
     "invalid_scope", "scope"),
]
# fmt: on


@pytest.mark.parametrize(
    ("jwt", "error", "text"), [c[1:] for c in BAD_GRANTS], ids=[c[0] for c in BAD_GRANTS]
)
def test_bad_assertions_are_refused_as_google_does(
    client: httpx.Client, state: VertexState, jwt: str, error: str, text: str
) -> None:
    response = grant(client, jwt)
    assert response.status_code == 400
    assert response.json()["error"] == error and text in response.json()["error_description"]
    assert state.tokens == {}


def test_the_grant_type_and_form_encoding_are_required(client: httpx.Client) -> None:
    wrong_grant = grant(client, assertion(), grant_type="client_credentials")
    as_json = client.post("/token", json={"grant_type": JWT_BEARER, "assertion": assertion()})
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")


# --------------------------------------------------------------------------- bearer checks


def test_missing_credentials_are_401_credentials_missing(client: httpx.Client) -> None:
    response = client.post(model_path(G25, "generateContent"), json=gen())
    assert rpc(response)[:2] == (401, "UNAUTHENTICATED")
    assert response.json()["error"]["details"][0]["reason"] == "CREDENTIALS_MISSING"
    assert "scaffolding on HTTPServer2" in response.headers["server"]


def test_api_keys_are_refused(client: httpx.Client) -> None:
    response = client.post(model_path(G25, "generateContent") + "?key=AIza-test", json=gen())
    assert rpc(response)[2].startswith("API keys are not supported by this API.")


@pytest.mark.parametrize("header", ["Bearer ya29.not-issued-here", "Basic dXNlcjpwYXNz"])
def test_tokens_it_did_not_issue_are_401(client: httpx.Client, header: str) -> None:
    response = client.post(
        model_path(G25, "generateContent"), json=gen(), headers={"authorization": header}
    )
    assert rpc(response)[2].startswith("Request had invalid authentication credentials.")


def test_revoked_and_expired_tokens_are_401(client: httpx.Client, state: VertexState) -> None:
    revoked = token(client)
    state.revoke_tokens()
    expired = token(client)
    state.clock = lambda: time.time() + 3600
    for bearer in (revoked, expired):
        response = call(client, G25, gen(), bearer=bearer)
        assert response.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"


def test_a_token_without_the_cloud_platform_scope_is_403(
    client: httpx.Client, state: VertexState
) -> None:
    state.tokens["ya29.narrow"] = IssuedToken(EMAIL, ("openid",), time.time() + 60)
    response = call(client, G25, gen(), bearer="ya29.narrow")
    assert rpc(response)[:2] == (403, "PERMISSION_DENIED")


def test_another_project_is_403_permission_denied(client: httpx.Client, state: VertexState) -> None:
    state.project = "mine"
    response = call(client, G25, gen(), project="theirs")
    assert rpc(response)[2].startswith(
        "Permission 'aiplatform.endpoints.predict' denied on resource"
    )
    assert call(client, G25, gen(), project="mine").status_code == 200


# --------------------------------------------------------------------------- hosts and routing


def test_the_global_host_serves_global_and_the_regional_host_its_region(
    client: httpx.Client,
) -> None:
    assert call(client, G25, gen(), location="global").status_code == 200
    assert call(client, G25, gen(), location="us-central1").status_code == 200
    bearer = {"authorization": f"Bearer {token(client)}"}
    # global on the regional host, a region on the global host, another region here: 400
    for path in (
        model_path(G25, "generateContent", location="global").removeprefix(GLOBAL_PREFIX),
        GLOBAL_PREFIX + model_path(G25, "generateContent"),
        model_path(G25, "generateContent", location="europe-west4"),
    ):
        assert rpc(client.post(path, json=gen(), headers=bearer))[:2] == (400, "INVALID_ARGUMENT")


def test_a_global_only_model_is_404_on_a_region(client: httpx.Client) -> None:
    response = call(client, G31, gen(), location="us-central1")
    assert rpc(response) == (
        404,
        "NOT_FOUND",
        "Publisher Model `projects/p/locations/us-central1/publishers/google/models/"
        "gemini-3.1-flash-image` not found.",
    )
    assert call(client, G31, gen()).status_code == 200


@pytest.mark.parametrize("model", sorted(DISCONTINUED))
def test_every_discontinued_id_is_404_not_found(client: httpx.Client, model: str) -> None:
    for method, location in (("generateContent", "global"), ("predict", "us-central1")):
        path = model_path(model, method, location=location)
        response = client.post(
            path, json=gen(), headers={"authorization": f"Bearer {token(client)}"}
        )
        assert rpc(response)[:2] == (404, "NOT_FOUND")


def test_upscale_is_predict_only_on_the_regional_host(client: httpx.Client) -> None:
    assert call(client, UP, up()).status_code == 200
    assert rpc(call(client, UP, up(), location="global"))[0] == 404


# --------------------------------------------------------------------------- generateContent rules

# fmt: off
INVALID: list[tuple[str, dict[str, Any], str]] = [
    (G25, gen(candidateCount=2), MULTIPLE_CANDIDATES),
    (G31, gen(candidateCount=3), MULTIPLE_CANDIDATES),
    (G25, {**gen(), "generationConfig": {"responseModalities": ["TEXT"]}}, "must include IMAGE"),
    (G25, gen(image={"aspectRatio": "1:4"}), "aspectRatio must be one of"),
    (G3P, gen(image={"aspectRatio": "9:21"}), "aspectRatio must be one of"),
    (G25, gen(image={"imageSize": "1K"}), "imageSize is not supported"),
    (G31, gen(image={"imageSize": "2k"}), "image_size: must be one of 512, 1K, 2K, 4K"),
    (G3P, gen(image={"imageSize": "512"}), "image_size: must be one of 1K, 2K, 4K"),
    (G25, gen(thinkingConfig={"thinkingLevel": "HIGH"}), "Thinking level is not supported"),
    (G3P, gen(thinkingConfig={"thinkingLevel": "HIGH"}), "Thinking level is not supported"),
    (G31, gen(thinkingConfig={"thinkingLevel": "MAX"}), "thinkingLevel must be one of"),
    (G31, gen(image={"personGeneration": "DONT_ALLOW"}), "personGeneration must be one of"),
    (G31, gen(image={"imageOutputOptions": {"mimeType": "image/webp"}}), "mimeType must be one"),
    (G31, gen(image={"imageOutputOptions": {"compressionQuality": 101}}), "between 0 and 100"),
    (G31, gen(seed=2**31), "seed must be an int32"),
    (G31, gen(sampleCount=1), 'Unknown name "sampleCount"'),
    (G31, {**gen(), "safetySettings": [{"category": "HARM_CATEGORY_X", "threshold": "OFF"}]},
     "category must be one of"),
    (G25, {"contents": [{"role": "user", "parts": [{"text": "x"}] + [
        {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}] * 4}],
        "generationConfig": {"responseModalities": ["IMAGE"]}}, "exceeds the maximum of 3"),
    (UP, up(factor="x5"), "upscaleFactor must be one of x2, x3, x4"),
    (UP, {**up(), "parameters": {"sampleCount": 1, "upscaleConfig": {"upscaleFactor": "x2"}}},
     'mode must be "upscale"'),
    (UP, up(png_bytes(32, 24, fmt="WEBP")), "supported: png, jpeg"),
]
# fmt: on


@pytest.mark.parametrize(("model", "body", "text"), INVALID)
def test_invalid_requests_are_400_invalid_argument(
    client: httpx.Client, model: str, body: dict[str, Any], text: str
) -> None:
    status, code, message = rpc(call(client, model, body))
    assert (status, code) == (400, "INVALID_ARGUMENT") and text in message, message


# fmt: off
SIZES = [
    (G25, {"aspectRatio": "16:9"}, (1344, 768)),
    (G25, {}, (1024, 1024)),
    (G3P, {"aspectRatio": "3:4", "imageSize": "2K"}, (1792, 2400)),
    (G3P, {"aspectRatio": "16:9", "imageSize": "4K"}, (5504, 3072)),
    (G31, {"aspectRatio": "21:9"}, (1584, 672)),
    (G31, {"aspectRatio": "1:8", "imageSize": "1K"}, (384, 3072)),
]
# fmt: on


@pytest.mark.parametrize(("model", "image", "size"), SIZES)
def test_answers_one_image_of_the_documented_size_plus_a_thought(
    client: httpx.Client, model: str, image: dict[str, Any], size: tuple[int, int]
) -> None:
    response = call(client, model, gen(image=image))
    assert images(response) == [("image/png", *size)]
    usage = response.json()["usageMetadata"]
    assert usage["candidatesTokensDetails"][0]["modality"] == "IMAGE"


def test_image_output_options_pick_jpeg(client: httpx.Client) -> None:
    options = {"imageOutputOptions": {"mimeType": "image/jpeg", "compressionQuality": 40}}
    assert images(call(client, G31, gen(image=options))) == [("image/jpeg", 1024, 1024)]


def test_a_blocked_prompt_is_200_with_prompt_feedback(client: httpx.Client) -> None:
    response = call(client, G31, gen("a forbidden-word"))
    assert response.status_code == 200
    assert response.json()["promptFeedback"]["blockReason"] == "PROHIBITED_CONTENT"
    assert "candidates" not in response.json()


def test_no_image_answers_are_served_in_turn(client: httpx.Client, state: VertexState) -> None:
    state.gemini.no_image_next = ["NO_IMAGE", "IMAGE_SAFETY"]
    reasons = [call(client, G31, gen()).json()["candidates"][0]["finishReason"] for _ in range(3)]
    assert reasons == ["NO_IMAGE", "IMAGE_SAFETY", "STOP"]


def test_faults_are_served_and_recorded(client: httpx.Client, state: VertexState) -> None:
    quota = rpc_error(429, "RESOURCE_EXHAUSTED", RESOURCE_EXHAUSTED)
    state.add_fault(Fault(kind="status", status=429, body=quota, path=":generateContent"))
    response = call(client, G31, gen())
    assert (response.status_code, response.json()) == (429, quota)
    assert len(state.generate_requests()) == 1


# --------------------------------------------------------------------------- upscale


@pytest.mark.parametrize("factor", ["x2", "x3", "x4"])
def test_upscale_answers_the_factor(client: httpx.Client, factor: str) -> None:
    response = call(client, UP, up(factor=factor))
    prediction = response.json()["predictions"][0]
    image = Image.open(io.BytesIO(base64.b64decode(prediction["bytesBase64Encoded"])))
    assert image.size == (32 * int(factor[1]), 24 * int(factor[1]))


def test_the_upscale_output_cap_is_17_megapixels(client: httpx.Client) -> None:
    assert call(client, UP, up(png_bytes(1030, 1031), factor="x4")).status_code == 200
    refused = call(client, UP, up(png_bytes(1031, 1031), factor="x4"))
    assert "17 megapixels" in rpc(refused)[2]


# --------------------------------------------------------------------------- runs alone


def test_runs_alone_and_writes_a_key_it_trusts(tmp_path: Path) -> None:
    port, keyfile = free_port(), tmp_path / "key.json"
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "tests.emulators.vertex", "--port", str(port),
               "--key-file", str(keyfile)]  # fmt: skip
    with subprocess.Popen(
        command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        try:
            url = _wait_until_listening(proc, port)
            credentials = service_account.Credentials.from_service_account_file(
                str(keyfile), scopes=[CLOUD_PLATFORM]
            )
            credentials.refresh(google.auth.transport.requests.Request())
            response = httpx.post(
                url + model_path(G31, "generateContent", location="global"),
                json=gen(),
                headers={"authorization": f"Bearer {credentials.token}"},
                trust_env=False,
            )
        finally:
            proc.terminate()
    assert response.status_code == 200
    assert images(response) == [("image/png", 1024, 1024)]
    assert json.loads(keyfile.read_text())["token_uri"] == f"http://127.0.0.1:{port}/token"


def _wait_until_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> str:
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the emulator exited"
        try:
            httpx.post(url + "/token", trust_env=False, timeout=1)
            return url
        except httpx.TransportError:
            time.sleep(0.05)  # the process is still starting; poll again (bounded)
    raise AssertionError(f"the emulator did not listen on {port} within {timeout}s")


def test_every_grant_issues_a_new_token(client: httpx.Client, state: VertexState) -> None:
    issued = {token(client) for _ in range(3)}
    assert len(issued) == 3 and all(t.startswith("ya29.") for t in issued)
    assert set(state.tokens) == issued
