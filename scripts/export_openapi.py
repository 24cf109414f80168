"""Write openapi/openapi.json from the app (``make openapi``). A test checks that the file
matches the app byte for byte, so the committed spec never drifts from the code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "openapi" / "openapi.json"


def render_spec() -> str:
    from app.main import create_app
    from app.settings import explicit_settings

    # Defaults only: the spec must not depend on whoever runs the export.
    app = create_app(explicit_settings())
    return json.dumps(app.openapi(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main() -> int:
    SPEC_PATH.parent.mkdir(exist_ok=True)
    SPEC_PATH.write_text(render_spec(), encoding="utf-8")
    print(f"wrote {SPEC_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
