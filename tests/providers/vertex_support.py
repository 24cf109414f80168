"""Shared pieces of the Vertex provider tests: the emulator (both hosts on one port), a
service-account key it trusts, the provider, and helpers to build jobs and read what the
emulator received."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.domain import CallContext, Deadline, GenerateJob, InputImage, Job, UpscaleJob
from app.images import sniff
from app.providers.vertex import VertexProvider
from app.schemas import GenerateParams, UpscaleParams
from tests.conftest import make_settings, png_bytes
from tests.emulators.common import EmulatorServer, RecordedRequest
from tests.emulators.vertex import GLOBAL_PREFIX, VertexState, create_app, new_service_account

PNG = png_bytes(32, 24)
JPEG = png_bytes(32, 24, fmt="JPEG")
G25, G3P, G31 = "gemini-2.5-flash-image", "gemini-3-pro-image", "gemini-3.1-flash-image"
UP = "imagen-4.0-upscale-preview"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    state = VertexState()
    with EmulatorServer(create_app(state), state) as running:
        yield running


@pytest.fixture(scope="module")
def keyfile(server: EmulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert isinstance(server.state, VertexState)
    path = tmp_path_factory.mktemp("vertex") / "service-account.json"
    path.write_text(json.dumps(new_service_account(server.state, server.url + "/token")))
    return path


@pytest.fixture
def state(server: EmulatorServer) -> VertexState:
    assert isinstance(server.state, VertexState)
    server.state.reset()
    return server.state


def vertex_section(url: str, keyfile: Path | None, **vertex: Any) -> dict[str, Any]:
    return {
        "project": "p",
        "location": "us-central1",
        "base_url": url,
        "global_base_url": url + GLOBAL_PREFIX,
        "credentials_file": str(keyfile) if keyfile else None,
        **vertex,
    }


def settings_for(url: str, keyfile: Path | None, **vertex: Any) -> Any:
    return make_settings(vertex=vertex_section(url, keyfile, **vertex))


def gateway_settings(server: EmulatorServer, keyfile: Path, **vertex: Any) -> Any:
    return make_settings(
        vertex=vertex_section(server.url, keyfile, **vertex),
        routing={"upscale": ["vertex"], "generate": ["vertex"]},
        local={"enabled": False},
    )


@pytest.fixture
async def provider(
    server: EmulatorServer, state: VertexState, keyfile: Path
) -> AsyncIterator[VertexProvider]:
    running = VertexProvider(settings_for(server.url, keyfile))
    await running.start()
    yield running
    await running.aclose()


def ctx(seconds: float = 10.0, wants_bytes: bool = False) -> CallContext:
    return CallContext(request_id="test", deadline=Deadline(seconds), wants_bytes=wants_bytes)


def generate(**params: Any) -> GenerateJob:
    return GenerateJob(GenerateParams(**{"prompt": "a lighthouse at dusk", **params}))


def upscale(data: bytes = PNG, **params: Any) -> UpscaleJob:
    return UpscaleJob(
        UpscaleParams(**params), InputImage(data, sniff(data), base64.b64encode(data).decode())
    )


async def run(provider: VertexProvider, job: Job, context: CallContext | None = None) -> Any:
    """What routing does: prepare (lifecycle, aliases, validation), then execute."""
    return await provider.execute(provider.prepare_checked(job), context or ctx())


def model_calls(state: VertexState) -> list[RecordedRequest]:
    return [r for r in state.requests if ":generateContent" in r.path or ":predict" in r.path]


def bodies(state: VertexState) -> list[dict[str, Any]]:
    return [r.json() for r in model_calls(state)]


def sent(state: VertexState) -> dict[str, Any]:
    [body] = bodies(state)
    return body


def tokens_requested(state: VertexState) -> int:
    return len(state.requests_to("/token"))
