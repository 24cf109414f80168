"""Which provider serves an OpenAI ``model`` name, and the list ``GET /v1/models`` shows.

A name is a model of an enabled provider (``venice-sd35``), the same qualified by its
provider (``venice/venice-sd35``, needed only when two providers list the same id), or a
configured alias (``IMAGE_GATEWAY_OPENAI__MODEL_ALIASES``, e.g. ``gpt-image-1`` -> a model of
the operator's choice). The names come from the same limits tables validation reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from app.api.openai_errors import ModelNotFound, OpenAIParamError
from app.domain import Operation
from app.providers.base import Lifecycle, Provider
from app.settings import PROVIDER_IDS


@dataclass(frozen=True)
class ServedModel:
    model: str
    provider: str
    operations: tuple[Operation, ...]
    lifecycle: Lifecycle = field(default_factory=Lifecycle)


class ModelIndex:
    def __init__(
        self,
        providers: Mapping[str, Provider],
        aliases: Mapping[str, str],
        order: Mapping[Operation, Sequence[str]],
    ) -> None:
        self._providers = providers
        self._aliases = aliases
        self._order = order

    async def refresh(self) -> None:
        """Bring dynamic model lists up to date (cheap while fresh; never raises)."""
        for provider in self._providers.values():
            await provider.refresh_catalog()

    def served(self) -> list[ServedModel]:
        """Every (model, provider) the enabled providers list, in registry order."""
        out = []
        for pid, provider in self._providers.items():
            for row in provider.model_limits():
                ops = tuple(op for op in row.operations if op in provider.operations)
                if ops:
                    out.append(ServedModel(row.model, pid, ops, row.lifecycle))
        return out

    def resolve(self, name: str, operation: Operation) -> tuple[str, str]:
        """(provider, model) for ``name``; 404 when nothing enabled serves it."""
        target = self._aliases.get(name, name)
        found = self._lookup(target)
        able = [m for m in found if operation in m.operations]
        if able:
            return self._preferred(able, operation)
        if found:
            ops = sorted({op.value for m in found for op in m.operations})
            raise OpenAIParamError(
                "model", f"model {name!r} serves {ops}, not {operation.value}", "invalid_value"
            )
        raise ModelNotFound(self._not_found(name, target))

    def listing(self) -> list[tuple[str, ServedModel]]:
        """(id, model) pairs for ``GET /v1/models``: ids qualified only where two providers
        list the same model, then every alias whose target is served."""
        # A discontinued model serves nothing (naming it gets the vendor's replacement).
        served = [m for m in self.served() if m.lifecycle.status != "discontinued"]
        counts: dict[str, int] = {}
        for entry in served:
            counts[entry.model] = counts.get(entry.model, 0) + 1
        out = [(_qualified(e) if counts[e.model] > 1 else e.model, e) for e in served]
        for alias, target in self._aliases.items():
            found = self._lookup(target)
            if found:
                out.append((alias, found[0]))
        return out

    def find(self, name: str) -> tuple[str, ServedModel] | None:
        """The listing entry for ``name``: a listed id, an alias, or a qualified name."""
        listing = self.listing()
        for entry in listing:
            if entry[0] == name:
                return entry
        found = self._lookup(name)
        return (name, found[0]) if found and "/" in name else None

    def _lookup(self, target: str) -> list[ServedModel]:
        """The entries ``target`` names, also through a provider's own model aliases
        (``IMAGE_GATEWAY_VERTEX__MODEL_ALIASES``: old ids the provider maps itself)."""
        provider, _, model = target.partition("/")
        if not (model and provider in self._providers):
            provider, model = "", target
        found = []
        for entry in self.served():
            if provider and entry.provider != provider:
                continue
            own = self._providers[entry.provider].model_aliases.get(model)
            if model == entry.model or own == entry.model:
                found.append(entry if model == entry.model else replace(entry, model=model))
        return found

    def _preferred(self, able: list[ServedModel], operation: Operation) -> tuple[str, str]:
        """The operator's routing order decides between providers listing the same model."""
        order = list(self._order.get(operation, ()))
        able.sort(key=lambda m: order.index(m.provider) if m.provider in order else len(order))
        return able[0].provider, able[0].model

    def _not_found(self, name: str, target: str) -> str:
        provider = target.partition("/")[0]
        if "/" in target and provider in PROVIDER_IDS and provider not in self._providers:
            return f"model {name!r}: provider {provider!r} is not enabled on this gateway"
        if target != name:
            return (
                f"model {name!r} is an alias of {target!r}, which no enabled provider serves; "
                "see GET /v1/models"
            )
        return (
            f"the model {name!r} does not exist or is not served here; GET /v1/models lists "
            "the models, and IMAGE_GATEWAY_OPENAI__MODEL_ALIASES can map a name to one"
        )


def _qualified(entry: ServedModel) -> str:
    return f"{entry.provider}/{entry.model}"
