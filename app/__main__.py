"""``python -m app`` and the ``image-gateway`` console script: serve from settings."""

from __future__ import annotations

from app.server import serve


def main() -> None:
    serve()


if __name__ == "__main__":
    main()
