"""HTTP/1.1 requests that offer an ``Upgrade`` the gateway does not speak keep their body.

Java's default ``HttpClient`` (and ``curl --http2``) offers ``Upgrade: h2c`` on every
plain-http request. llhttp, the parser behind uvicorn's httptools protocol, then treats
everything after the headers as the new protocol: the message "completes" with no body and
the body bytes are handed back unparsed, so a POST reached the app empty (400). RFC 9110
§7.8 lets a server ignore an Upgrade it does not want; this protocol does exactly that:
the request is served as HTTP/1.1 and its body is parsed by a fresh parser, fed the same
headers without the upgrade offer. WebSocket upgrades keep uvicorn's own handling.

This leans on uvicorn's private protocol class (its parser callbacks); uvicorn is pinned
for it in pyproject.toml and ``tests/test_http_upgrade.py`` proves the behaviour.
"""

from __future__ import annotations

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
