"""The fault matrix: every injected vendor fault, for every vendor, through the gateway over
real HTTP to the emulators. For each: the status and code the caller gets, how many times
the vendor was called, and the retry / circuit / fallback behaviour of DESIGN and issue 6:

- retried (same vendor): connection refused, 429 (except Venice: its lockout punishes any
  repeated 4xx, vendors.md §2.7), 502/503/504 from the vendor;
- never retried: 500, a reset or truncated answer (the vendor may have done the work),
  malformed bodies, timeouts;
- fallback to the next provider on 429/5xx/timeouts when the request allows it.

Backoff is shrunk to a millisecond; deadlines are lowered with ``X-Request-Timeout``.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import gateway, make_settings, png_bytes
from tests.emulators import deepimage, venice, vertex
from tests.emulators.common import EmulatorServer, EmulatorState, Fault
from tests.process import free_port

pytestmark = pytest.mark.anyio

RETRY = {"max_attempts": 3, "base_delay_s": 0.001, "max_delay_s": 0.002}


@dataclass
class Vendor:
    name: str
    make_state: Callable[[], EmulatorState]
    make_app: Callable[[Any], Any]
    settings: Callable[[EmulatorServer], dict[str, Any]]
    submit_path: str
    error_body: Callable[[int], Any]
    retries_429: bool = True


VENDORS = {
    "venice": Vendor(
        "venice",
        venice.VeniceState,
        venice.create_app,
        lambda srv: {"api_key": venice.DEFAULT_API_KEY, "base_url": srv.url + "/api/v1"},
        "/image/generate",
        lambda status: {"error": f"emulated {status}"},
        retries_429=False,
    ),
    "deepimage": Vendor(
        "deepimage",
        deepimage.DeepImageState,
        deepimage.create_app,
        lambda srv: {"api_key": deepimage.DEFAULT_API_KEY, "base_url": srv.url},
        "/rest_api/process_result",
        lambda status: {"message": f"emulated {status}"},
    ),
    "vertex": Vendor(
        "vertex",
        vertex.VertexState,
        vertex.create_app,
        lambda srv: vertex_settings(srv),
        "/publishers/google/models/",
        lambda status: vertex.rpc_error(status, _RPC.get(status, "UNKNOWN"), "emulated"),
    ),
}
_KEYS = tempfile.TemporaryDirectory(prefix="fault-matrix-keys-")  # removed at exit
_RPC = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE"}


def vertex_settings(server: EmulatorServer) -> dict[str, Any]:
    """A service-account key trusted by this emulator, whose token_uri is the emulator."""
    assert isinstance(server.state, vertex.VertexState)
    key = vertex.new_service_account(server.state, server.url + "/token")
    path = Path(_KEYS.name) / f"key-{server.port}.json"
    path.write_text(json.dumps(key))
    return {
        "project": "p",
        "location": "us-central1",
        "base_url": server.url,
        "global_base_url": server.url + vertex.GLOBAL_PREFIX,
        "credentials_file": str(path),
    }


GENERATE = {"prompt": "a red fox in snow"}
UPSCALE_PATHS = {"venice": "/image/upscale"}


@pytest.fixture(params=sorted(VENDORS))
def vendor(request: pytest.FixtureRequest) -> Iterator[tuple[Vendor, EmulatorServer]]:
    spec = VENDORS[request.param]
    state = spec.make_state()
    with EmulatorServer(spec.make_app(state), state) as server:
        yield spec, server


def settings_for(spec: Vendor, server: EmulatorServer, **extra: Any) -> Any:
    values: dict[str, Any] = {
        spec.name: spec.settings(server),
        "routing": {"generate": [spec.name], "upscale": [spec.name, "local"]},
        "retry": RETRY,
        "local": {"enabled": True},
    }
    values.update(extra)
    return make_settings(**values)


def calls(server: EmulatorServer, spec: Vendor) -> int:
    return len(server.state.requests_to(spec.submit_path))


# fault, expected (status, code), attempts: a number or a function of the vendor
MATRIX: list[tuple[str, Callable[[Vendor], Fault], int, str, Callable[[Vendor], int]]] = [
    (
        "429+Retry-After",
        lambda v: Fault(
            "status",
            status=429,
            body=v.error_body(429),
            headers={"retry-after": "0"},
            path=v.submit_path,
            times=5,
        ),
        429,
        "rate_limited",
        lambda v: 3 if v.retries_429 else 1,
    ),
    (
        "500",
        lambda v: Fault("status", status=500, body=v.error_body(500), path=v.submit_path, times=5),
        502,
        "upstream_error",
        lambda v: 1,
    ),
    (
        "502",
        lambda v: Fault("status", status=502, body=v.error_body(502), path=v.submit_path, times=5),
        502,
        "upstream_error",
        lambda v: 3,
    ),
    (
        "503",
        lambda v: Fault("status", status=503, body=v.error_body(503), path=v.submit_path, times=5),
        503,
        "provider_unavailable",
        lambda v: 3,
    ),
    (
        "reset mid-response",
        lambda v: Fault("reset", path=v.submit_path, times=5),
        502,
        "upstream_error",
        lambda v: 1,
    ),
    (
        "truncated body",
        lambda v: Fault("truncate", body={"images": ["x" * 2000]}, path=v.submit_path, times=5),
        502,
        "upstream_error",
        lambda v: 1,
    ),
    (
        "malformed body",
        lambda v: Fault("malformed", path=v.submit_path, times=5),
        502,
        "upstream_error",
        lambda v: 1,
    ),
]


@pytest.mark.parametrize(
    ("name", "fault", "status", "code", "attempts"), MATRIX, ids=[m[0] for m in MATRIX]
)
async def test_fault_matrix(
    vendor: tuple[Vendor, EmulatorServer],
    name: str,
    fault: Callable[[Vendor], Fault],
    status: int,
    code: str,
    attempts: Callable[[Vendor], int],
) -> None:
    spec, server = vendor
    server.state.add_fault(fault(spec))
    async with gateway(settings_for(spec, server)) as client:
        response = await client.post("/v1/generate", json=GENERATE)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert calls(server, spec) == attempts(spec)
    assert response.headers["x-image-gateway-attempts"].count(spec.name) == attempts(spec)
    if status in (429, 503):
        assert int(response.headers["retry-after"]) >= 0


@pytest.mark.parametrize("kind", ["hang", "slow"])
async def test_a_vendor_that_does_not_answer_is_a_504_within_the_deadline(
    vendor: tuple[Vendor, EmulatorServer], kind: str
) -> None:
    spec, server = vendor
    server.state.add_fault(Fault(kind, delay_s=30, path=spec.submit_path))  # type: ignore[arg-type]
    async with gateway(settings_for(spec, server)) as client:
        response = await client.post(
            "/v1/generate", json=GENERATE, headers={"x-request-timeout": "0.3"}
        )
    assert (response.status_code, response.json()["code"]) == (504, "upstream_timeout")
    assert calls(server, spec) == 1
    assert float(response.headers["server-timing"].split("dur=")[1].split(",")[0]) < 2000


async def test_connection_refused_is_retried_then_503(
    vendor: tuple[Vendor, EmulatorServer],
) -> None:
    spec, server = vendor
    values = spec.settings(server)
    dead = str(free_port())
    for key in ("base_url", "global_base_url"):
        if key in values:
            values[key] = values[key].replace(str(server.port), dead)
    async with gateway(settings_for(spec, server, **{spec.name: values})) as client:
        response = await client.post("/v1/generate", json=GENERATE)
    assert (response.status_code, response.json()["code"]) == (503, "provider_unavailable")
    assert response.headers["x-image-gateway-attempts"].count(spec.name) == 3


async def test_circuit_opens_and_then_the_vendor_is_not_called(
    vendor: tuple[Vendor, EmulatorServer],
) -> None:
    spec, server = vendor
    server.state.add_fault(
        Fault("status", status=500, body=spec.error_body(500), path=spec.submit_path, times=100)
    )
    circuit = {"min_requests": 3, "failure_ratio": 0.5, "window_s": 60, "cooldown_s": 60}
    async with gateway(settings_for(spec, server, circuit=circuit)) as client:
        for _ in range(3):
            assert (await client.post("/v1/generate", json=GENERATE)).status_code == 502
        blocked = await client.post("/v1/generate", json=GENERATE)
        providers = (await client.get("/v1/providers")).json()
    assert (blocked.status_code, blocked.json()["code"]) == (503, "provider_unavailable")
    assert int(blocked.headers["retry-after"]) > 0
    assert calls(server, spec) == 3
    assert [p["circuit"] for p in providers if p["id"] == spec.name] == ["open"]


async def test_upscale_falls_back_to_local_when_the_vendor_is_down(
    vendor: tuple[Vendor, EmulatorServer],
) -> None:
    spec, server = vendor
    path = UPSCALE_PATHS.get(spec.name, spec.submit_path)
    server.state.add_fault(
        Fault("status", status=503, body=spec.error_body(503), path=path, times=10)
    )
    image = base64.b64encode(png_bytes(320, 240)).decode()
    async with gateway(settings_for(spec, server)) as client:
        response = await client.post("/v1/upscale", json={"image": image, "scale": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["provider"] == "local"
    assert response.headers["x-image-gateway-attempts"] == ", ".join(
        [f"{spec.name}:provider_unavailable"] * 3 + ["local:ok"]
    )
    assert any(w.startswith("attempts: ") for w in body["warnings"])


async def test_explicit_provider_is_not_substituted_without_fallback(
    vendor: tuple[Vendor, EmulatorServer],
) -> None:
    spec, server = vendor
    path = UPSCALE_PATHS.get(spec.name, spec.submit_path)
    server.state.add_fault(
        Fault("status", status=503, body=spec.error_body(503), path=path, times=10)
    )
    image = base64.b64encode(png_bytes(320, 240)).decode()
    async with gateway(settings_for(spec, server)) as client:
        strict = await client.post(
            "/v1/upscale", json={"image": image, "scale": 2, "provider": spec.name}
        )
        lenient = await client.post(
            "/v1/upscale",
            json={"image": image, "scale": 2, "provider": spec.name, "fallback": True},
        )
    assert strict.status_code == 503
    assert (lenient.status_code, lenient.json()["provider"]) == (200, "local")
