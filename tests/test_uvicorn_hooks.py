"""uvicorn's private parts that app/uvicorn_hooks.py relies on: these fail when an upgrade
moves them, before a drain silently stops working."""

from __future__ import annotations

import signal
import tomllib
from pathlib import Path

import uvicorn
from packaging.specifiers import SpecifierSet
from uvicorn.supervisors import multiprocess

from app import uvicorn_hooks
from app.server import AppFactory, DrainingServer, uvicorn_config
from tests.conftest import make_settings


def test_the_installed_uvicorn_is_in_the_tested_range_and_pyproject_pins_it() -> None:
    assert uvicorn.__version__ in SpecifierSet(uvicorn_hooks.TESTED_RANGE)
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if d.startswith("uvicorn")]
    assert pins == [f"uvicorn[standard]{uvicorn_hooks.TESTED_RANGE}"]


def test_a_captured_signal_can_be_forgotten() -> None:
    server = uvicorn.Server(uvicorn.Config(lambda: None))
    server.handle_exit(signal.SIGTERM, None)  # what uvicorn does on SIGTERM
    assert server._captured_signals == [signal.SIGTERM]  # re-raised after shutdown ...
    uvicorn_hooks.forget_signal(server, signal.SIGTERM)
    assert server._captured_signals == []  # ... unless the drain forgot it


def test_workers_are_built_from_the_module_attribute_with_a_cached_server() -> None:
    original = multiprocess.Process
    try:
        made: list[uvicorn.Config] = []

        def make(config: uvicorn.Config) -> uvicorn.Server:
            made.append(config)
            return uvicorn.Server(config)

        uvicorn_hooks.use_worker_server(make)
        assert multiprocess.Process is not original and issubclass(multiprocess.Process, original)
        worker = multiprocess.Process(uvicorn.Config(lambda: None), [])  # built, not started
        assert worker.server is worker.server and len(made) == 1
        # the supervisor really reads the attribute when it starts a worker
        source = Path(multiprocess.__file__).read_text()
        assert "process = Process(self.config, self.sockets)" in source
    finally:
        multiprocess.Process = original  # type: ignore[misc]


def test_the_server_drains_the_lifecycle_the_app_was_given() -> None:
    config = uvicorn_config(make_settings(local={"enabled": True}))
    assert isinstance(config.app, AppFactory)
    server = DrainingServer(config, grace_s=1)
    app = config.app()
    assert app.state.lifecycle is server.lifecycle is config.app.lifecycle
