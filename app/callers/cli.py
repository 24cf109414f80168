"""``image-gateway keys create|list|revoke``: manage the key file.

``create`` prints the new secret once, on stdout, and writes only its hash; nothing can
show it again. The file then goes into a Kubernetes secret (``--from-file=keys.json``)
mounted at ``IMAGE_GATEWAY_CALLERS__KEYS_FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from app.callers import store_keys
from app.callers.keys import (
    CallerKey,
    KeyFileError,
    RateLimit,
    digest,
    new_secret,
    now,
    read_key_file,
    write_key_file,
)
from app.settings import StateSettings
from app.state import StateStore, open_store

T = TypeVar("T")


def main(
    argv: list[str], default_file: Path | None = None, state: StateSettings | None = None
) -> int:
    args = _parser(default_file).parse_args(argv)
    if args.store:
        args.keys = StoreKeys(state or StateSettings())
    elif args.file is None:
        print("no key file: give --file or set IMAGE_GATEWAY_CALLERS__KEYS_FILE", file=sys.stderr)
        return 2
    else:
        args.keys = FileKeys(args.file)
    try:
        return int(args.run(args))
    except (KeyFileError, ValidationError, ValueError) as exc:
        print(f"error: {_message(exc)}", file=sys.stderr)
        return 1


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[0]
        return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
    return str(exc)


def _parser(default_file: Path | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="image-gateway keys", description=__doc__)
    parser.add_argument("--file", type=Path, default=default_file, help="the JSON key file")
    parser.add_argument(
        "--store",
        action="store_true",
        help="the state store's keys instead (IMAGE_GATEWAY_STATE__*; the gateway needs "
        "IMAGE_GATEWAY_CALLERS__STORE_KEYS=true)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="add a key and print its secret once")
    create.add_argument("key_id", help="operator-chosen id: a-z, 0-9, '.', '-'")
    create.add_argument("--operations", default="*", help="comma list: upscale,generate or *")
    create.add_argument("--providers", default="*", help="comma list of provider ids, or *")
    create.add_argument("--rate-limit", help="REQUESTS/SECONDS, e.g. 60/60")
    create.add_argument("--daily-usd", type=float, help="budget per UTC day")
    create.add_argument("--monthly-usd", type=float, help="budget per UTC calendar month")
    create.add_argument("--admin", action="store_true", help="may read every key's usage")
    create.set_defaults(run=_create)
    listing = sub.add_parser("list", help="the keys, without secrets or hashes")
    listing.set_defaults(run=_list)
    revoke = sub.add_parser("revoke", help="revoke a key (kept, marked revoked)")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_revoke)
    return parser


class FileKeys:
    def __init__(self, path: Path) -> None:
        self.path = path

    def update(self, change: Callable[[list[CallerKey]], list[CallerKey]]) -> None:
        write_key_file(self.path, change(read_key_file(self.path)))

    def read(self) -> list[CallerKey]:
        return read_key_file(self.path)

    def __str__(self) -> str:
        return str(self.path)


class StoreKeys:
    """The state store's key document, changed with compare-and-set."""

    def __init__(self, state: StateSettings) -> None:
        self.state = state

    def update(self, change: Callable[[list[CallerKey]], list[CallerKey]]) -> None:
        asyncio.run(self._update(change))

    def read(self) -> list[CallerKey]:
        return asyncio.run(self._with_store(store_keys.load))

    async def _update(self, change: Callable[[list[CallerKey]], list[CallerKey]]) -> None:
        async def attempt(store: StateStore) -> bool:
            before = await store_keys.load(store)
            return await store_keys.save(store, change(before), before)

        while not await self._with_store(attempt):
            continue  # another writer changed the document meanwhile: read it again

    async def _with_store(self, action: Callable[[StateStore], Awaitable[T]]) -> T:
        store = open_store(self.state)
        await store.start()
        try:
            return await action(store)
        finally:
            await store.aclose()

    def __str__(self) -> str:
        return "the state store"


def _create(args: argparse.Namespace) -> int:
    secret = new_secret(args.key_id)
    key = _new_key(args, secret)

    def add(keys: list[CallerKey]) -> list[CallerKey]:
        if any(k.id == args.key_id for k in keys):
            raise ValueError(f"key id {args.key_id!r} exists; revoke it or choose another id")
        return [*keys, key]

    args.keys.update(add)
    print(secret)
    print(f"key {key.id!r} written to {args.keys}; the secret above is shown once", file=sys.stderr)
    return 0


def _new_key(args: argparse.Namespace, secret: str) -> CallerKey:
    return CallerKey(
        id=args.key_id,
        hash=digest(secret),
        operations=_split(args.operations),
        providers=_split(args.providers),
        rate_limit=_rate_limit(args.rate_limit),
        budget_daily_usd=args.daily_usd,
        budget_monthly_usd=args.monthly_usd,
        admin=args.admin,
        created=now(),
    )


def _list(args: argparse.Namespace) -> int:
    for key in args.keys.read():
        print(json.dumps(key.public()))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    def revoke(keys: list[CallerKey]) -> list[CallerKey]:
        if not any(k.id == args.key_id for k in keys):
            raise ValueError(f"no key {args.key_id!r} in {args.keys}")
        return [k.model_copy(update={"revoked": True}) if k.id == args.key_id else k for k in keys]

    args.keys.update(revoke)
    print(f"key {args.key_id!r} revoked", file=sys.stderr)
    return 0


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip()) or ("*",)


def _rate_limit(value: str | None) -> RateLimit | None:
    if value is None:
        return None
    requests, _, seconds = value.partition("/")
    try:
        return RateLimit(requests=int(requests), window_s=int(seconds or 60))
    except ValueError:
        raise ValueError(f"--rate-limit {value!r}: give REQUESTS/SECONDS, e.g. 60/60") from None
