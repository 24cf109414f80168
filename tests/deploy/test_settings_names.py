"""Every IMAGE_GATEWAY_* variable that the deployment files name is a real setting.

A misspelt variable is silently ignored by pydantic-settings (``extra="ignore"``), so a
typo in a manifest would leave the gateway on a default that nobody chose. The names are
resolved against ``app.settings.Settings`` the way pydantic-settings does: the prefix, then
``__`` between nested models, ending on a field that is not itself a model. The values are
then loaded through Settings too, so a wrong value (an unknown provider id, a negative
timeout) fails here instead of at a pod's start.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from app.settings import Settings
from tests.deploy.tooling import (
    COMPOSE_FILE,
    ROOT,
    gateway_containers,
    kustomizations,
    pod_specs,
    render,
)

PREFIX = "IMAGE_GATEWAY_"
NAME = re.compile(r"\bIMAGE_GATEWAY_[A-Z0-9_]*[A-Z0-9]")

#: The files that deploy the gateway, and the deploy guide that tells people what to set.
SCANNED = [
    ROOT / "Dockerfile",
    COMPOSE_FILE,
    ROOT / "docs" / "deploy.md",
    *sorted((ROOT / "deploy" / "kubernetes").rglob("*.yaml")),
    *sorted((ROOT / "deploy" / "kubernetes").rglob("*.env")),
    *sorted((ROOT / "deploy" / "compose").rglob("*")),
    *sorted((ROOT / "deploy" / "sandbox").rglob("*.py")),
    *sorted((ROOT / "deploy" / "docker").rglob("*.py")),
]


def setting_for(variable: str, model: type[BaseModel] = Settings) -> str | None:
    """The dotted setting a variable sets (``venice.api_key``), or None if it sets nothing."""
    if not variable.startswith(PREFIX):
        return None
    head, *rest = variable[len(PREFIX) :].lower().split("__")
    field = model.model_fields.get(head)
    if field is None:
        return None
    annotation = field.annotation
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    if not rest:
        return None if is_model else head
    if not is_model:
        return None
    assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
    nested = setting_for(PREFIX + "__".join(rest).upper(), annotation)
    return f"{head}.{nested}" if nested else None


def named_variables() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in SCANNED:
        if path.is_file():
            for name in NAME.findall(path.read_text(encoding="utf-8")):
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("IMAGE_GATEWAY_PORT", "port"),
        ("IMAGE_GATEWAY_VENICE__API_KEY_FILE", "venice.api_key_file"),
        ("IMAGE_GATEWAY_ROUTING__UPSCALE", "routing.upscale"),
        ("IMAGE_GATEWAY_VENICE__APIKEY", None),  # misspelt leaf
        ("IMAGE_GATEWAY_VENICE_API_KEY", None),  # one underscore instead of the delimiter
        ("IMAGE_GATEWAY_REQUEST_TIMEOUT", None),  # the unit suffix forgotten
        ("IMAGE_GATEWAY_VERTEX", None),  # a whole section, not a setting
        ("IMAGE_GATEWAY_PORT__X", None),  # nesting under a plain field
    ],
)
def test_the_checker_tells_settings_from_typos(variable: str, setting: str | None) -> None:
    assert setting_for(variable) == setting


def test_the_deployment_files_name_variables() -> None:
    found = named_variables()
    assert "IMAGE_GATEWAY_HOST" in found
    assert any("kubernetes" in f for f in found["IMAGE_GATEWAY_SHUTDOWN_GRACE_S"])
    assert "docker-compose.yml" in found["IMAGE_GATEWAY_VENICE__API_KEY"]


def test_every_variable_named_is_a_setting() -> None:
    unknown = {n: sorted(f) for n, f in named_variables().items() if setting_for(n) is None}
    assert not unknown, f"not settings in app/settings.py: {unknown}"


# ---- the values load ------------------------------------------------------------------


def compose_environments() -> dict[str, dict[str, str]]:
    """Each compose service's environment, with ``${VAR:-default}`` resolved to its default."""
    services = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    default = re.compile(r"\$\{[A-Z0-9_]+:-([^}]*)\}")
    return {
        f"compose:{name}": {
            k: default.sub(r"\1", str(v)) for k, v in service["environment"].items()
        }
        for name, service in services.items()
        if isinstance(service.get("environment"), dict)
    }


def kubernetes_environments() -> dict[str, dict[str, str]]:
    """Each gateway container's environment: its ConfigMaps plus literal ``env`` values."""
    found: dict[str, dict[str, str]] = {}
    for directory in kustomizations():
        objects = render(directory)
        maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
        for name, spec in pod_specs(objects):
            for container in gateway_containers(spec):
                env = {}
                for source in container.get("envFrom", []):
                    env.update(maps[source["configMapRef"]["name"]])
                env.update(
                    {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
                )
                found[f"{directory.name}:{name}/{container['name']}"] = env
    return found


def load_settings(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings from exactly ``env``; secret files it names are stood in for by temp files."""
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.endswith("_FILE") and value:
            stand_in = tmp_path / Path(value).name
            stand_in.write_text("stand-in-secret", encoding="utf-8")
            value = str(stand_in)
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def test_the_compose_environments_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    environments = compose_environments()
    assert {"compose:gateway", "compose:gateway-sandbox"} <= set(environments)
    sandbox = load_settings(environments["compose:gateway-sandbox"], tmp_path, monkeypatch)
    assert sandbox.enabled_providers() == ["vertex", "venice", "deepimage", "local"]
    plain = load_settings(environments["compose:gateway"], tmp_path, monkeypatch)
    assert plain.enabled_providers() == ["local"]  # no keys in the environment


def test_the_kubernetes_environments_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    environments = kubernetes_environments()
    assert len(environments) == 2, environments.keys()
    for where, env in environments.items():
        settings = load_settings(env, tmp_path, monkeypatch)
        assert settings.host == "0.0.0.0", where
        assert settings.port == 8080, where


def test_configmaps_carry_no_secrets() -> None:
    """Keys go in Secrets; a ConfigMap may name a secret *file*, never hold a secret value."""
    secret_like = re.compile(r"(API_KEY|PRIVATE_KEY|PASSWORD|TOKEN|SECRET)$")
    for directory in kustomizations():
        for obj in render(directory):
            if obj["kind"] == "ConfigMap":
                leaks = [k for k in obj.get("data", {}) if secret_like.search(k)]
                assert not leaks, f"{directory.name}: {leaks} belong in a Secret"
