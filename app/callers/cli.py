"""``image-gateway keys create|list|revoke``: manage the key file.

``create`` prints the new secret once, on stdout, and writes only its hash; nothing can
show it again. The file then goes into a Kubernetes secret (``--from-file=keys.json``)
mounted at ``IMAGE_GATEWAY_CALLERS__KEYS_FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

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


def main(argv: list[str], default_file: Path | None = None) -> int:
    args = _parser(default_file).parse_args(argv)
    if args.file is None:
        print("no key file: give --file or set IMAGE_GATEWAY_CALLERS__KEYS_FILE", file=sys.stderr)
        return 2
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


def _create(args: argparse.Namespace) -> int:
    keys = read_key_file(args.file)
    if any(k.id == args.key_id for k in keys):
        raise ValueError(f"key id {args.key_id!r} exists; revoke it or choose another id")
    secret = new_secret(args.key_id)
    key = CallerKey(
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
    write_key_file(args.file, [*keys, key])
    print(secret)
    print(f"key {key.id!r} written to {args.file}; the secret above is shown once", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    for key in read_key_file(args.file):
        print(json.dumps(key.public()))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    keys = read_key_file(args.file)
    if not any(k.id == args.key_id for k in keys):
        raise ValueError(f"no key {args.key_id!r} in {args.file}")
    kept = [k.model_copy(update={"revoked": True}) if k.id == args.key_id else k for k in keys]
    write_key_file(args.file, kept)
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
