"""The fast lane: a POST to one of its paths goes straight to the handler, past FastAPI's
router, dependency solving and exception middleware (~30% of the gateway's CPU per
request, docs/performance.md). The same handlers stay registered as ordinary FastAPI
routes, for the OpenAPI spec and for every other method (405 with ``Allow``).

What that means for a route the lane serves (``tests/test_fast_lane.py`` enforces it):

- FastAPI never runs the route's dependencies for lane traffic. The handler does its own
  checks: ``auth.admit(request, operation)``. The route may declare ``auth.require`` (it
  puts the security schemes in the spec and runs the same idempotent check); any other
  ``Depends`` on such a route is refused by the test, because lane traffic would skip it.
- Errors raised by the handler leave through the one problem+json renderer
  (``app.main.problem_response``), as on every other route.

To add a route to the lane, add its path and handler where ``create_app`` builds the lane;
to take one out, remove it there: FastAPI then serves it like any other route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

Endpoint = Callable[[Request], Awaitable[Response]]

#: The one dependency a lane route may declare: ``app.callers.auth.require(...)``, which
#: the handler repeats with ``auth.admit`` (idempotent per request).
_HANDLER_REPEATS = frozenset({"require.<locals>.dependency"})


class FastLane:
    def __init__(self, routes: Mapping[str, Endpoint]) -> None:
        self.routes = dict(routes)

    def endpoint_for(self, scope: Scope) -> Endpoint | None:
        return self.routes.get(scope["path"]) if scope["method"] == "POST" else None

    def problems(self, app: FastAPI) -> list[str]:
        """Why a lane path would not behave as its FastAPI route does (empty: it would)."""
        found = []
        for path, handler in self.routes.items():
            route = _post_route(app, path)
            if route is None:
                found.append(f"{path}: no POST route (the spec would not show it)")
                continue
            if route.endpoint is not handler:
                found.append(f"{path}: the route's handler is not the lane's")
            for dependency in route.dependant.dependencies:
                name = getattr(dependency.call, "__qualname__", repr(dependency.call))
                if name not in _HANDLER_REPEATS:
                    found.append(f"{path}: dependency {name} would not run in the fast lane")
        return found


def flat_routes(routes: Iterable[Any]) -> Iterator[Route]:
    """Routes, with those of included routers (FastAPI keeps each router as one entry;
    the gateway includes them without a prefix)."""
    for route in routes:
        if isinstance(route, Route):
            yield route
        elif hasattr(route, "original_router"):
            yield from flat_routes(route.original_router.routes)


def _post_route(app: FastAPI, path: str) -> APIRoute | None:
    for route in flat_routes(app.routes):
        if isinstance(route, APIRoute) and route.path == path and "POST" in (route.methods or ()):
            return route
    return None
