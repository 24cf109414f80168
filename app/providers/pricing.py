"""Prices as data, and the one function that applies them.

Each provider publishes its price rows in ``<vendor>_prices.py`` beside its limits table:
per model (``*`` = any other model of that provider and operation) and operation, the unit
(an image, or an output token for token-priced models), the tiers the price depends on
(scale factor, image-size tier), where the figure comes from and when it was read, and
whether the vendor itself publishes it (``confirmed``; UNCONFIRMED otherwise). Operators
replace rows with their negotiated prices through ``IMAGE_GATEWAY_PRICING__FILE``.

A cost is computed twice: an estimate from the prepared call (before any money is spent,
for budgets and dry runs) and the actual cost from what the vendor returned (images,
tokens, the scale really applied).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from app.providers.base import Job, Operation, ProviderResult, UpscaleJob, target_size

ANY_MODEL = "*"


class PriceTier(BaseModel):
    """One price within a row, chosen by the facts of the call. The first tier that
    matches wins; a tier with no condition matches everything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    usd: float = Field(ge=0)
    #: Matches when the effective scale factor is at most this.
    max_scale: float | None = None
    #: Matches this image-size tier (e.g. Gemini ``imageSize`` "1K").
    image_size: str | None = None
    #: For token-priced models: output tokens one image of this tier costs (the estimate).
    tokens_per_image: int | None = Field(default=None, ge=0)

    def matches(self, facts: CallFacts) -> bool:
        if self.max_scale is not None and (facts.scale is None or facts.scale > self.max_scale):
            return False
        return self.image_size is None or self.image_size == (facts.image_size or "1K")

    def describe(self) -> str:
        parts = []
        if self.max_scale is not None:
            parts.append(f"scale <= {self.max_scale:g}")
        if self.image_size is not None:
            parts.append(f"imageSize {self.image_size}")
        return " and ".join(parts) or "any"


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    model: str
    operation: Operation
    unit: Literal["image", "output_token"] = "image"
    tiers: tuple[PriceTier, ...] = Field(min_length=1)
    #: What the price depends on, in words (docs and ``/v1/providers``).
    depends_on: str = "the number of images returned"
    source: str
    read_on: date
    #: The vendor publishes this figure; False is shown as UNCONFIRMED.
    confirmed: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.model, self.operation.value)

    def tier(self, facts: CallFacts) -> PriceTier:
        for tier in self.tiers:
            if tier.matches(facts):
                return tier
        return self.tiers[-1]


@dataclass(frozen=True)
class CallFacts:
    """What a price can depend on. Before the call: what was asked; after: what the vendor
    reported (``images`` returned, ``output_tokens``, the ``scale`` really applied)."""

    images: int = 1
    scale: float | None = None
    image_size: str | None = None
    output_tokens: int | None = None


@dataclass(frozen=True)
class Cost:
    usd: float
    basis: str

    def as_dict(self) -> dict[str, object]:
        return {"usd": self.usd, "basis": self.basis}


class PriceTable:
    """Every provider's rows, with the operator's overrides applied."""

    def __init__(self, rows: Iterable[Price], overrides: Iterable[Price] = ()) -> None:
        self.rows: dict[tuple[str, str, str], Price] = {row.key: row for row in rows}
        for row in overrides:
            self.rows[row.key] = row

    def find(self, provider: str, model: str, operation: str) -> Price | None:
        return self.rows.get((provider, model, operation)) or self.rows.get(
            (provider, ANY_MODEL, operation)
        )

    def cost(self, provider: str, model: str, operation: str, facts: CallFacts) -> Cost:
        row = self.find(provider, model, operation)
        if row is None:
            return Cost(0.0, f"{provider}/{model}: no price in the table (counted as $0)")
        return apply(row, facts)

    def for_provider(self, provider: str) -> list[Price]:
        return [row for row in self.rows.values() if row.provider == provider]


def apply(row: Price, facts: CallFacts) -> Cost:
    tier = row.tier(facts)
    flag = "" if row.confirmed else ", UNCONFIRMED"
    where = f"{row.provider}/{row.model} {row.operation.value}"
    if tier.image_size or tier.max_scale is not None:
        where += f", {tier.describe()}"
    if row.unit == "image":
        usd = tier.usd * facts.images
        return Cost(_round(usd), f"{facts.images} image(s) x ${tier.usd:g} ({where}{flag})")
    if facts.output_tokens is not None:
        tokens, how = facts.output_tokens, "reported"
    else:
        tokens, how = (tier.tokens_per_image or 0) * facts.images, "estimated"
    usd = tokens * tier.usd
    return Cost(_round(usd), f"{tokens} output tokens ({how}) x ${tier.usd:g} ({where}{flag})")


def _round(usd: float) -> float:
    return round(usd, 6)


_ROWS = TypeAdapter(list[Price])


def read_overrides(path: Path | None) -> list[Price]:
    """The operator's price file: a JSON list of rows; fails start-up when invalid."""
    if path is None:
        return []
    try:
        return _ROWS.validate_json(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read price file {path}: {exc.strerror}") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        loc = ".".join(map(str, first["loc"]))
        raise ValueError(f"price file {path} is not valid: {loc}: {first['msg']}") from None


def table_json(table: PriceTable) -> str:
    """The table as JSON (docs, tests)."""
    return json.dumps([row.model_dump(mode="json") for row in table.rows.values()], indent=1)


def estimate_facts(job: Job) -> CallFacts:
    """What was asked: n images (or one upscale) at the requested scale and size tier."""
    if isinstance(job, UpscaleJob):
        _, _, scale = target_size(job.params, job.image.info)
        return CallFacts(images=1, scale=scale)
    return CallFacts(images=job.params.n, image_size=_image_size(job.params.options))


def actual_facts(job: Job, result: ProviderResult) -> CallFacts:
    """What the vendor returned: the images, the tokens it reported, the scale it applied."""
    images = len(result.images)
    tokens = result.usage.image_output_tokens if result.usage else None
    if isinstance(job, UpscaleJob):
        first = result.images[0] if result.images else None
        scale = first.width / job.image.info.width if first and first.width else None
        return CallFacts(images=images, scale=scale or estimate_facts(job).scale)
    size = _image_size(job.params.options)
    return CallFacts(images=images, image_size=size, output_tokens=tokens)


def _image_size(options: Mapping[Any, Any] | None) -> str | None:
    """Gemini's ``imageSize`` tier when the caller chose one (``options.vertex``)."""
    vertex = (options or {}).get("vertex")
    size = vertex.get("imageSize") if isinstance(vertex, Mapping) else None
    return size if isinstance(size, str) else None
