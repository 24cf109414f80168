"""The compose sandbox profile, run without Docker: every provider answers offline.

There is no container engine here, so this runs what docker-compose.yml's sandbox services
run, as processes from the repository (the image's working directory has the same layout):
each emulator's own command and the sandbox gateway's own environment, with the compose
service names and ports mapped to free ports on 127.0.0.1 and the shared key volume to a
temporary folder. A misspelt module, a wrong port, a bad base URL or a key the Vertex
emulator does not trust fails here.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import png_bytes
from tests.deploy.tooling import COMPOSE_FILE, ROOT
from tests.process import GatewayProcess, free_port

EMULATORS = ("vertex", "venice", "deepimage")
KEY_VOLUME = "/var/lib/image-gateway-sandbox"


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    return services


def compose_port(service: dict[str, Any]) -> int:
    return int(next(a for a in service["command"] if a.startswith("--port="))[len("--port=") :])


class Localizer:
    """Maps the compose network (service:port, the key volume) onto 127.0.0.1 and a folder."""

    def __init__(self, services: dict[str, Any], keys: Path) -> None:
        self.ports = {name: (compose_port(services[name]), free_port()) for name in EMULATORS}
        self.keys = keys

    def __call__(self, value: str) -> str:
        value = value.replace(KEY_VOLUME, str(self.keys)).replace(
            "--host=0.0.0.0", "--host=127.0.0.1"
        )
        for name, (inside, local) in self.ports.items():
            value = value.replace(f"http://{name}:{inside}", f"http://127.0.0.1:{local}")
            if value == f"--port={inside}":
                value = f"--port={local}"
        return value


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # the emulator is still starting; poll again
    raise RuntimeError(f"{proc.args!r} did not listen on {port} within {timeout}s")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The emulators and the sandbox gateway as compose would start them; the gateway URL."""
    services = compose_services()
    localize = Localizer(services, tmp_path_factory.mktemp("sandbox-keys"))
    procs = []
    try:
        for name in EMULATORS:
            entrypoint = services[name]["entrypoint"]
            assert entrypoint == ["python3"], "the sandbox image runs emulators with python3"
            command = [sys.executable, *(localize(a) for a in services[name]["command"])]
            proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
            procs.append(proc)
            wait_for_port(localize.ports[name][1], proc)
        env = {k: localize(str(v)) for k, v in services["gateway-sandbox"]["environment"].items()}
        with GatewayProcess(env=env) as gateway:
            yield gateway.url
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def test_every_provider_is_enabled(sandbox: str) -> None:
    answer = httpx.get(f"{sandbox}/v1/providers", timeout=10)
    assert answer.status_code == 200
    text = answer.text
    for provider in ("vertex", "venice", "deepimage", "local"):
        assert f'"{provider}"' in text


@pytest.mark.parametrize("provider", ["vertex", "venice", "deepimage", "local"])
def test_upscale_through_each_provider(sandbox: str, provider: str) -> None:
    image = base64.b64encode(png_bytes(256, 256)).decode()
    answer = httpx.post(
        f"{sandbox}/v1/upscale",
        json={"image": image, "scale": 2, "provider": provider},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["provider"] == provider
    assert body["images"][0]["width"] == 512


@pytest.mark.parametrize("provider", ["vertex", "venice", "deepimage"])
def test_generate_through_each_provider(sandbox: str, provider: str) -> None:
    answer = httpx.post(
        f"{sandbox}/v1/generate",
        json={"prompt": "a lighthouse at dusk", "provider": provider},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["provider"] == provider
    assert answer.json()["images"][0]["data"]
