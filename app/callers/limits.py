"""Per-key rate limits, counted in the state store so that every replica enforces one
limit: an epoch-aligned fixed window per key (``Window`` from ``incr_window``), so no more
than ``requests`` are admitted in any window, whichever replica admits them.

The standard headers (draft-ietf-httpapi-ratelimit-headers): ``RateLimit-Policy:
"key";q=<requests>;w=<window>`` and ``RateLimit: "key";r=<remaining>;t=<seconds left>``
on every answer to a limited key; 429 with ``Retry-After`` once the window is spent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from app.callers.keys import CallerKey, RateLimit
from app.errors import RateLimited
from app.state import StateStore

POLICY = "key"


class RateLimiter:
    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def take(self, key: CallerKey, limit: RateLimit) -> list[tuple[str, str]]:
        """Count one request of ``key``; its RateLimit headers, or 429 when over."""
        window = await self.store.incr_window(f"rate:{key.id}", limit.window_s)
        left = max(1, math.ceil(window.resets_at - self.clock()))
        remaining = max(0, limit.requests - window.current)
        headers = [
            ("ratelimit-policy", f'"{POLICY}";q={limit.requests};w={limit.window_s}'),
            ("ratelimit", f'"{POLICY}";r={remaining};t={left}'),
        ]
        if window.current > limit.requests:
            error = RateLimited(
                f"key {key.id!r} may make {limit.requests} requests per {limit.window_s} s; "
                f"the next window starts in {left} s",
                retry_after=left,
                retryable=False,
                reason="caller_rate_limit",
            )
            error.extensions["rate_limit"] = {
                "requests": limit.requests,
                "window_s": limit.window_s,
            }
            error.headers.update(headers)
            raise error
        return headers
