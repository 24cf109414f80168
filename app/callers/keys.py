"""Caller keys: what a key may do, how its secret is checked, and the key file.

A secret is ``igw_<key id>_<43 random url-safe characters>`` (256 bits from ``secrets``).
Only ``sha256:<hex>`` of it is ever stored: the secret is high-entropy, so a slow password
hash would add latency to every request and no protection. The id inside the secret finds
the record; ``hmac.compare_digest`` compares the digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.settings import PROVIDER_IDS

PREFIX = "igw_"
KEY_ID_PATTERN = r"^[a-z0-9][a-z0-9.-]{0,62}$"
KeyId = Annotated[str, Field(pattern=KEY_ID_PATTERN)]
ANY = "*"
OPERATIONS = ("upscale", "generate")


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int = Field(ge=1)
    window_s: int = Field(default=60, ge=1, le=86_400)


class CallerKey(BaseModel):
    """One key as the key file (or the state store) holds it: never the secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: KeyId
    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    operations: tuple[str, ...] = (ANY,)
    providers: tuple[str, ...] = (ANY,)
    rate_limit: RateLimit | None = None
    budget_daily_usd: float | None = Field(default=None, ge=0)
    budget_monthly_usd: float | None = Field(default=None, ge=0)
    #: May read every key's usage (``GET /v1/usage``) and every job.
    admin: bool = False
    revoked: bool = False
    created: datetime | None = None

    @field_validator("operations")
    @classmethod
    def _known_operations(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _only(value, OPERATIONS, "operation")

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _only(value, PROVIDER_IDS, "provider")

    def may(self, operation: str) -> bool:
        return ANY in self.operations or operation in self.operations

    def may_use(self, provider: str) -> bool:
        return ANY in self.providers or provider in self.providers

    def public(self) -> dict[str, Any]:
        """What ``keys list`` and the API may show: everything but the hash."""
        return self.model_dump(mode="json", exclude={"hash"})


def _only(value: tuple[str, ...], known: tuple[str, ...], what: str) -> tuple[str, ...]:
    unknown = [v for v in value if v != ANY and v not in known]
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {[ANY, *known]}")
    return value


class KeyFileError(ValueError):
    """The key file cannot be read or does not hold valid keys (fails start-up)."""


def new_secret(key_id: str) -> str:
    return f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def digest(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def key_id_of(secret: str) -> str | None:
    """The key id a well-formed secret names (ids contain no ``_``), else None."""
    if not secret.startswith(PREFIX):
        return None
    key_id, sep, rest = secret[len(PREFIX) :].partition("_")
    return key_id if sep and key_id and rest else None


class KeyRing:
    """The keys in force, by id."""

    def __init__(self, keys: Iterable[CallerKey] = ()) -> None:
        self.keys: dict[str, CallerKey] = {}
        for key in keys:
            if key.id in self.keys:
                raise KeyFileError(f"key id {key.id!r} appears twice")
            self.keys[key.id] = key

    def __len__(self) -> int:
        return len(self.keys)

    def verify(self, secret: str) -> CallerKey | None:
        """The live key whose secret this is, or None (unknown, wrong or revoked)."""
        key_id = key_id_of(secret)
        key = self.keys.get(key_id) if key_id else None
        if key is None:
            # Same work for an unknown id as for a known one: no timing hint of which ids exist.
            hmac.compare_digest(digest(secret), "sha256:" + "0" * 64)
            return None
        if not hmac.compare_digest(digest(secret), key.hash):
            return None
        return None if key.revoked else key


# --------------------------------------------------------------------------- the key file


def read_key_file(path: Path) -> list[CallerKey]:
    """``{"keys": [...]}``; a missing file is no keys (``keys create`` starts one)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw) if raw.strip() else {"keys": []}
        entries = doc["keys"]
        return [CallerKey.model_validate(entry) for entry in entries]
    except (ValueError, KeyError, TypeError) as exc:
        reason = _short(exc)
        raise KeyFileError(f"key file {path} is not valid: {reason}") from None


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[0]
        return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
    return f"{type(exc).__name__}: {exc}"


def write_key_file(path: Path, keys: Iterable[CallerKey]) -> None:
    """Atomically, readable by its owner only (it holds hashes, which still deserve care)."""
    doc = {"keys": [k.model_dump(mode="json", exclude_none=True) for k in keys]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
