"""The fast lane serves a route exactly as FastAPI would: same handler, and no dependency
that lane traffic would skip. Adding a ``Depends`` to a lane route fails here."""

from __future__ import annotations

from app.fast_lane import flat_routes
from app.main import create_app
from app.settings import explicit_settings


def test_every_lane_path_is_a_route_with_no_dependency_the_lane_would_skip() -> None:
    app = create_app(explicit_settings())
    lane = app.state.fast_lane
    assert "/v1/upscale" in lane.routes and "/v1/images/generations" in lane.routes
    assert lane.problems(app) == []


def test_a_dependency_added_to_a_lane_route_is_caught() -> None:
    app = create_app(explicit_settings())
    lane = app.state.fast_lane

    def rate_limit() -> None:  # what an engineer might add to /v1/generate
        return None

    route = next(r for r in flat_routes(app.routes) if r.path == "/v1/generate")
    route.dependant.dependencies.append(_dep(rate_limit))  # type: ignore[attr-defined]
    problems = lane.problems(app)
    assert problems == [
        "/v1/generate: dependency test_a_dependency_added_to_a_lane_route_is_caught."
        "<locals>.rate_limit would not run in the fast lane"
    ]


def _dep(call: object) -> object:
    from fastapi.dependencies.utils import get_dependant

    return get_dependant(path="/v1/generate", call=call)  # type: ignore[arg-type]
