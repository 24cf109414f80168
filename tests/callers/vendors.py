"""The three vendor emulators at once, and gateway settings wired to all of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.settings import Settings
from tests.conftest import make_settings
from tests.emulators import deepimage, venice, vertex
from tests.emulators.common import EmulatorServer

#: Backoff shrunk to a millisecond (no test waits on it).
RETRY = {"max_attempts": 2, "base_delay_s": 0.001, "max_delay_s": 0.002}


@dataclass
class Vendors:
    venice: EmulatorServer
    deepimage: EmulatorServer
    vertex: EmulatorServer
    key_dir: Path

    def all(self) -> list[EmulatorServer]:
        return [self.venice, self.deepimage, self.vertex]

    def requests(self) -> int:
        """Every request any emulator has seen (token requests included)."""
        return sum(len(server.state.requests) for server in self.all())

    def reset(self) -> None:
        for server in self.all():
            server.state.requests.clear()

    def provider_settings(self) -> dict[str, Any]:
        return {
            "venice": {"api_key": venice.DEFAULT_API_KEY, "base_url": self.venice.url + "/api/v1"},
            "deepimage": {"api_key": deepimage.DEFAULT_API_KEY, "base_url": self.deepimage.url},
            "vertex": self._vertex_settings(),
            "retry": RETRY,
        }

    def settings(self, **extra: Any) -> Settings:
        return make_settings(**{**self.provider_settings(), **extra})

    def _vertex_settings(self) -> dict[str, Any]:
        assert isinstance(self.vertex.state, vertex.VertexState)
        path = self.key_dir / f"sa-{self.vertex.port}.json"
        if not path.exists():
            key = vertex.new_service_account(self.vertex.state, self.vertex.url + "/token")
            path.write_text(json.dumps(key))
        return {
            "project": "p",
            "location": "us-central1",
            "base_url": self.vertex.url,
            "global_base_url": self.vertex.url + vertex.GLOBAL_PREFIX,
            "credentials_file": str(path),
        }


@contextmanager
def vendor_emulators(key_dir: Path) -> Iterator[Vendors]:
    with ExitStack() as stack:
        servers = [
            stack.enter_context(EmulatorServer(module.create_app(state), state))
            for module, state in (
                (venice, venice.VeniceState()),
                (deepimage, deepimage.DeepImageState()),
                (vertex, vertex.VertexState()),
            )
        ]
        yield Vendors(*servers, key_dir=key_dir)
