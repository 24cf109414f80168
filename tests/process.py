"""A real gateway process (``python -m app``) on a free 127.0.0.1 port, for the tests that
need the real server: the run command, streamed 413s, SIGTERM drain, multiprocess metrics,
a real Prometheus scrape."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**values: str) -> dict[str, str]:
    """The child's environment: no IMAGE_GATEWAY_* from the caller's process, only ``values``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("IMAGE_GATEWAY_", "PROMETHEUS_"))
    }
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    env.update(values)
    return env


class GatewayProcess:
    """Starts the gateway with ``env`` and waits (bounded) until ``/healthz`` answers."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        port: int | None = None,
        command: list[str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings_env = {"IMAGE_GATEWAY_HOST": "127.0.0.1", "IMAGE_GATEWAY_PORT": str(self.port)}
        self.env = clean_env(**{**settings_env, **(env or {})})
        self.command = command or [sys.executable, "-m", "app"]
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path: Path | None = None

    def start(self, ready_timeout: float = 30.0) -> GatewayProcess:
        log = tempfile.NamedTemporaryFile(prefix="gateway-", suffix=".log", delete=False)  # noqa: SIM115
        self.stderr_path = Path(log.name)
        self._log = log
        self.proc = subprocess.Popen(
            self.command, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT
        )
        self._wait_ready(ready_timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)  # the process is still starting; poll again
        raise RuntimeError(f"gateway did not answer /healthz within {timeout}s: {self.output()}")

    def output(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.stderr_path is not None:
            self._log.close()
            self.stderr_path.unlink(missing_ok=True)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
