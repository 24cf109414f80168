"""The layering of DESIGN §4b, checked on the import statements of ``app/``: the web layer
and the providers meet only in the neutral core (``app.domain``) and the providers' public
face (the interface, the registry, the price table), never in a vendor's module; the
providers and the transport never import the web layer."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path("app")
WEB = ("app.api", "app.main", "app.middleware", "app.service", "app.intake", "app.server")
PROVIDERS_PUBLIC = ("app.providers.base", "app.providers.registry", "app.providers.pricing")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "app":  # from app import x
            found.update(f"app.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def module(path: Path) -> str:
    return ".".join(path.with_suffix("").parts).removesuffix(".__init__")


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_web_layer_imports_no_provider_internals() -> None:
    wrong = {
        (module(path), name)
        for path in APP.rglob("*.py")
        if under(module(path), WEB)
        for name in imports(path)
        if under(name, ("app.providers",)) and not under(name, PROVIDERS_PUBLIC)
    }
    assert wrong == set()


def test_providers_and_the_transport_never_import_the_web_layer() -> None:
    wrong = {
        (module(path), name)
        for path in APP.rglob("*.py")
        if under(module(path), ("app.providers", "app.transport", "app.domain"))
        for name in imports(path)
        if under(name, WEB)
    }
    assert wrong == set()


def test_the_domain_imports_nothing_above_it() -> None:
    allowed = ("app.codec", "app.errors", "app.images", "app.schemas")
    names = {n for n in imports(APP / "domain.py") if n.startswith("app")}
    assert names <= set(allowed), names - set(allowed)
