"""The request headers that turn a call into a job: ``Prefer`` (RFC 7240) and
``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.errors import FieldError, InvalidRequest

#: Printable ASCII without quotes or backslashes, as an sf-string carries it.
_KEY = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,255}$")


@dataclass(frozen=True)
class Preference:
    respond_async: bool
    #: ``wait=N``: seconds the caller is willing to wait for a synchronous answer.
    wait: float | None

    def applied(self) -> str:
        parts = ["respond-async"] if self.respond_async else []
        if self.wait is not None:
            parts.append(f"wait={self.wait:g}")
        return ", ".join(parts)


def parse_prefer(values: list[str]) -> Preference | None:
    """``respond-async`` and ``wait=N`` from every Prefer header; RFC 7240 §2: unknown or
    malformed preferences are ignored, never an error. None when neither is present."""
    respond_async, wait = False, None
    for value in values:
        for item in value.split(","):
            name, _, arg = item.split(";")[0].strip().partition("=")
            name = name.strip().lower()
            if name == "respond-async":
                respond_async = True
            elif name == "wait" and arg.strip().strip('"').isdigit():
                wait = float(arg.strip().strip('"'))
    if not respond_async and wait is None:
        return None
    return Preference(respond_async, wait)


def parse_idempotency_key(value: str | None) -> str | None:
    """The key as an sf-string (``"abc"``); a bare token is accepted as well."""
    if value is None:
        return None
    key = value.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not _KEY.match(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1..255 printable ASCII characters (a quoted string)",
            errors=[FieldError(("header", "Idempotency-Key"), "not a valid key")],
        )
    return key
