"""Deep-Image.ai prices as data (beside ``deepimage_limits.py``; applied by ``pricing.py``).

Deep-Image bills in credits: "one transformation costs 1 credit" (vendors-2026.md §6, FAQ).
What a credit costs in USD depends on the plan and is in no stored source, and credit
costs of the generative features are UNCONFIRMED (vendors.md §3).
"""

from __future__ import annotations

from datetime import date

from app.providers.base import Operation
from app.providers.pricing import ANY_MODEL, Price, PriceTier

READ = date(2026, 11, 30)
_SOURCE = "1 credit per transformation (vendors-2026.md §6); USD per credit: placeholder"

PRICES: tuple[Price, ...] = tuple(
    Price(
        provider="deepimage",
        model=ANY_MODEL,
        operation=operation,
        tiers=(PriceTier(usd=0.08),),
        depends_on="one credit per image returned; USD per credit depends on the plan",
        source=_SOURCE,
        read_on=READ,
    )
    for operation in (Operation.UPSCALE, Operation.GENERATE)
)
