"""The official OpenAI SDKs as clients, with only the base URL and an API key changed.

A real gateway process (``python -m app``) serves Venice and Vertex through their emulators
(Vertex authenticates through google-auth for real). The Python SDK (PyPI ``openai``) and
the Node SDK (npm ``openai``, run by Node with the script in tests/sdk/node) generate
through both vendors and decode the images, get ``BadRequestError`` for what a model's
limits refuse and ``RateLimitError`` when the vendor rate-limits, list the models and
upload a file to ``/v1/images/upscale``.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
from openai.types import ImagesResponse
from PIL import Image

from app.callers.keys import CallerKey, digest, new_secret, write_key_file
from app.settings import VertexSettings
from tests.conftest import png_bytes
from tests.deploy.tooling import require_tool
from tests.emulators import venice, vertex
from tests.emulators.common import EmulatorServer, Fault
from tests.process import ROOT, GatewayProcess

VERTEX_MODEL = f"vertex/{VertexSettings().generate_model}"
#: A caller key of the gateway (IMAGE_GATEWAY_CALLERS__KEYS_FILE): the SDKs send it as
#: ``Authorization: Bearer``, exactly as they send an OpenAI key.
API_KEY = new_secret("sdk-tests")
NODE_DIR = ROOT / "tests" / "sdk" / "node"


class Stack:
    def __init__(self, gateway: GatewayProcess, venice: EmulatorServer, vertex: EmulatorServer):
        self.gateway, self.venice, self.vertex = gateway, venice, vertex

    @property
    def base_url(self) -> str:
        return self.gateway.url + "/v1"

    def reset(self) -> None:
        cast(venice.VeniceState, self.venice.state).reset()
        cast(vertex.VertexState, self.vertex.state).reset()

    def n_limit(self, provider: str, model: str) -> int:
        """The model's largest ``n``, as ``GET /v1/providers`` publishes its limits."""
        catalog = httpx.get(self.gateway.url + "/v1/providers", timeout=10).json()
        entry = next(p for p in catalog if p["id"] == provider)
        row = next(
            m for m in entry["models"] if m["model"] == model and "generate" in m["operations"]
        )
        return int(row["n"]["max"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    venice_state, vertex_state = venice.VeniceState(), vertex.VertexState()
    with (
        EmulatorServer(venice.create_app(venice_state), venice_state) as venice_server,
        EmulatorServer(vertex.create_app(vertex_state), vertex_state) as vertex_server,
    ):
        key = vertex.new_service_account(vertex_state, vertex_server.url + "/token")
        keyfile = tmp_path_factory.mktemp("sdk") / "service-account.json"
        keyfile.write_text(json.dumps(key))
        callers = tmp_path_factory.mktemp("callers") / "keys.json"
        write_key_file(callers, [CallerKey(id="sdk-tests", hash=digest(API_KEY))])
        env = {
            "IMAGE_GATEWAY_CALLERS__KEYS_FILE": str(callers),
            "IMAGE_GATEWAY_VENICE__API_KEY": venice.DEFAULT_API_KEY,
            "IMAGE_GATEWAY_VENICE__BASE_URL": venice_server.url + "/api/v1",
            "IMAGE_GATEWAY_VERTEX__PROJECT": "p",
            "IMAGE_GATEWAY_VERTEX__BASE_URL": vertex_server.url,
            "IMAGE_GATEWAY_VERTEX__GLOBAL_BASE_URL": vertex_server.url + vertex.GLOBAL_PREFIX,
            "IMAGE_GATEWAY_VERTEX__CREDENTIALS_FILE": str(keyfile),
            "IMAGE_GATEWAY_ROUTING__GENERATE": "venice,vertex",
            "IMAGE_GATEWAY_ROUTING__UPSCALE": "local",
            "IMAGE_GATEWAY_RETRY__BASE_DELAY_S": "0.001",
            "IMAGE_GATEWAY_RETRY__MAX_DELAY_S": "0.002",
            "IMAGE_GATEWAY_OPENAI__MODEL_ALIASES": "gpt-image-1=venice/venice-sd35",
            "IMAGE_GATEWAY_STATE__DATA_DIR": str(tmp_path_factory.mktemp("state")),
        }
        with GatewayProcess(env) as gateway:
            yield Stack(gateway, venice_server, vertex_server)


@pytest.fixture
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stack.base_url, api_key=API_KEY) as sdk:
        yield sdk


def decoded(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


# --------------------------------------------------------------------------- Python SDK


def test_python_sdk_generates_through_venice(client: openai.OpenAI, stack: Stack) -> None:
    result = client.images.generate(model="venice-sd35", prompt="a lighthouse", size="1024x1024")
    image = decoded(result.data[0].b64_json if result.data else None)
    assert (image.format, image.size) == ("PNG", (1024, 1024))
    assert result.output_format == "png" and result.size == "1024x1024"
    assert len(stack.venice.state.requests_to("/image/generate")) == 1


def test_python_sdk_generates_through_vertex_and_sees_the_gateways_headers(
    client: openai.OpenAI, stack: Stack
) -> None:
    raw = client.images.with_raw_response.generate(model=VERTEX_MODEL, prompt="a lighthouse")
    result = raw.parse()
    assert result.data and len(result.data) == 1
    assert decoded(result.data[0].b64_json).format == "PNG"
    assert raw.headers["x-image-gateway-provider"] == "vertex"
    assert raw.headers["x-image-gateway-model"] == VERTEX_MODEL.split("/", 1)[1]
    assert raw.headers["x-request-id"]
    assert stack.vertex.state.requests_to(":generateContent")


def test_python_sdk_url_results_download(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="venice-sd35", prompt="a lighthouse", response_format="url", size="512x512"
    )
    assert result.data and result.data[0].url and result.data[0].b64_json is None
    downloaded = httpx.get(result.data[0].url, timeout=10)
    image = decoded(base64.b64encode(downloaded.content).decode())
    assert (image.format, image.size) == ("PNG", (512, 512))


def test_python_sdk_alias(client: openai.OpenAI, stack: Stack) -> None:
    raw = client.images.with_raw_response.generate(model="gpt-image-1", prompt="a lighthouse")
    assert raw.headers["x-image-gateway-model"] == "venice-sd35"


@pytest.mark.parametrize(
    ("provider", "model"), [("venice", "venice-sd35"), ("vertex", VERTEX_MODEL)]
)
def test_python_sdk_bad_request_for_n_beyond_the_models_limit(
    client: openai.OpenAI, stack: Stack, provider: str, model: str
) -> None:
    too_many = stack.n_limit(provider, model.split("/")[-1]) + 1
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model=model, prompt="a lighthouse", n=too_many)
    assert caught.value.status_code == 400
    assert (caught.value.param, caught.value.code) == ("n", "invalid_value")
    if too_many <= 8:  # else the normalized API's own cap (8) refused it first
        assert provider in caught.value.message
    assert not stack.venice.state.requests_to("/image/generate")
    assert not stack.vertex.state.requests_to("/publishers/google/models/")


@pytest.mark.parametrize(
    ("model", "size"), [("venice-sd35", "2048x2048"), (VERTEX_MODEL, "1000x1000")]
)
def test_python_sdk_a_size_the_model_cannot_produce_names_size(
    client: openai.OpenAI, model: str, size: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model=model, prompt="a lighthouse", size=size)
    assert caught.value.param == "size"
    assert "Invalid 'size': " in caught.value.message


def test_python_sdk_rate_limit_error_without_resending_to_venice(
    client: openai.OpenAI, stack: Stack
) -> None:
    stack.venice.state.add_fault(venice.venice_fault(429, path="/image/generate", times=5))
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(model="venice-sd35", prompt="a lighthouse")
    assert caught.value.code == "rate_limit_exceeded"
    # The SDK would resend twice by default; x-should-retry: false spares the Venice key
    # the repeated 4xx that lock it out (vendors.md §2.7).
    assert len(stack.venice.state.requests_to("/image/generate")) == 1


def test_python_sdk_rate_limit_error_from_vertex(client: openai.OpenAI, stack: Stack) -> None:
    fault = vertex.rpc_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded")
    stack.vertex.state.add_fault(
        Fault("status", status=429, body=fault, path=":generateContent", times=10)
    )
    # The gateway already retried Vertex (with backoff) before answering 429; this client
    # does not add its own two resends, which would wait out Retry-After each time.
    with pytest.raises(openai.RateLimitError):
        client.with_options(max_retries=0).images.generate(model=VERTEX_MODEL, prompt="a fox")


def test_python_sdk_with_a_wrong_key_gets_authentication_error(stack: Stack) -> None:
    wrong = openai.OpenAI(base_url=stack.base_url, api_key=API_KEY + "x")
    with wrong, pytest.raises(openai.AuthenticationError) as caught:
        wrong.images.generate(model="venice-sd35", prompt="a lighthouse")
    assert caught.value.code == "invalid_api_key"
    assert not stack.venice.state.requests_to("/image/generate")


def test_python_sdk_discontinued_model_is_not_found_naming_its_replacement(
    client: openai.OpenAI, stack: Stack
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.images.generate(model="vertex/imagen-3.0-generate-002", prompt="a lighthouse")
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    assert "discontinued" in caught.value.message and "use " in caught.value.message
    assert not stack.vertex.state.requests_to("/publishers/google/models/")


def test_python_sdk_lists_models(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert models["venice-sd35"].owned_by == "venice"
    assert models[VERTEX_MODEL.split("/", 1)[1]].owned_by == "vertex"
    assert models["lanczos"].owned_by == "local"
    assert models["gpt-image-1"].owned_by == "venice"
    assert client.models.retrieve("lanczos").owned_by == "local"
    assert "imagen-3.0-generate-002" not in models  # discontinued: listed nowhere
    gemini = models[VERTEX_MODEL.split("/", 1)[1]].model_dump()
    assert gemini["created"] > 0  # the vendor's release day, from the lifecycle table


def test_python_sdk_uploads_a_file_to_upscale(client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "in.png"
    path.write_bytes(png_bytes(64, 48))
    with path.open("rb") as file:
        result = client.post(
            "/images/upscale",
            cast_to=ImagesResponse,
            body={"scale": 2, "model": "lanczos"},
            files=[("image", ("in.png", file, "image/png"))],
            options={"headers": {"Content-Type": "multipart/form-data"}},
        )
    image = decoded(result.data[0].b64_json if result.data else None)
    assert image.size == (128, 96)
    assert result.size == "128x96"


def test_python_sdk_upscale_refusal_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.post(
            "/images/upscale",
            cast_to=ImagesResponse,
            body={"size": "100x100"},
            files=[("image", ("in.png", png_bytes(64, 48), "image/png"))],
            options={"headers": {"Content-Type": "multipart/form-data"}},
        )
    assert caught.value.param == "size"


# --------------------------------------------------------------------------- Node SDK


@pytest.fixture(scope="module")
def node() -> str:
    """Node with the pinned SDK in tests/sdk/node (``npm ci`` when not installed yet)."""
    node = require_tool("node", "Node.js 20+, the machine's nodejs package")
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").exists():
        npm = require_tool("npm", "npm, with Node.js")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    return node


@pytest.fixture(autouse=True)
def fresh_emulators(stack: Stack) -> None:
    stack.reset()


def run_node(node: str, stack: Stack, *args: str, **env: str) -> dict[str, Any]:
    """One scenario of check.mjs: its JSON line, ``{"ok": ...}`` or ``{"error": ...}``."""
    done = subprocess.run(
        [node, "check.mjs", *args],
        cwd=NODE_DIR,
        env={
            "PATH": "/usr/bin:/bin",
            "GATEWAY_BASE_URL": stack.base_url,
            "API_KEY": API_KEY,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return cast(dict[str, Any], json.loads(done.stdout.strip().splitlines()[-1]))


def test_node_sdk_generates_through_venice_and_vertex(node: str, stack: Stack) -> None:
    venice_answer = run_node(node, stack, "generate", "venice-sd35", SIZE="1024x768")["ok"]
    image = decoded(venice_answer["images"][0])
    assert (image.format, image.size) == ("PNG", (1024, 768))
    assert (venice_answer["provider"], venice_answer["size"]) == ("venice", "1024x768")
    vertex_answer = run_node(node, stack, "generate", VERTEX_MODEL)["ok"]
    assert decoded(vertex_answer["images"][0]).format == "PNG"
    assert vertex_answer["provider"] == "vertex"


@pytest.mark.parametrize(
    ("provider", "model"), [("venice", "venice-sd35"), ("vertex", VERTEX_MODEL)]
)
def test_node_sdk_bad_request_for_n_beyond_the_models_limit(
    node: str, stack: Stack, provider: str, model: str
) -> None:
    too_many = stack.n_limit(provider, model.split("/")[-1]) + 1
    error = run_node(node, stack, "generate", model, str(too_many))["error"]
    assert error["bad_request"] and error["class"] == "BadRequestError"
    assert (error["status"], error["param"], error["code"]) == (400, "n", "invalid_value")


def test_node_sdk_size_the_model_cannot_produce(node: str, stack: Stack) -> None:
    error = run_node(node, stack, "generate", "venice-sd35", SIZE="2048x2048")["error"]
    assert (error["class"], error["param"]) == ("BadRequestError", "size")


def test_node_sdk_rate_limit_error(node: str, stack: Stack) -> None:
    stack.venice.state.add_fault(venice.venice_fault(429, path="/image/generate", times=5))
    error = run_node(node, stack, "generate", "venice-sd35")["error"]
    assert error["rate_limit"] and (error["status"], error["code"]) == (429, "rate_limit_exceeded")
    assert len(stack.venice.state.requests_to("/image/generate")) == 1  # not resent


def test_node_sdk_lists_models(node: str, stack: Stack) -> None:
    models = {m["id"]: m for m in run_node(node, stack, "models")["ok"]["models"]}
    assert models["venice-sd35"]["owned_by"] == "venice"
    assert models["lanczos"]["owned_by"] == "local"
