"""Venice.ai prices as data (beside ``venice_limits.py``; applied by ``pricing.py``)."""

from __future__ import annotations

from datetime import date

from app.providers.base import Operation
from app.providers.pricing import ANY_MODEL, Price, PriceTier
from app.providers.venice_limits import UPSCALE_MODEL

READ = date(2026, 11, 30)

PRICES: tuple[Price, ...] = (
    # vendors.md §2.2b: "$0.02 when the effective scale is <= 2 and $0.08 when it is above 2"
    # (VEN-SK, Venice's own skills repository). The effective scale is the one Venice
    # applied: a scale of 4 lowered to fit 16,777,216 px is billed at what it became.
    Price(
        provider="venice",
        model=UPSCALE_MODEL,
        operation=Operation.UPSCALE,
        tiers=(PriceTier(usd=0.02, max_scale=2.0), PriceTier(usd=0.08)),
        depends_on="the effective scale factor (<= 2 or above)",
        source="vendors.md §2.2b (VEN-SK)",
        read_on=READ,
        confirmed=True,
    ),
    # Venice lists a per-model generation price in GET /models (model_spec.pricing,
    # vendors.md §2.5); no stored source gives the figures, so one flat placeholder.
    Price(
        provider="venice",
        model=ANY_MODEL,
        operation=Operation.GENERATE,
        tiers=(PriceTier(usd=0.01),),
        depends_on="the number of images (variants) returned",
        source="no stored reading; Venice publishes per-model prices in GET /models",
        read_on=READ,
    ),
)
