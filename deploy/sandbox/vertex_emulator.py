"""The Vertex AI emulator for the compose sandbox, plus the service-account key it trusts.

``python -m tests.emulators.vertex --key-file F`` writes a key whose ``token_uri`` is the
address the emulator binds (0.0.0.0 in a container), which the gateway cannot call, and
google-auth signs its token request for exactly that ``aud``. Here the key names the
address the gateway reaches the emulator on (``--public-url``, e.g. ``http://vertex:9101``),
is written before the server listens (the gateway starts once the port answers), and the
emulator trusts it because the same process registers it.

Run: ``python deploy/sandbox/vertex_emulator.py --port 9101 --public-url http://vertex:9101
--key-file /var/lib/image-gateway-sandbox/vertex-key.json``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import uvicorn

# The repository root (the image's working directory), so that ``tests.emulators`` imports.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.emulators.common import FaultMiddleware
from tests.emulators.vertex import VertexState, create_app, new_service_account


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--public-url", required=True, help="how the gateway reaches this server")
    parser.add_argument("--key-file", type=Path, required=True, help="where to write the key")
    return parser.parse_args()


def write_key(path: Path, key: dict[str, object]) -> None:
    """Owner-readable only, written whole (a reader never sees half a key)."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(key, indent=2), encoding="utf-8")
    os.chmod(partial, 0o600)
    partial.replace(path)


def main() -> None:
    args = parse_args()
    state = VertexState()
    key = new_service_account(state, f"{args.public_url.rstrip('/')}/token")
    write_key(args.key_file, key)
    print(f"vertex emulator: service-account key {args.key_file} ({key['client_email']})")
    app = FaultMiddleware(create_app(state), state)

    async def serve() -> None:
        state.stopping = asyncio.Event()
        await uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port)).serve()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
