"""A live gateway for each contract test module (one cannot open a circuit for another):
``python -m app`` on 127.0.0.1 with the local provider for upscales and Venice (the Venice
emulator) for generates."""

from collections.abc import Iterator
from contextlib import contextmanager
from tempfile import TemporaryDirectory

import pytest

from tests.emulators.common import EmulatorServer
from tests.emulators.venice import DEFAULT_API_KEY, VeniceState, create_app
from tests.process import GatewayProcess


@contextmanager
def running_gateway(**env: str) -> Iterator[str]:
    state = VeniceState()
    with EmulatorServer(create_app(state), state) as venice, TemporaryDirectory() as data:
        settings = {
            "IMAGE_GATEWAY_STATE__DATA_DIR": data,
            "IMAGE_GATEWAY_VENICE__API_KEY": DEFAULT_API_KEY,
            "IMAGE_GATEWAY_VENICE__BASE_URL": venice.url + "/api/v1",
            "IMAGE_GATEWAY_ROUTING__UPSCALE": "local",
            "IMAGE_GATEWAY_ROUTING__GENERATE": "venice",
            **env,
        }
        with GatewayProcess(env=settings) as gateway:
            yield gateway.url


@pytest.fixture(scope="module")
def live_gateway() -> Iterator[str]:
    with running_gateway() as url:
        yield url
