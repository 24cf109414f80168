"""Google credentials for Vertex: a service-account key file or Application Default
Credentials (vendors.md §1.1), and OAuth2 access tokens cached until near expiry."""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import google.auth
import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.oauth2 import service_account

from app.errors import GatewayError, ProviderUnavailable, UpstreamError, UpstreamTimeout
from app.providers.base import Deadline
from app.providers.vertex_limits import PROVIDER, SCOPES
from app.redact import clip
from app.transport import ProxyRules


def load_credentials(path: Path | None) -> Any:
    """The service-account key file if configured, else Application Default Credentials
    (which honour ``GOOGLE_APPLICATION_CREDENTIALS``), with the cloud-platform scope (§1.1)."""
    try:
        if path is not None:
            return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                str(path), scopes=list(SCOPES)
            )
        credentials, _ = google.auth.default(scopes=list(SCOPES))
        return credentials
    except (OSError, ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        source = (
            f"IMAGE_GATEWAY_VERTEX__CREDENTIALS_FILE ({path})"
            if path is not None
            else "Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud, GCE)"
        )
        raise RuntimeError(
            f"vertex: cannot load Google credentials from {source}: {type(exc).__name__}"
        ) from None


@dataclass(frozen=True)
class _Token:
    value: str
    #: On the source's clock; refreshed before this point.
    fresh_until: float


@dataclass
class TokenSource:
    """OAuth2 access tokens from google-auth credentials, cached until near expiry.

    google-auth refreshes with blocking I/O (``requests``), so a refresh runs in a worker
    thread. At most one refresh is in flight: it is a shared task that every caller needing a
    token waits on (within its own deadline), so callers that give up never leave a second
    refresh racing the first on the same credentials object.
    """

    credentials: Any
    request_timeout_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    #: Refresh this long before expiry (at most half the token's lifetime).
    margin_s: float = 300.0
    _token: _Token | None = field(default=None, init=False)
    _refreshing: asyncio.Task[_Token] | None = field(default=None, init=False)
    _session: requests.Session = field(default_factory=requests.Session, init=False)

    def __post_init__(self) -> None:
        self._session.trust_env = False  # proxies and CAs come from the settings (use_network)

    def use_network(self, proxies: ProxyRules, ca_bundle: Path | None) -> None:
        """google-auth keeps its own transport (``requests``) for the token endpoint; it
        takes the vendor transport's proxy rules and CA bundle, so both leave the same way."""
        self._session.proxies.update(proxies.as_requests_proxies())
        if ca_bundle is not None:
            self._session.verify = str(ca_bundle)

    @property
    def quota_project(self) -> str | None:
        value = getattr(self.credentials, "quota_project_id", None)
        return value if isinstance(value, str) and value else None

    async def get(self, deadline: Deadline, stale: str | None = None) -> str:
        """A fresh token; ``stale`` is one the vendor refused, which forces a refresh."""
        token = self._token
        if token is not None and token.value != stale and self.clock() < token.fresh_until:
            return token.value
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh())
            self._refreshing.add_done_callback(_retrieve_exception)
        try:
            async with asyncio.timeout(deadline.check(PROVIDER)):
                return (await asyncio.shield(self._refreshing)).value
        except TimeoutError:
            raise UpstreamTimeout(
                "the Google token endpoint did not answer within the deadline",
                provider=PROVIDER,
                reason="timeout",
            ) from None

    async def _refresh(self) -> _Token:
        try:
            value, lifetime = await asyncio.to_thread(self._refresh_blocking)
        except google.auth.exceptions.TransportError:
            raise ProviderUnavailable(
                "could not reach the Google token endpoint",
                provider=PROVIDER,
                reason="connect",
                retryable=True,
            ) from None
        except google.auth.exceptions.RefreshError as exc:
            raise _refresh_refused(exc) from None
        if lifetime is None:
            fresh_until = math.inf  # no expiry given: used until the vendor refuses it (401)
        else:
            fresh_until = self.clock() + lifetime - min(self.margin_s, lifetime / 2)
        self._token = _Token(value, fresh_until)
        return self._token

    def _refresh_blocking(self) -> tuple[str, float | None]:
        request = google.auth.transport.requests.Request(self._session)
        self.credentials.refresh(functools.partial(request, timeout=self.request_timeout_s))
        expiry = self.credentials.expiry
        if expiry is None:
            return str(self.credentials.token), None
        if expiry.tzinfo is None:  # google-auth keeps naive UTC datetimes
            expiry = expiry.replace(tzinfo=UTC)
        return str(self.credentials.token), (expiry - datetime.now(UTC)).total_seconds()

    def close(self) -> None:
        self._session.close()


def _retrieve_exception(task: asyncio.Task[_Token]) -> None:
    """Mark a failed refresh as seen: its callers may all have given up on it."""
    if not task.cancelled():
        task.exception()


def _refresh_refused(exc: google.auth.exceptions.RefreshError) -> GatewayError:
    # RefreshError's first argument is "<error>: <error_description>" from the token endpoint;
    # it carries neither the key nor the signed assertion.
    why = clip(str(exc.args[0])) if exc.args else type(exc).__name__
    if getattr(exc, "retryable", False):
        return ProviderUnavailable(
            f"the Google token endpoint failed: {why}",
            provider=PROVIDER,
            reason="server_error",
            retryable=True,
        )
    return UpstreamError(
        f"the Google token endpoint refused the gateway's Google credentials: {why}",
        provider=PROVIDER,
        reason="client_error",
    )
