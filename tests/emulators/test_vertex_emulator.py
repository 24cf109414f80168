"""The Vertex emulator itself enforces vendors.md §1.8: Google's JWT-bearer token endpoint,
bearer-token checks, routing on the model in the path, per-model validation with google.rpc
error bodies, and answers with real images of the documented sizes."""

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
    ALL_FILTERED,
    CLOUD_PLATFORM,
    GOOGLE_TOKEN_URI,
    JWT_BEARER,
    PROMPT_BLOCKED,
    SEED_WITH_WATERMARK,
    IssuedToken,
    VertexState,
    create_app,
    rpc_error,
)
from tests.process import free_port

EMAIL = "tester@emulated.iam.gserviceaccount.com"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "k1"
PNG = png_bytes(32, 24)
NOW = int(time.time())
UPSCALE_4 = "imagen-4.0-upscale-preview"


def model_path(model: str, project: str = "p") -> str:
    return f"/v1/projects/{project}/locations/us-central1/publishers/google/models/{model}:predict"


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


def predict(
    client: httpx.Client, model: str, body: dict[str, Any], bearer: str | None = None, **kwargs: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {bearer or token(client)}", **kwargs.pop("headers", {})}
    return client.post(model_path(model, **kwargs), json=body, headers=headers)


def gen(prompt: str = "a cat", **parameters: Any) -> dict[str, Any]:
    return {"instances": [{"prompt": prompt}], "parameters": parameters}


def up(
    data: bytes = PNG, factor: str | None = "x2", legacy: bool = True, **parameters: Any
) -> dict[str, Any]:
    image = {"bytesBase64Encoded": base64.b64encode(data).decode()}
    instance = {"prompt": "", "image": image} if legacy else {"image": image}
    config = {"upscaleConfig": {"upscaleFactor": factor}} if factor else {}
    return {
        "instances": [instance],
        "parameters": {"mode": "upscale", "sampleCount": 1, **config, **parameters},
    }


def sizes(response: httpx.Response) -> list[tuple[str, int, int]]:
    out = []
    for prediction in response.json()["predictions"]:
        if "bytesBase64Encoded" in prediction:
            image = Image.open(io.BytesIO(base64.b64decode(prediction["bytesBase64Encoded"])))
            assert prediction["mimeType"] == Image.MIME[str(image.format)]
            out.append((prediction["mimeType"], image.width, image.height))
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
    response = client.post(model_path("imagen-3.0-generate-002"), json=gen())
    assert rpc(response)[:2] == (401, "UNAUTHENTICATED")
    assert response.json()["error"]["details"][0]["reason"] == "CREDENTIALS_MISSING"
    assert "scaffolding on HTTPServer2" in response.headers["server"]


def test_api_keys_are_refused(client: httpx.Client) -> None:
    response = client.post(model_path("imagen-3.0-generate-002") + "?key=AIza-test", json=gen())
    assert rpc(response)[2].startswith("API keys are not supported by this API.")


@pytest.mark.parametrize("header", ["Bearer ya29.not-issued-here", "Basic dXNlcjpwYXNz"])
def test_tokens_it_did_not_issue_are_401(client: httpx.Client, header: str) -> None:
    response = client.post(
        model_path("imagen-3.0-generate-002"), json=gen(), headers={"authorization": header}
    )
    assert rpc(response)[2].startswith("Request had invalid authentication credentials.")


def test_revoked_and_expired_tokens_are_401(client: httpx.Client, state: VertexState) -> None:
    revoked = token(client)
    state.revoke_tokens()
    expired = token(client)
    state.clock = lambda: time.time() + 3600
    for bearer in (revoked, expired):
        response = predict(client, "imagen-3.0-generate-002", gen(), bearer=bearer)
        assert response.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"


def test_a_token_without_the_cloud_platform_scope_is_403(
    client: httpx.Client, state: VertexState
) -> None:
    state.tokens["ya29.narrow"] = IssuedToken(EMAIL, ("openid",), time.time() + 60)
    response = predict(client, "imagen-3.0-generate-002", gen(), bearer="ya29.narrow")
    assert rpc(response)[:2] == (403, "PERMISSION_DENIED")


def test_another_project_is_403_permission_denied(client: httpx.Client, state: VertexState) -> None:
    state.project = "mine"
    response = predict(client, "imagen-3.0-generate-002", gen(), project="theirs")
    assert rpc(response)[2].startswith(
        "Permission 'aiplatform.endpoints.predict' denied on resource"
    )
    assert predict(client, "imagen-3.0-generate-002", gen(), project="mine").status_code == 200


# --------------------------------------------------------------------------- routing


def test_unknown_model_is_404_with_the_publisher_model_message(client: httpx.Client) -> None:
    response = predict(client, "imagen-9.0-generate-001", gen())
    assert rpc(response) == (
        404,
        "NOT_FOUND",
        "Publisher Model `projects/p/locations/us-central1/"
        "publishers/google/models/imagen-9.0-generate-001` not found.",
    )


def test_model_names_with_at_route_whether_encoded_or_not(client: httpx.Client) -> None:
    bearer = token(client)
    plain = client.post(
        model_path("imagegeneration@002"),
        json=gen(sampleCount=1),
        headers={"authorization": f"Bearer {bearer}"},
    )
    encoded = client.post(
        model_path("imagegeneration%40002"),
        json=gen(sampleCount=1),
        headers={"authorization": f"Bearer {bearer}"},
    )
    assert plain.status_code == encoded.status_code == 200


# --------------------------------------------------------------------------- validation

G32, G31, G4 = "imagen-3.0-generate-002", "imagen-3.0-generate-001", "imagen-4.0-generate-001"
I6, I5, I2, UP4 = "imagegeneration@006", "imagegeneration@005", "imagegeneration@002", UPSCALE_4
UP4_X2 = {"upscaleConfig": {"upscaleFactor": "x2"}}


def only_image(**image: Any) -> dict[str, Any]:
    return {"instances": [{"image": image}], "parameters": UP4_X2}


# fmt: off
INVALID: list[tuple[str, dict[str, Any], str]] = [
    (G32, gen(sampleCount=5), "sampleCount must be between 1 and 4"),
    (I2, gen(sampleCount=9), "sampleCount must be between 1 and 8"),
    (G32, gen(sampleCount="2"), 'Invalid value at "parameters.sampleCount"'),
    (I5, gen(aspectRatio="16:9"), "aspectRatio '16:9' is not supported"),
    (G4, gen(aspectRatio="2:3"), "aspectRatio '2:3' is not supported"),
    (G4, gen(sampleImageSize="4K"), "sampleImageSize '4K' is not supported"),
    ("imagen-4.0-fast-generate-001", gen(sampleImageSize="2K"), "sampleImageSize is not supported"),
    (G32, gen(sampleImageSize="1K"), "sampleImageSize '1K' is not supported"),
    (G32, gen(negativePrompt="fog"), "negativePrompt is not supported"),
    ("imagen-4.0-ultra-generate-001", gen(negativePrompt="fog"), "negativePrompt is not supported"),
    (G31, gen(enhancePrompt=False), "enhancePrompt is not supported"),
    (G32, gen(seed=5), SEED_WITH_WATERMARK),
    (I5, gen(seed=5, addWatermark=True), SEED_WITH_WATERMARK),
    (G32, gen(seed=0, addWatermark=False), "seed must be between 1 and 2147483647"),
    (G32, gen(personGeneration="everyone"), "personGeneration 'everyone'"),
    (I5, gen(safetySetting="block_none"), "safetySetting is not supported"),
    (G32, gen(language="ja"), "language is not supported"),
    (I6, gen(sampleImageStyle="sketch"), "sampleImageStyle is not supported"),
    (G32, gen(sample_count=2), 'Unknown name "sample_count"'),
    (G32, {**gen(), "instance": {}}, 'Unknown name "instance"'),
    (G32, {"instances": [{"prompt": "a"}, {"prompt": "b"}]}, "exactly one instance"),
    (G32, gen(""), "The prompt is required."),
    (I2, gen("cat " * 65), "longer than 64 tokens"),
    (G32, gen(outputOptions={"mimeType": "image/webp"}), "mimeType 'image/webp'"),
    (G32, gen(outputOptions={"compressionQuality": 101}), "between 0 and 100"),
    (G32, gen(storageUri="s3://bucket"), "gs://"),
    (G32, up(), "Upscaling is not supported by model imagen-3.0-generate-002"),
    (G32, gen("a forbidden-word here"), PROMPT_BLOCKED),
    (I2, up(factor="x3"), "upscaleFactor must be one of x2, x4"),
    (UP4, up(factor="x5", legacy=False), "upscaleFactor must be one of x2, x3, x4"),
    (I2, {**up(), "parameters": UP4_X2}, 'mode must be "upscale"'),
    (I2, up(upscaleConfig={"upscaleFactor": "x2", "enhanceInputImage": True}),
     'Unknown name "enhanceInputImage"'),
    (I2, up(addWatermark=False), 'Unknown name "addWatermark"'),
    (UP4, up(png_bytes(32, 24, fmt="WEBP"), legacy=False), "Unsupported image MIME type"),
    (UP4, only_image(bytesBase64Encoded="A" * (10 * 1024 * 1024 + 4)), "at most 10 MB"),
    (UP4, only_image(gcsUri="gs://b/i.png"), "cannot read image.gcsUri"),
    (UP4, only_image(gcsUri="gs://b/i.png", bytesBase64Encoded="AAAA"), "Exactly one of"),
    (UP4, only_image(bytesBase64Encoded="!!"), "could not be decoded"),
    (UP4, up(legacy=False, imagePreservationFactor=2),
     "Unknown name \"imagePreservationFactor\" at 'parameters'"),
    (UP4, up(factor=None, legacy=False,
             upscaleConfig={"upscaleFactor": "x2", "imagePreservationFactor": 2}),
     "imagePreservationFactor must be between 0 and 1"),
]
# fmt: on


@pytest.mark.parametrize(
    ("model", "body", "message"), INVALID, ids=[f"{c[0]}:{c[2][:30]}" for c in INVALID]
)
def test_invalid_requests_are_400_invalid_argument(
    client: httpx.Client, model: str, body: dict[str, Any], message: str
) -> None:
    status, code, text = rpc(predict(client, model, body))
    assert (status, code) == (400, "INVALID_ARGUMENT")
    assert message in text


def test_the_upscale_4_output_cap_is_17_megapixels(client: httpx.Client) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (2100, 2100)).save(buffer, format="PNG")
    response = predict(client, "imagen-4.0-upscale-preview", up(buffer.getvalue(), legacy=False))
    assert "maximum output resolution of 17 megapixels" in rpc(response)[2]


def test_a_body_that_is_not_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        model_path("imagen-3.0-generate-002"),
        content=b"{",
        headers={"authorization": f"Bearer {token(client)}", "content-type": "application/json"},
    )
    assert rpc(response)[2].startswith("Invalid JSON payload received.")


# --------------------------------------------------------------------------- answers

# fmt: off
VALID: list[tuple[str, dict[str, Any], list[tuple[str, int, int]]]] = [
    (G31, gen(), [("image/png", 1024, 1024)] * 4),  # sampleCount defaults to 4
    (G4, gen(sampleCount=2, aspectRatio="9:16", sampleImageSize="2k"),
     [("image/png", 1536, 2816)] * 2),
    ("imagen-4.0-ultra-generate-001", gen(sampleCount=1, aspectRatio="4:3",
     outputOptions={"mimeType": "image/jpeg", "compressionQuality": 60}),
     [("image/jpeg", 1280, 896)]),
    (G32, gen(sampleCount=1, personGeneration="ALLOW_ALL", safetySetting="BLOCK_FEW"),
     [("image/png", 1024, 1024)]),
    (I6, gen(sampleCount=1, language="zh-TW", negativePrompt="fog"), [("image/png", 1024, 1024)]),
    (I5, gen(sampleCount=1, seed=9), [("image/png", 1024, 1024)]),
    (I2, gen(sampleCount=8, sampleImageStyle="sketch"), [("image/png", 1024, 1024)] * 8),
    (G32, gen(sampleCount=1, seed=9, addWatermark=False), [("image/png", 1024, 1024)]),
    (I2, up(png_bytes(32, 24, fmt="JPEG"), factor="x4"), [("image/png", 128, 96)]),
    (I2, up(png_bytes(256, 128), factor=None, sampleImageSize="1024"), [("image/png", 1024, 512)]),
    (UP4, up(factor="x3", legacy=False, addWatermark=False,
             outputOptions={"mimeType": "image/jpeg"}), [("image/jpeg", 96, 72)]),
    (UP4, up(factor="x2", legacy=True), [("image/png", 64, 48)]),  # the locale copies' shape
]
# fmt: on


@pytest.mark.parametrize(
    ("model", "body", "expected"), VALID, ids=[f"{c[0]}-{i}" for i, c in enumerate(VALID)]
)
def test_valid_requests_answer_images_of_the_documented_size(
    client: httpx.Client, model: str, body: dict[str, Any], expected: list[tuple[str, int, int]]
) -> None:
    response = predict(client, model, body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert sizes(response) == expected


def test_filtered_images_are_dropped_or_explained(client: httpx.Client, state: VertexState) -> None:
    state.filter_images = 1
    some = predict(
        client, "imagen-3.0-generate-001", gen(sampleCount=3, includeRaiReason=True)
    ).json()
    assert len(some["predictions"]) == 3 and "raiFilteredReason" in some["predictions"][-1]
    state.filter_images = 8
    every = predict(
        client, "imagen-3.0-generate-001", gen(sampleCount=2, includeRaiReason=True)
    ).json()
    silent = predict(client, "imagen-3.0-generate-001", gen(sampleCount=2))
    assert every == {"predictions": [{"raiFilteredReason": ALL_FILTERED}]}
    assert (silent.status_code, silent.json()) == (200, {})


def test_extras_positive_prompt_enhanced_prompt_and_cloud_storage(client: httpx.Client) -> None:
    safety = predict(
        client, "imagen-3.0-generate-002", gen(sampleCount=2, includeSafetyAttributes=True)
    ).json()
    images, extra = safety["predictions"][:2], safety["predictions"][2]
    assert all("safetyAttributes" in p and p["prompt"].startswith("a cat, ") for p in images)
    assert extra == {
        "contentType": "Positive Prompt",
        "safetyAttributes": {"categories": [], "scores": []},
    }
    plain = predict(
        client, "imagen-3.0-generate-002", gen(sampleCount=1, enhancePrompt=False)
    ).json()
    assert "prompt" not in plain["predictions"][0]
    stored = predict(
        client, "imagen-3.0-generate-001", gen(sampleCount=1, storageUri="gs://b/o")
    ).json()
    assert stored == {"predictions": [{"mimeType": "image/png", "gcsUri": "gs://b/o/sample_0.png"}]}


def test_faults_are_served_and_recorded(client: httpx.Client, state: VertexState) -> None:
    quota = rpc_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
    state.add_fault(Fault(kind="status", status=429, body=quota, path=":predict"))
    response = predict(client, "imagen-3.0-generate-002", gen())
    assert (response.status_code, response.json()) == (429, quota)
    assert len(state.predict_requests()) == 1


# --------------------------------------------------------------------------- runs alone


def test_runs_alone_and_writes_a_key_it_trusts(tmp_path: Path) -> None:
    port, keyfile = free_port(), tmp_path / "key.json"
    root = Path(__file__).resolve().parents[2]
    command = [
        sys.executable,
        "-m",
        "tests.emulators.vertex",
        "--port",
        str(port),
        "--key-file",
        str(keyfile),
    ]
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
                url + model_path("imagegeneration@002"),
                json=gen(sampleCount=1),
                headers={"authorization": f"Bearer {credentials.token}"},
                trust_env=False,
            )
        finally:
            proc.terminate()
    assert response.status_code == 200
    assert sizes(response) == [("image/png", 1024, 1024)]
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
