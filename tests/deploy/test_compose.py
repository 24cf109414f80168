"""docker-compose.yml: `docker-compose config -q` (Debian's docker-compose) accepts it with
and without the sandbox profile, what it mounts exists, Prometheus's configuration in the
layout compose gives it passes `promtool check config`, and the services fit together."""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings
from tests.deploy.tooling import COMPOSE_FILE, ROOT, require_tool, run
from tests.emulators import deepimage, venice

PROFILES = {
    "default": [],
    "sandbox": ["--profile", "sandbox"],
    "replicas": ["--profile", "replicas"],
}


def compose(*args: str) -> tuple[int, str, str]:
    tool = require_tool("docker-compose", "apt-get install docker-compose")
    # `config` needs no engine. The caller's own IMAGE_GATEWAY_* and COMPOSE_* variables
    # stay out, so that the file is checked as a newcomer's checkout would see it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_GATEWAY_", "COMPOSE_"))}
    result = run([tool, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), *args], env=env)
    return result.returncode, result.stdout, result.stderr


def rendered(profile: str) -> dict[str, Any]:
    """``docker-compose config``: the file as compose understands it (anchors merged, paths
    absolute, variables substituted). A fresh copy each time."""
    return copy.deepcopy(_rendered(profile))


@functools.cache
def _rendered(profile: str) -> dict[str, Any]:
    code, out, err = compose(*PROFILES[profile], "config")
    assert code == 0, err
    config: dict[str, Any] = yaml.safe_load(out)
    return config


@pytest.mark.parametrize("profile", PROFILES)
def test_compose_config_is_valid(profile: str) -> None:
    code, out, err = compose(*PROFILES[profile], "config", "-q")
    assert code == 0, err
    assert not out and "WARNING" not in err, err


def test_compose_config_rejects_a_broken_file(tmp_path: Path) -> None:
    """Proves the check above can fail: an unknown service option."""
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    broken.write_text(
        text.replace("stop_grace_period:", "stop_grace_periode:", 1), encoding="utf-8"
    )
    tool = require_tool("docker-compose", "apt-get install docker-compose")
    result = run([tool, "-f", str(broken), "config", "-q"], cwd=tmp_path)
    assert result.returncode != 0 and "stop_grace_periode" in result.stderr


def test_profiles_start_the_right_services() -> None:
    services = rendered("sandbox")["services"]
    always = {name for name, service in services.items() if not service.get("profiles")}
    sandbox = {
        name for name, service in services.items() if "sandbox" in service.get("profiles", [])
    }
    assert always == {"gateway", "prometheus"}
    assert sandbox == {"vertex", "venice", "deepimage", "gateway-sandbox"}


def bind_mounts(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(host file, container path) of every bind mount; named volumes are left out."""
    mounts = []
    for service in config["services"].values():
        for volume in service.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if source.startswith("/"):
                mounts.append((source, target))
    return mounts


def test_every_mounted_file_exists() -> None:
    mounts = bind_mounts(rendered("sandbox"))
    assert "/etc/prometheus/rules.yml" in {t for _, t in mounts}, mounts
    for source, _ in mounts:
        assert Path(source).is_file(), f"compose mounts {source}, which does not exist"


def test_prometheus_config_passes_promtool_in_the_compose_layout(tmp_path: Path) -> None:
    """The files go where compose mounts them, so rule_files resolve as in the container."""
    promtool = require_tool("promtool", "apt-get install prometheus")
    for source, target in bind_mounts(rendered("default")):
        if target.startswith("/etc/prometheus/"):
            shutil.copy(source, tmp_path / Path(target).name)
    result = run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules found" in result.stdout


def test_stop_grace_outlasts_the_drain() -> None:
    grace = Settings.model_fields["shutdown_grace_s"].default
    for name in ("gateway", "gateway-sandbox"):
        service = rendered("sandbox")["services"][name]
        env = service.get("environment", {})
        drain = float(env.get("IMAGE_GATEWAY_SHUTDOWN_GRACE_S", grace))
        assert seconds(service["stop_grace_period"]) > drain + 5, name


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", duration))


def test_gateways_are_hardened_and_listen_on_loopback_only() -> None:
    for name in ("gateway", "gateway-sandbox"):
        service = rendered("sandbox")["services"][name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert all(p.startswith("127.0.0.1:") for p in service["ports"]), service["ports"]


def test_sandbox_gateway_waits_for_healthy_emulators_on_their_own_ports() -> None:
    services = rendered("sandbox")["services"]
    sandbox = services["gateway-sandbox"]
    assert sandbox["depends_on"] == {
        name: {"condition": "service_healthy"} for name in ("vertex", "venice", "deepimage")
    }
    urls = " ".join(str(v) for v in sandbox["environment"].values())
    for name in ("vertex", "venice", "deepimage"):
        port = next(a for a in services[name]["command"] if a.startswith("--port="))[7:]
        assert f"http://{name}:{port}" in urls, name
        assert f"'127.0.0.1', {port}" in services[name]["healthcheck"]["test"][-1], name


def test_secrets_are_not_written_into_the_compose_file() -> None:
    """Real keys come from the environment or .env; only the emulators' keys are literal."""
    services = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    for name, value in services["gateway"]["environment"].items():
        if name.endswith("API_KEY"):
            assert re.fullmatch(rf"\$\{{{name}:-\}}", value), name
    emulated = services["gateway-sandbox"]["environment"]
    assert emulated["IMAGE_GATEWAY_VENICE__API_KEY"] == venice.DEFAULT_API_KEY
    assert emulated["IMAGE_GATEWAY_DEEPIMAGE__API_KEY"] == deepimage.DEFAULT_API_KEY


def test_replicas_share_one_redis_with_distinct_queue_names() -> None:
    services = rendered("replicas")["services"]
    replicas = [services[name] for name in ("gateway-r1", "gateway-r2")]
    urls = {r["environment"]["IMAGE_GATEWAY_STATE__URL"] for r in replicas}
    assert urls == {"redis://redis:6379/0"}
    consumers = {r["environment"]["IMAGE_GATEWAY_JOBS__CONSUMER"] for r in replicas}
    assert len(consumers) == 2
    for replica in replicas:
        assert replica["depends_on"] == {"redis": {"condition": "service_healthy"}}
        assert replica["read_only"] is True
        assert all(p.startswith("127.0.0.1:") for p in replica["ports"])
    assert "--appendonly" in services["redis"]["command"]
    assert "/var/lib/image-gateway" in str(services["gateway"]["volumes"])
