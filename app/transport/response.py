"""The one response type every vendor call returns, and the readers providers share."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import UpstreamError


@dataclass(frozen=True, slots=True)
class VendorResponse:
    """A vendor's final answer (1xx skipped), read whole within the size cap.

    ``headers`` is case-insensitive (aiohttp's ``CIMultiDictProxy``); its keys keep the
    vendor's spelling, so compare them lowercased."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def json_or_none(response: VendorResponse) -> Any:
    """The body as JSON, or None when it is not JSON (vendor error bodies vary)."""
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def parse_json(response: VendorResponse, provider: str) -> Any:
    """The body as JSON, or a 502 that says the vendor answered nonsense."""
    try:
        return json.loads(response.content)
    except ValueError:
        raise UpstreamError(
            f"{provider} answered HTTP {response.status_code} with a body that is not JSON",
            provider=provider,
            reason="bad_response",
        ) from None


#: The longest wait a vendor's ``Retry-After`` may ask of a caller; beyond it (``inf``,
#: ``1e400``, ``1e12``) the value is clamped, never passed on or overflowed.
MAX_RETRY_AFTER_S = 3600.0


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (delta form; HTTP-date values are ignored), at most
    ``MAX_RETRY_AFTER_S``."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)
