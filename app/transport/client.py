"""``Transport``: one vendor's pooled HTTP client, on aiohttp.

Per call: wait for a pooled connection (``pool_timeout_s``), connect when none is idle
(``connect_timeout_s``), send, and read the whole answer, every step inside the request's
deadline (and the vendor's ``timeout_s`` cap) as one budget, not per read: a vendor that
trickles bytes is cut off when the time is up. Both caps are far below the default
deadline, so a vendor that cannot be reached leaves time for fallback.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

import aiohttp
import certifi
from yarl import URL

from app import __version__
from app.domain import Deadline
from app.errors import GatewayError
from app.settings import TransportSettings
from app.transport.bodies import Body, Multipart, payload
from app.transport.errors import AnswerTooLarge, PoolTimeout, translate
from app.transport.proxy import ProxyRules
from app.transport.response import VendorResponse


class Transport:
    """Calls to one vendor. Create inside the running loop (``start``), close with ``aclose``."""

    def __init__(
        self,
        vendor: str,
        base_url: str,
        settings: TransportSettings,
        *,
        headers: Mapping[str, str] | None = None,
        cap_s: float = 120.0,
    ) -> None:
        self.vendor = vendor
        self.base = URL(base_url.rstrip("/"))
        self.settings = settings
        self.cap_s = cap_s
        self.proxies = ProxyRules.from_settings(settings)
        self._base_proxy = self.proxies.proxy_for(self.base)
        self._slots = asyncio.Semaphore(settings.max_connections)
        #: Exchanges under way (0 when nothing is in flight; for tests and debugging).
        self.busy = 0
        self._session = _session(settings, headers)

    async def send(
        self,
        method: str,
        target: str,
        deadline: Deadline,
        *,
        body: bytes | Body | Multipart | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        resend_safe: bool = True,
    ) -> VendorResponse:
        """One exchange. ``target`` is a path under the base URL or an absolute URL.
        ``resend_safe=False`` marks even a connect failure as not retryable (the vendor
        already holds a job that a second submission would pay for again)."""
        left = min(deadline.check(self.vendor), self.cap_s)
        try:
            async with asyncio.timeout(left):
                await self._acquire(min(self.settings.pool_timeout_s, left))
                self.busy += 1
                try:
                    return await self._exchange(
                        method, target, left, body, content_type, headers, params, max_bytes
                    )
                finally:
                    self.busy -= 1
                    self._slots.release()
        except GatewayError:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError, PoolTimeout, AnswerTooLarge) as exc:
            error = translate(exc, self.vendor)
            error.retryable = error.retryable and resend_safe
            raise error from None

    async def _acquire(self, wait_s: float) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: no timer needed
            return
        try:
            async with asyncio.timeout(wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise PoolTimeout() from None

    async def _exchange(
        self,
        method: str,
        target: str,
        left: float,
        body: bytes | Body | Multipart | None,
        content_type: str | None,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        max_bytes: int | None,
    ) -> VendorResponse:
        url, proxy = self._url(target)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(self.settings.connect_timeout_s, left)
        )
        async with self._session.request(
            method,
            url,
            data=payload(body, content_type),
            headers=headers,
            params=params,
            proxy=proxy,
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            content = await _read(response, max_bytes or self.settings.max_response_bytes)
            return VendorResponse(response.status, response.headers, content)

    def _url(self, target: str) -> tuple[URL, str | None]:
        if target.startswith(("http://", "https://")):
            url = URL(target, encoded=True)
            return url, self.proxies.proxy_for(url)
        return URL(str(self.base) + target, encoded=True), self._base_proxy

    def in_use(self) -> int:
        """Connections the pool has handed out and not taken back."""
        connector = self._session.connector
        return 0 if connector is None else len(connector._acquired)

    @property
    def closed(self) -> bool:
        return self._session.closed

    async def aclose(self) -> None:
        await self._session.close()


async def _read(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, refused as soon as it goes over ``limit`` (by its Content-Length, or while
    it streams in when chunked or close-delimited)."""
    declared = response.content_length
    if declared is not None:
        if declared > limit:
            raise AnswerTooLarge(f"a body over {limit} bytes (Content-Length {declared})")
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(f"a body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _session(
    settings: TransportSettings, headers: Mapping[str, str] | None
) -> aiohttp.ClientSession:
    tls = ssl.create_default_context(cafile=str(settings.ca_bundle or certifi.where()))
    connector = aiohttp.TCPConnector(
        limit=0,  # the pool's size is Transport._slots, so that its wait has its own timeout
        keepalive_timeout=settings.keepalive_s,
        ssl=tls,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        headers={"user-agent": f"image-gateway/{__version__}", **(headers or {})},
        skip_auto_headers=("accept-encoding",),
        max_line_size=settings.max_header_line_bytes,
        max_field_size=settings.max_header_line_bytes,
        max_headers=settings.max_headers,
        trust_env=False,  # proxies come from ProxyRules (the settings), never read here
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    # aiohttp sends an idempotent request (GET) once more when a kept-alive connection
    # turns out closed. The gateway resends nothing itself: only routing decides retries.
    # aiohttp's own test client turns this off the same way; a conformance test
    # (tests/transport) fails if an upgrade brings the resend back.
    session._retry_connection = False
    return session
