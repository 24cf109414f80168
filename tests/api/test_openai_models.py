"""Model names on the OpenAI routes: plain, qualified, aliased; the operator's routing order
decides between providers that list the same model; the list qualifies only duplicates."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from app.api.openai_errors import ModelNotFound, OpenAIParamError
from app.api.openai_models import ModelIndex
from app.providers.base import ModelLimits, Operation, PreparedCall, Provider, ProviderResult
from tests.conftest import make_settings


class Listed(Provider):
    """A provider that only lists models (the index never calls anything else)."""

    operations: ClassVar[frozenset[Operation]] = frozenset(Operation)

    def __init__(self, pid: str, models: dict[str, tuple[Operation, ...]]) -> None:
        super().__init__(make_settings())
        self.id = pid  # type: ignore[misc]
        self._rows = [ModelLimits(model=m, operations=ops) for m, ops in models.items()]

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
