"""Container HEALTHCHECK: exit 0 when GET /healthz answers 200, 1 otherwise.

Standard library only (the image has no curl). It asks the loopback address on the port the
gateway listens on, so it also works when the gateway binds 127.0.0.1 (the sidecar setup).
Usage: python3 healthcheck.py [path]   (path defaults to /healthz; /readyz checks readiness)
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
    port = os.environ.get("IMAGE_GATEWAY_PORT", "8080")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return 0 if answer.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck {path}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
