"""Model names on the OpenAI routes: plain, qualified, aliased; the operator's routing order
decides between providers that list the same model; the list qualifies only duplicates."""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar

import pytest

from app.api.openai_errors import ModelNotFound, OpenAIParamError
from app.api.openai_models import ModelIndex
from app.domain import Operation, PreparedCall, ProviderResult
from app.providers.base import Lifecycle, ModelLimits, Provider
from tests.conftest import make_settings


class Listed(Provider):
    """A provider that only lists models (the index never calls anything else)."""

    operations: ClassVar[frozenset[Operation]] = frozenset(Operation)

    def __init__(self, pid: str, models: dict[str, tuple[Operation, ...]], **life: Any) -> None:
        super().__init__(make_settings(venice={"model_aliases": {"fluently-xl": "shared-xl"}}))
        self.id = pid  # type: ignore[misc]
        self._rows = [
            ModelLimits(model=m, operations=ops, lifecycle=life.get(m, Lifecycle()))
            for m, ops in models.items()
        ]

    def default_model(self, operation: Operation) -> str:
        return self._rows[0].model

    def model_limits(self) -> list[ModelLimits]:
        return self._rows

    def prepare(self, job: Any) -> PreparedCall:
        raise AssertionError("not called")

    async def execute(self, call: PreparedCall, ctx: Any) -> ProviderResult:
        raise AssertionError("not called")


GEN, UP = (Operation.GENERATE,), (Operation.UPSCALE,)


def index(order: list[str], aliases: dict[str, str] | None = None) -> ModelIndex:
    providers = {
        "venice": Listed("venice", {"shared-xl": GEN, "upscaler": UP}),
        "deepimage": Listed("deepimage", {"shared-xl": GEN, "text2image": GEN}),
    }
    routing = {Operation.GENERATE: order, Operation.UPSCALE: order}
    return ModelIndex(providers, aliases or {}, routing)


def test_the_routing_order_decides_between_providers_listing_one_model() -> None:
    assert index(["deepimage", "venice"]).resolve("shared-xl", Operation.GENERATE) == (
        "deepimage",
        "shared-xl",
    )
    assert index(["venice", "deepimage"]).resolve("shared-xl", Operation.GENERATE) == (
        "venice",
        "shared-xl",
    )


def test_a_qualified_name_or_an_alias_picks_one_provider() -> None:
    models = index(["venice"], {"gpt-image-1": "deepimage/shared-xl"})
    assert models.resolve("deepimage/shared-xl", Operation.GENERATE) == ("deepimage", "shared-xl")
    assert models.resolve("gpt-image-1", Operation.GENERATE) == ("deepimage", "shared-xl")


def test_the_listing_qualifies_only_duplicates_and_adds_served_aliases() -> None:
    models = index(["venice"], {"gpt-image-1": "text2image", "dall-e-3": "vertex/imagen"})
    ids = [(name, entry.provider) for name, entry in models.listing()]
    assert ids == [
        ("venice/shared-xl", "venice"),
        ("upscaler", "venice"),
        ("deepimage/shared-xl", "deepimage"),
        ("text2image", "deepimage"),
        ("gpt-image-1", "deepimage"),
    ]


def test_wrong_operation_is_400_and_unknown_is_404() -> None:
    models = index(["venice"])
    with pytest.raises(OpenAIParamError, match="serves \\['upscale'\\], not generate"):
        models.resolve("upscaler", Operation.GENERATE)
    with pytest.raises(ModelNotFound, match="'dall-e-2' does not exist"):
        models.resolve("dall-e-2", Operation.GENERATE)
    with pytest.raises(ModelNotFound, match="'vertex' is not enabled"):
        models.resolve("vertex/imagen", Operation.GENERATE)


def test_discontinued_models_are_not_listed_but_still_resolve_to_their_refusal() -> None:
    gone = Lifecycle(status="discontinued", sunset=date(2025, 9, 24), replacement="new-xl")
    providers = {"venice": Listed("venice", {"old-xl": GEN, "new-xl": GEN}, **{"old-xl": gone})}
    models = ModelIndex(providers, {}, {Operation.GENERATE: ["venice"]})
    assert [name for name, _ in models.listing()] == ["new-xl"]
    # The provider refuses it (model_discontinued, naming new-xl): rendered as a 404.
    assert models.resolve("old-xl", Operation.GENERATE) == ("venice", "old-xl")


def test_a_providers_own_model_alias_resolves_to_that_provider() -> None:
    # IMAGE_GATEWAY_VENICE__MODEL_ALIASES maps an old id; the provider says so in a warning.
    assert index(["deepimage", "venice"]).resolve("fluently-xl", Operation.GENERATE) == (
        "venice",
        "fluently-xl",
    )
