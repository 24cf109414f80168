"""docs/callers.md shows exactly the price table the code holds."""

from __future__ import annotations

from scripts.render_prices import DOC_PATH, rendered_doc


def test_the_price_table_in_the_docs_is_the_data() -> None:
    text = DOC_PATH.read_text(encoding="utf-8")
    assert "| venice | `upscaler` | upscale |" in text
    assert text == rendered_doc(text), "run `make prices-doc`"
