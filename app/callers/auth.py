"""Who is calling: the key in ``Authorization: Bearer`` or ``X-API-Key``, checked against
the key ring; what the key may do; and the ``/metrics`` bearer token.

Keys are off unless a key file is configured (the loopback sidecar needs none). Errors
never echo the presented secret: a mistyped key is still somebody's key.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.datastructures import Headers

from app.callers import store_keys
from app.callers.budgets import Ledger
from app.callers.keys import CallerKey, KeyFileError, KeyRing, read_key_file
from app.callers.limits import RateLimiter
from app.errors import Forbidden, RateLimited, Unauthorized
from app.record import record_of
from app.settings import CallersSettings, Settings, StateSettings
from app.state import StateStore, open_store

log = logging.getLogger("image_gateway")

REALM = 'Bearer realm="image-gateway"'
#: The caller of a gateway without keys (the loopback sidecar).
ANONYMOUS = "anonymous"

#: Declared on the routes for the OpenAPI spec (security schemes); ``admit`` does the work.
BEARER = HTTPBearer(auto_error=False, description="A caller key: `Authorization: Bearer igw_...`")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="A caller key")
BEARER_DEP = Security(BEARER)
API_KEY_DEP = Security(API_KEY)


class Callers:
    """The gateway's caller policy, built once by ``create_app``; with keys on, its state
    store (rate limits, budgets, usage, store keys) opens with the app's lifespan."""

    def __init__(self, settings: CallersSettings, clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._file = settings.keys_file
        self._reload_s = settings.reload_s
        self._clock = clock
        self._metrics_token = settings.metrics_token
        self._mtime = self._stat()
        self._checked = clock()
        self._file_keys = read_key_file(self._file) if self._file else []
        self._store_keys: list[CallerKey] = []
        self.ring = KeyRing(self._file_keys)
        self.store: StateStore | None = None
        self.limiter: RateLimiter | None = None
        self.ledger: Ledger | None = None

    @property
    def enabled(self) -> bool:
        return self._file is not None or self._settings.store_keys

    async def start(self, state: StateSettings) -> None:
        if not self.enabled:
            return
        store = open_store(state)
        await store.start()
        self.store = store
        self.limiter = RateLimiter(store)
        self.ledger = Ledger(store, self._settings.usage_retention_days * 86_400)
        await self._reload_store_keys()

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.aclose()
            self.store = self.limiter = self.ledger = None

    async def admit(self, request: Request, operation: str) -> CallerKey | None:
        """The caller's key, allowed to run ``operation`` (401/403 otherwise) and within
        its rate limit (429); None when keys are off. Idempotent per request: a route
        dependency and the fast lane may both call it."""
        record = record_of(request)
        if record.admitted:
            return record.caller_key
        key = await self.authenticate(request.headers) if self.enabled else None
        record.admitted, record.caller_key = True, key
        record.caller = key.id if key is not None else ANONYMOUS
        if key is None:
            return None
        if not key.may(operation):
            raise Forbidden(f"key {key.id!r} may not {operation}", reason="scope")
        if key.rate_limit is not None and self.limiter is not None:
            try:
                record.response_headers += await self.limiter.take(key, key.rate_limit)
            except RateLimited as exc:  # the headers go on the 429 through the record
                record.response_headers += list(exc.headers.items())
                exc.headers.clear()
                raise
        return key

    async def authenticate(self, headers: Headers) -> CallerKey:
        secret = presented_key(headers)
        if secret is None:
            raise _unauthorized("an API key is required: Authorization: Bearer <key> or X-API-Key")
        await self._maybe_reload()
        key = self.ring.verify(secret)
        if key is None:
            raise _unauthorized("the API key is not valid or has been revoked", invalid=True)
        return key

    def check_metrics(self, headers: Headers) -> None:
        """``/metrics`` with ``IMAGE_GATEWAY_CALLERS__METRICS_TOKEN`` set needs that token."""
        token = self._metrics_token
        if token is None:
            return
        given = _bearer(headers.get("authorization"))
        expected = token.get_secret_value().encode()
        if given is None or not hmac.compare_digest(given.encode(), expected):
            raise _unauthorized("/metrics needs its bearer token", invalid=given is not None)

    async def refresh_gauges(self) -> None:
        """The budgeted keys' spend gauges, from the store (called at each scrape)."""
        if self.ledger is not None:
            await self.ledger.refresh_gauges(list(self.ring.keys.values()))

    # ------------------------------------------------------------------ key file reload

    async def _maybe_reload(self) -> None:
        """A rotated Kubernetes secret changes the mounted file, and ``keys --store``
        changes the store's keys; pick both up, at most once per ``reload_s``."""
        now = self._clock()
        if now - self._checked < self._reload_s:
            return
        self._checked = now
        self._reload_file()
        await self._reload_store_keys()

    def _reload_file(self) -> None:
        """A broken new file keeps the keys in force (and says so)."""
        mtime = self._stat()
        if self._file is None or mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            self._file_keys = read_key_file(self._file)
            self._rebuild()
        except KeyFileError as exc:
            log.error("key file change ignored, the previous keys stay in force: %s", exc)
            return
        log.info("key file reloaded: %d key(s)", len(self.ring))

    async def _reload_store_keys(self) -> None:
        if not self._settings.store_keys or self.store is None:
            return
        try:
            self._store_keys = await store_keys.load(self.store)
            self._rebuild()
        except KeyFileError as exc:
            log.error("store keys ignored, the previous keys stay in force: %s", exc)

    def _rebuild(self) -> None:
        """File keys win over store keys with the same id (the operator's file is final)."""
        in_file = {k.id for k in self._file_keys}
        self.ring = KeyRing(
            [*self._file_keys, *(k for k in self._store_keys if k.id not in in_file)]
        )

    def _stat(self) -> float | None:
        try:
            return Path(self._file).stat().st_mtime if self._file else None
        except OSError:
            return None


def presented_key(headers: Headers) -> str | None:
    given = headers.get("x-api-key")
    if given:
        return given.strip() or None
    return _bearer(headers.get("authorization"))


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(detail: str, invalid: bool = False) -> Unauthorized:
    error = Unauthorized(detail, reason="auth")
    # RFC 6750 §3: the challenge, and error="invalid_token" when a key was given but is bad.
    error.headers["www-authenticate"] = REALM + (', error="invalid_token"' if invalid else "")
    return error


def require(operation: str) -> Callable[..., Awaitable[CallerKey | None]]:
    """A route dependency: the caller's key for ``operation``. It also puts the two
    security schemes in the OpenAPI spec."""

    async def dependency(
        request: Request,
        bearer_scheme: Any = BEARER_DEP,
        api_key_scheme: Any = API_KEY_DEP,
    ) -> CallerKey | None:
        callers: Callers = request.app.state.callers
        return await callers.admit(request, operation)

    return dependency


def caller_key(request: Request) -> CallerKey | None:
    """The key ``admit`` accepted for this request (None: keys are off)."""
    return record_of(request).caller_key


async def admit(request: Request, operation: str) -> CallerKey | None:
    """The same check as ``require``, for code paths that skip FastAPI's dependencies."""
    callers: Callers = request.app.state.callers
    return await callers.admit(request, operation)


_LOOPBACK = ("127.", "::1", "localhost")


def warn_if_open(settings: Settings, callers: Callers) -> None:
    """Anyone who reaches a non-loopback port without keys spends the operator's money."""
    if callers.enabled or settings.host.startswith(_LOOPBACK):
        return
    log.warning(
        "listening on %s without caller keys: anyone who can reach this port can spend "
        "the vendor credits; set IMAGE_GATEWAY_CALLERS__KEYS_FILE (image-gateway keys create)",
        settings.host,
    )
