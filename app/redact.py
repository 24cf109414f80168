"""The one redactor: vendor text made safe to show in an error detail or a warning.

Secrets (API keys, access tokens) are masked first, then every URL (a result location
can be a presigned link), and only then is the text clipped, so a clip can never leave
part of a secret behind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S*")
#: Vendor messages are long at times (stack traces, echoed prompts); details stay short.
DEFAULT_LIMIT = 300


def redact(text: str, secrets: Iterable[str | None] = (), limit: int = DEFAULT_LIMIT) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return clip(_URL.sub("<url>", text), limit)


def clip(text: str, limit: int = DEFAULT_LIMIT) -> str:
    """At most ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit] + "…"
