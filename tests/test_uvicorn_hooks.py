"""uvicorn's private parts that app/uvicorn_hooks.py relies on: these fail when an upgrade
moves them, before a drain (or a POST offering Upgrade: h2c) silently stops working."""

from __future__ import annotations

import inspect
import signal
import tomllib
from collections.abc import Callable
from pathlib import Path

import httptools
import uvicorn
from packaging.specifiers import SpecifierSet
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
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


def _lines(function: Callable[..., object]) -> list[str]:
    return [line.strip() for line in inspect.getsource(function).splitlines()]


def test_the_upgrade_protocol_overrides_what_uvicorn_still_does_the_same_way() -> None:
    """UpgradeIgnoringProtocol.data_received is uvicorn's, but for the unsupported-upgrade
    branch; the callbacks it skips while replaying are the ones that fill the request."""
    ours = uvicorn_hooks.UpgradeIgnoringProtocol
    assert issubclass(ours, HttpToolsProtocol)
    theirs = _lines(HttpToolsProtocol.data_received)
    for line in ("self._unset_keepalive_if_required()", "self.parser.feed_data(data)"):
        assert line in theirs
    assert "except httptools.HttpParserUpgrade:" in theirs
    assert theirs.index("if self._should_upgrade():") + 1 == theirs.index(
        "self.handle_websocket_upgrade()"
    )
    for name in ("on_message_begin", "on_url", "on_header", "on_headers_complete"):
        assert name in vars(ours) and callable(getattr(HttpToolsProtocol, name))
    assert "self.url += url" in _lines(HttpToolsProtocol.on_url)
    assert "self.headers.append((name, value))" in _lines(HttpToolsProtocol.on_header)
    begin = _lines(HttpToolsProtocol.on_message_begin)
    assert 'self.url = b""' in begin and "self.headers = []" in begin
    complete = _lines(HttpToolsProtocol.on_headers_complete)
    assert any(line.startswith('self.scope["method"] = ') for line in complete)
    for name in ("send_400_response", "_should_upgrade", "handle_websocket_upgrade"):
        assert callable(getattr(HttpToolsProtocol, name))


def test_llhttp_hands_back_an_upgrade_requests_body_at_the_offset_it_reports() -> None:
    """What the replay relies on: the parser stops at the end of the headers, says so with
    HttpParserUpgrade(offset), and a new lenient parser takes the body afterwards."""
    head = b"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n"
    offer = b"Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n"

    class Sink:
        def __init__(self) -> None:
            self.body = b""

        def on_body(self, body: bytes) -> None:
            self.body += body

    sink = Sink()
    parser = httptools.HttpRequestParser(sink)
    try:
        parser.feed_data(head + offer + b"body")
    except httptools.HttpParserUpgrade as exc:
        rest = (head + offer + b"body")[int(exc.args[0]) :]
    else:
        raise AssertionError("llhttp no longer stops at an upgrade offer")
    assert rest == b"body" and parser.should_upgrade() and sink.body == b""
    fresh = httptools.HttpRequestParser(sink)
    fresh.set_dangerous_leniencies(lenient_data_after_close=True)
    fresh.feed_data(head + b"\r\n" + rest)
    assert sink.body == b"body"
