"""The examples in docs/deploy.md work: the Kubernetes overlay renders and validates, and
the compose override for Vertex is accepted by docker-compose."""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.deploy.tooling import (
    COMPOSE_FILE,
    KUBERNETES,
    ROOT,
    kustomize_command,
    load_all,
    require_module,
    require_tool,
    run,
)

DOC = ROOT / "docs" / "deploy.md"


def yaml_block(containing: str) -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    matches = [b for b in blocks if containing in b]
    assert len(matches) == 1, f"docs/deploy.md should have one yaml block with {containing!r}"
    return matches[0]


def test_the_overlay_example_renders_with_its_changes(tmp_path: Path) -> None:
    kubernetes_validate = require_module("kubernetes_validate", "the dev extra")
    overlay = tmp_path / "my-overlay"
    overlay.mkdir()
    # kustomize wants a relative path to the base, as the example has it.
    base = os.path.relpath(KUBERNETES / "base", overlay)
    text = yaml_block("behavior: merge").replace("../deploy/kubernetes/base", base)
    (overlay / "kustomization.yaml").write_text(text, encoding="utf-8")
    result = run([*kustomize_command(), str(overlay)])
    assert result.returncode == 0, result.stderr
    objects = load_all(result.stdout)
    for obj in objects:
        assert obj["metadata"].get("namespace") == "image-gateway", obj["kind"]
        if not obj["apiVersion"].startswith("monitoring."):
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/image-gateway:0.1.0"
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
    assert config["IMAGE_GATEWAY_ROUTING__UPSCALE"] == "venice,local"
    assert config["IMAGE_GATEWAY_HOST"] == "0.0.0.0", "merge keeps the base's settings"


def test_the_vertex_override_example_is_accepted_by_compose(tmp_path: Path) -> None:
    tool = require_tool("docker-compose", "apt-get install docker-compose")
    override = tmp_path / "docker-compose.override.yml"
    override.write_text(yaml_block("IMAGE_GATEWAY_VERTEX__CREDENTIALS_FILE"), encoding="utf-8")
    command = [tool, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "-f", str(override)]
    result = run([*command, "config"])
    assert result.returncode == 0, result.stderr
    assert "/run/secrets/vertex-key.json" in result.stdout
    assert "IMAGE_GATEWAY_VENICE__API_KEY" in result.stdout, "the override adds to the gateway"
