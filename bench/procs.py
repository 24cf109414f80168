"""The processes the benchmark runs (fake, gateway, LiteLLM) and what Linux tells about
them: CPU seconds, resident memory, and the peak-RSS reset (``clear_refs``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Service:
    """A child process started with ``command`` and ``env``, ready when ``ready_url``
    answers 200; its output goes to ``log_path``."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], cwd: Path, log_path: Path
    ) -> None:
        self.name, self.command, self.env, self.cwd = name, command, env, cwd
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, ready_url: str, timeout: float = 60.0, any_status: bool = False) -> Service:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
            try:
                status = httpx.get(ready_url, timeout=2).status_code
                if status == 200 or any_status:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # still starting
        raise RuntimeError(f"{self.name} did not answer {ready_url} in {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def pids(self) -> list[int]:
        """The process and its descendants (uvicorn's workers, LiteLLM's children)."""
        return [self.pid, *descendants(self.pid)]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _read(entry / "stat")
            if stat:
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found.extend(children)
        frontier = children
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # the process ended meanwhile
        return ""


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of ``pids`` (clock-tick resolution)."""
    total = 0
    for pid in pids:
        stat = _read(Path(f"/proc/{pid}/stat"))
        if stat:
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle since boot (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / _TICKS


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of one process, in KiB."""
    found = {}
    for line in _read(Path(f"/proc/{pid}/status")).splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def reset_peak(pid: int) -> None:
    """Set VmHWM back to the current RSS (``5`` to /proc/PID/clear_refs, Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class CpuSnapshot:
    """CPU counters before a run, to take differences after it."""

    wall: float
    busy: float
    per_service: dict[str, float]
    children: float

    @classmethod
    def take(cls, services: dict[str, Service]) -> CpuSnapshot:
        import resource

        return cls(
            wall=time.monotonic(),
            busy=machine_busy_seconds(),
            per_service={name: cpu_seconds(s.pids()) for name, s in services.items()},
            children=resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime,
        )

    def since(self, before: CpuSnapshot) -> dict[str, float]:
        """Seconds of CPU per service, for wrk (our waited-for children) and for the rest
        of the machine ("other": whatever else ran during the measurement)."""
        used = {
            name: cpu - before.per_service.get(name, 0.0) for name, cpu in self.per_service.items()
        }
        used["wrk"] = self.children - before.children
        busy = self.busy - before.busy
        used["other"] = max(0.0, busy - sum(used.values()))
        used["wall"] = self.wall - before.wall
        return used
