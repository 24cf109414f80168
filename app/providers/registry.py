"""The explicit registry of providers: id -> (module, class).

Modules are imported only when their provider is enabled, so a gateway without Vertex
credentials never imports google-auth's transport stack. Every provider class takes the
whole ``Settings`` and picks its own section.
"""

from __future__ import annotations

import importlib

from app.providers.base import Provider
from app.providers.pricing import PriceTable, read_overrides
from app.settings import Settings

PROVIDERS: dict[str, tuple[str, str]] = {
    "vertex": ("app.providers.vertex", "VertexProvider"),
    "venice": ("app.providers.venice", "VeniceProvider"),
    "deepimage": ("app.providers.deepimage", "DeepImageProvider"),
    "local": ("app.providers.local", "LocalProvider"),
}

#: The setting that enables each provider, for error messages.
ENABLE_HINTS: dict[str, str] = {
    "vertex": "IMAGE_GATEWAY_VERTEX__PROJECT (plus Google Application Default Credentials)",
    "venice": "IMAGE_GATEWAY_VENICE__API_KEY",
    "deepimage": "IMAGE_GATEWAY_DEEPIMAGE__API_KEY",
    "local": "IMAGE_GATEWAY_LOCAL__ENABLED=true",
}


def provider_class(provider_id: str) -> type[Provider]:
    module_name, class_name = PROVIDERS[provider_id]
    cls: type[Provider] = getattr(importlib.import_module(module_name), class_name)
    return cls


def build_providers(settings: Settings) -> dict[str, Provider]:
    """One instance per enabled provider, in registry order."""
    return {pid: provider_class(pid)(settings) for pid in settings.enabled_providers()}


#: Each provider's price rows, beside its limits (``<vendor>_prices.py``).
PRICE_MODULES = tuple(f"app.providers.{pid}_prices" for pid in PROVIDERS)


def price_table(settings: Settings) -> PriceTable:
    """Every provider's prices (enabled or not: docs and dry runs show them all), with
    the operator's overrides from ``IMAGE_GATEWAY_PRICING__FILE``."""
    rows = [row for name in PRICE_MODULES for row in importlib.import_module(name).PRICES]
    return PriceTable(rows, read_overrides(settings.pricing.file))
