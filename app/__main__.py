"""``python -m app`` and the ``image-gateway`` console script: serve from settings."""

from __future__ import annotations

import sys

from app.server import serve


def main() -> None:
    if sys.argv[1:2] == ["keys"]:  # image-gateway keys create|list|revoke
        from app.callers.cli import main as keys_main
        from app.settings import Settings

        settings = Settings()
        sys.exit(keys_main(sys.argv[2:], settings.callers.keys_file, settings.state))
    serve()


if __name__ == "__main__":
    main()
