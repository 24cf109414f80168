from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.common import EmulatorServer
from tests.emulators.deepimage import DEFAULT_API_KEY, DeepImageState, create_app


@pytest.fixture(scope="module")
def deepimage_server() -> Iterator[EmulatorServer]:
    state = DeepImageState()
    with EmulatorServer(create_app(state), state) as running:
        yield running


@pytest.fixture
def deepimage(deepimage_server: EmulatorServer) -> DeepImageState:
    assert isinstance(deepimage_server.state, DeepImageState)
    deepimage_server.state.reset()
    deepimage_server.state.max_active_jobs = 1000
    return deepimage_server.state


@pytest.fixture(params=["sqlite", "redis"])
def state_settings(request: Any, tmp_path: Path) -> dict[str, Any]:
    """The state section for one backend: a SQLite file, or a real redis-server."""
    if request.param == "sqlite":
        return {"data_dir": str(tmp_path / "data")}
    server = request.getfixturevalue("redis_server")
    return {"url": server.url, "prefix": f"test-{uuid.uuid4().hex}:"}


def deepimage_settings(server: EmulatorServer) -> dict[str, Any]:
    return {"api_key": DEFAULT_API_KEY, "base_url": server.url}
