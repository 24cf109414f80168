"""Webhooks as the Standard Webhooks specification describes them (standardwebhooks.com):
headers ``webhook-id`` (the same on every retry, so receivers can deduplicate),
``webhook-timestamp`` (epoch seconds) and ``webhook-signature`` (``v1,`` + base64 of
HMAC-SHA256 over ``id.timestamp.body`` with the secret; a ``whsec_`` secret is base64).

Destinations are limited by an allowlist of URL prefixes: internal services live on private
addresses, so the list, not a blanket ban of private ranges, is the control. Redirects are
not followed (they could leave the list)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.errors import FieldError, ValidationFailed
from app.jobs import metrics

log = logging.getLogger("image_gateway.jobs")
_PORTS = {"http": 80, "https": 443}


def secret_bytes(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _origin(url: str) -> tuple[str, str, int | None, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or _PORTS.get(scheme)
    return scheme, (parts.hostname or "").lower(), port, parts.path or "/"


def allowed(url: str, allow: list[str]) -> bool:
    """Same scheme, host and port as an allowlist entry, and a path under its path."""
    try:
        scheme, host, port, path = _origin(url)
    except ValueError:
        return False
    if scheme not in _PORTS or not host or urlsplit(url).username is not None:
        return False
    for entry in allow:
        a_scheme, a_host, a_port, a_path = _origin(entry)
        if (scheme, host, port) == (a_scheme, a_host, a_port) and path.startswith(a_path):
            return True
    return False


def check_callback(url: str, allow: list[str], has_secret: bool) -> None:
    """422 at submission for a destination outside the allowlist."""
    loc = ("body", "callback_url")
    if not has_secret:
        raise ValidationFailed(
            "callbacks are not configured (IMAGE_GATEWAY_JOBS__WEBHOOK_SECRET is not set)",
            errors=[FieldError(loc, "callbacks are not configured")],
        )
    if not allowed(url, allow):
        raise ValidationFailed(
            "callback_url is not in the allowed destinations (IMAGE_GATEWAY_JOBS__WEBHOOK_ALLOW)",
            errors=[FieldError(loc, "destination not allowed")],
        )


Record = Callable[[dict[str, Any]], Awaitable[None]]


class Deliverer:
    """POSTs one event, retrying failures with doubling delays for ``retry_for_s``."""

    def __init__(
        self,
        secret: str,
        retry_for_s: float,
        timeout_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.key = secret_bytes(secret)
        self.retry_for_s = retry_for_s
        self.timeout_s = timeout_s
        self.sleep = sleep
        self.first_delay_s = 1.0
        self._client = httpx.AsyncClient(follow_redirects=False, timeout=timeout_s)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def deliver(self, url: str, msg_id: str, event: dict[str, Any], record: Record) -> bool:
        body = json.dumps(event, separators=(",", ":")).encode()
        delay, spent, attempt = self.first_delay_s, 0.0, 0
        while True:
            attempt += 1
            outcome = await self._attempt(url, msg_id, body)
            await record({"attempt": attempt, "at": time.time(), **outcome})
            if outcome.get("ok"):
                metrics.WEBHOOK_DELIVERIES.labels(outcome="delivered").inc()
                return True
            if spent + delay > self.retry_for_s:
                metrics.WEBHOOK_DELIVERIES.labels(outcome="gave_up").inc()
                log.warning("webhook %s: giving up after %d attempt(s)", msg_id, attempt)
                return False
            metrics.WEBHOOK_DELIVERIES.labels(outcome="failed").inc()
            await self.sleep(delay)
            spent, delay = spent + delay, min(delay * 2, 300.0)

    async def _attempt(self, url: str, msg_id: str, body: bytes) -> dict[str, Any]:
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.key, msg_id, timestamp, body),
        }
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return {"ok": False, "error": type(exc).__name__}
        return {"ok": 200 <= response.status_code < 300, "status": response.status_code}
