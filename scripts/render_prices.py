"""Rewrite the price table in docs/callers.md from the data (``make prices-doc``). A test checks
that the page shows exactly what ``app/providers/*_prices.py`` holds."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from app.providers.pricing import Price, PriceTier
from app.providers.registry import price_table
from app.settings import explicit_settings

ROOT = Path(__file__).resolve().parent.parent
DOC_PATH = ROOT / "docs" / "callers.md"
BEGIN, END = "<!-- prices:begin (scripts/render_prices.py) -->", "<!-- prices:end -->"


def render_table() -> str:
    rows = sorted(price_table(explicit_settings()).rows.values(), key=lambda row: row.key)
    lines = [
        "| provider | model | operation | price (USD) | depends on | source, read on |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_line(row) for row in rows]
    return "\n".join(lines)


def _line(row: Price) -> str:
    unit = "per image" if row.unit == "image" else "per output token"
    prices = _tiers(row, unit)
    flag = "" if row.confirmed else " **UNCONFIRMED**"
    model = "any other" if row.model == "*" else f"`{row.model}`"
    source = f"{row.source}, {row.read_on.isoformat()}{flag}"
    cells = [row.provider, model, row.operation.value, prices, row.depends_on, source]
    return "| " + " | ".join(cells) + " |"


def _tier(tier: PriceTier, unit: str) -> str:
    text = f"${tier.usd:.10f}".rstrip("0").rstrip(".") + f" {unit}"
    if tier.tokens_per_image:
        text += f" ({tier.tokens_per_image} tokens/image)"
    described = tier.describe()
    return text if described == "any" else f"{described}: {text}"


def _tiers(row: Price, unit: str) -> str:
    parts = [_tier(t, unit) for t in row.tiers]
    if len(parts) > 1 and row.tiers[-1].describe() == "any":
        parts[-1] = "otherwise: " + parts[-1]
    return "; ".join(parts)


def rendered_doc(text: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    return pattern.sub(lambda _: f"{BEGIN}\n{render_table()}\n{END}", text)


def main() -> int:
    DOC_PATH.write_text(rendered_doc(DOC_PATH.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote the price table in {DOC_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
