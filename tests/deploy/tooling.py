"""Shared helpers for the deployment checks: the repository's files, and the external tools
they need (a tool that is missing skips its test on a developer's machine, but fails it in
CI, where ``CI=true`` and ``make test`` has installed everything)."""

from __future__ import annotations

import copy
import functools
import importlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
COMPOSE_FILE = ROOT / "docker-compose.yml"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str, how_to_get: str) -> str:
    """The tool's path; skips (or fails in CI) with the reason when it is not installed."""
    venv_bin = Path(sys.executable).parent / name
    path = str(venv_bin) if venv_bin.exists() else shutil.which(name)
    if path is None:
        reason = f"{name} is not installed ({how_to_get})"
        if in_ci():
            pytest.fail(f"{reason}; CI must have it")
        pytest.skip(reason)
    return path


def require_module(name: str, how_to_get: str) -> Any:
    """The imported module; skips (or fails in CI) when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        reason = f"{name} is not installed ({how_to_get})"
        if in_ci():
            pytest.fail(f"{reason}; CI must have it")
        pytest.skip(reason)


def run(
    command: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def manifest_files() -> list[Path]:
    """Every Kubernetes object file (kustomization.yaml is kustomize's own config)."""
    return sorted(p for p in KUBERNETES.rglob("*.yaml") if p.name != "kustomization.yaml")


def kustomizations() -> list[Path]:
    return sorted(p.parent for p in KUBERNETES.rglob("kustomization.yaml"))


def kustomize_command() -> list[str]:
    """``kubectl kustomize`` (kubectl carries kustomize) or a standalone ``kustomize build``."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    kubectl = require_tool("kubectl", "kubectl carries kustomize; or install kustomize")
    return [kubectl, "kustomize"]


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects a kustomization renders to (a fresh copy each time: tests mutate them)."""
    return copy.deepcopy(_rendered(directory))


@functools.cache
def _rendered(directory: Path) -> list[dict[str, Any]]:
    result = run([*kustomize_command(), str(directory)])
    assert result.returncode == 0, result.stderr
    return load_all(result.stdout)


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def gateway_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers that run the image-gateway image (plain or native sidecar)."""
    every = [*spec.get("initContainers", []), *spec.get("containers", [])]
    return [c for c in every if re.match(r"^([\w.-]+/)*image-gateway(:|@|$)", c["image"])]
