"""The built-in provider runs on the gateway's own CPU: no vendor bill."""

from __future__ import annotations

from datetime import date

from app.providers.base import Operation
from app.providers.pricing import ANY_MODEL, Price, PriceTier

PRICES: tuple[Price, ...] = (
    Price(
        provider="local",
        model=ANY_MODEL,
        operation=Operation.UPSCALE,
        tiers=(PriceTier(usd=0.0),),
        depends_on="nothing: it runs on the gateway's own CPU",
        source="the gateway itself",
        read_on=date(2026, 11, 30),
        confirmed=True,
    ),
)
