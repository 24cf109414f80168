"""The only place the gateway touches uvicorn's private parts, besides its HTTP protocol
subclass in ``app/server_limits.py`` (parser callbacks and
connection state, tested against the real server).

uvicorn has no public hook for either thing the gateway needs, so both are reached here,
with uvicorn pinned in pyproject.toml to the versions tested (``TESTED_RANGE``) and
``tests/test_uvicorn_hooks.py`` failing when an upgrade moves what they rely on:

- ``forget_signal``: after a signal, uvicorn re-raises it once it has shut down (so the
  process dies "by SIGTERM", exit -15). A completed drain is a clean exit (0), so the
  signal is taken off ``Server._captured_signals``.
- ``use_worker_server``: uvicorn's multi-worker supervisor builds each worker from the
  module attribute ``multiprocess.Process``, whose ``server`` property makes a plain
  ``uvicorn.Server`` (cached in ``_server``); a subclass makes the gateway's instead.
- ``UpgradeIgnoringProtocol``: HTTP/1.1 requests that offer an ``Upgrade`` the gateway does
  not speak keep their body. Java's default ``HttpClient`` (and ``curl --http2``) offers
  ``Upgrade: h2c`` on every plain-http request; llhttp, the parser behind uvicorn's
  httptools protocol, then treats everything after the headers as the new protocol, so a
  POST reached the app empty (400). RFC 9110 §7.8 lets a server ignore an Upgrade it does
  not want: the request is served as HTTP/1.1, its body parsed by a fresh parser fed the
  same headers without the upgrade offer. WebSocket upgrades keep uvicorn's own handling.
  It overrides the protocol's parser callbacks (``tests/test_http_upgrade.py`` proves the
  behaviour on a real server).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import multiprocess

#: The uvicorn versions these hooks are tested with (kept in step with pyproject.toml).
TESTED_RANGE = ">=0.30,<0.55"


def forget_signal(server: uvicorn.Server, sig: int) -> None:
    """uvicorn will not re-raise ``sig`` when it exits."""
    if sig in server._captured_signals:
        server._captured_signals.remove(sig)


class WorkerProcess(multiprocess.Process):
    """A worker whose server is ``make(config)``. Module level, and ``make`` kept on the
    instance, because uvicorn pickles the process object into each spawned worker."""

    make: Callable[[uvicorn.Config], uvicorn.Server] | None = None

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self._make = type(self).make
        super().__init__(config, sockets)

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            assert self._make is not None, "use_worker_server() was not called"
            self._server = self._make(self.config)
        return self._server


def use_worker_server(make: Callable[[uvicorn.Config], uvicorn.Server]) -> None:
    """Workers started by ``multiprocess.Multiprocess`` from now on serve with ``make``
    (which must be picklable: a module-level function or a ``functools.partial`` of one)."""
    WorkerProcess.make = make
    multiprocess.Process = WorkerProcess  # type: ignore[misc]


class UpgradeIgnoringProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, serving unknown upgrades as plain HTTP/1.1."""

    _replaying = False

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade as exc:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._replay_without_upgrade(data[int(exc.args[0]) :])

    def _replay_without_upgrade(self, rest: bytes) -> None:
        """A new parser reads the same request line and headers (minus the upgrade offer)
        and then the body; its header callbacks are skipped, the ASGI cycle already runs."""
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self._replaying = True
        self.data_received(_head_without_upgrade(self.scope["method"], self.url, self.headers))
        self.data_received(rest)

    def on_headers_complete(self) -> None:
        if self._replaying:
            self._replaying = False
            return
        super().on_headers_complete()

    def on_message_begin(self) -> None:
        if not self._replaying:
            super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self._replaying:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._replaying:
            super().on_header(name, value)

    def on_message_complete(self) -> None:
        # The first parser "completes" an upgrade request at the end of its headers; the
        # replaying parser completes it after the body.
        if self.parser.should_upgrade() and not self._should_upgrade():
            return
        super().on_message_complete()


_UPGRADE_TOKENS = (b"upgrade", b"http2-settings")


def _head_without_upgrade(method: str, url: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [method.encode("ascii") + b" " + url + b" HTTP/1.1"]
    for name, value in headers:
        if name in (b"upgrade", b"http2-settings"):
            continue
        if name == b"connection":
            tokens = [t.strip() for t in value.split(b",")]
            value = b", ".join(t for t in tokens if t.lower() not in _UPGRADE_TOKENS)
            if not value:
                continue
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"
