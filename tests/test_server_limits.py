"""Connection limits of the real server (``app/server_limits.py``), attacked over raw
sockets on 127.0.0.1: oversized headers, slowloris headers and bodies, a flood of
connections past the descriptor limit, and a drain held by a slow uploader. Throughout,
the probes must keep answering within 1 s and the process must stay up."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.process import GatewayProcess, free_port

LIMITS = {
    "IMAGE_GATEWAY_CONNECTIONS__HEADER_TIMEOUT_S": "1",
    "IMAGE_GATEWAY_CONNECTIONS__BODY_TIMEOUT_S": "1",
}
PROBE_BUDGET_S = 1.0


@pytest.fixture(scope="module")
def server() -> Iterator[GatewayProcess]:
    with GatewayProcess(env=LIMITS) as process:
        yield process


def connect(server: GatewayProcess, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", server.port), timeout=10, source_address=(source, 0)
    )
    return sock


def answer(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one answer on ``sock`` (read until it closes)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := _recv(sock):
        data += chunk
    if not data:
        return 0, {}, b""  # closed (or reset) without an answer
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except (ConnectionResetError, TimeoutError):
        return b""


def probe_seconds(server: GatewayProcess) -> float:
    started = time.monotonic()
    response = httpx.get(server.url + "/healthz", timeout=5)
    assert response.status_code == 200
    return time.monotonic() - started


@contextmanager
def probing(server: GatewayProcess, base: str | None = None) -> Iterator[list[float]]:
    """Probes /healthz and /readyz (on ``base``, by default the server's URL) in a loop
    while the block runs; yields their latencies (99 for a failed probe)."""
    base = base or server.url
    latencies: list[float] = []
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            for path in ("/healthz", "/readyz"):
                started = time.monotonic()
                try:
                    status = httpx.get(base + path, timeout=5).status_code
                except httpx.TransportError:
                    status = 0
                latencies.append(time.monotonic() - started if status == 200 else 99.0)
            done.wait(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield latencies
    finally:
        done.set()
        thread.join(10)


def requests_counted(server: GatewayProcess, status: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "image_gateway_requests_total" and sample.labels["status_code"] == status
    )


def wait_for_count(server: GatewayProcess, status: str, timeout: float = 5.0) -> float:
    deadline = time.monotonic() + timeout
    while (count := requests_counted(server, status)) == 0 and time.monotonic() < deadline:
        pass  # each check is an HTTP round trip: bounded polling, no sleep
    return count


def assert_problem(status: int, headers: dict[str, str], body: bytes, code: str) -> None:
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == code and json.loads(body)["status"] == status


def test_a_cr_lf_in_a_header_is_a_problem_json_400(server: GatewayProcess) -> None:
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\rb\r\n\r\n")
    status, headers, body = answer(sock)
    assert status == 400
    assert_problem(status, headers, body, "invalid_request")


def test_headers_over_the_limit_in_one_read_are_431(server: GatewayProcess) -> None:
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    status, headers, body = answer(sock)
    assert status == 431
    assert_problem(status, headers, body, "headers_too_large")


def test_a_100_mb_header_is_cut_early_and_probes_keep_answering(server: GatewayProcess) -> None:
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    chunk, sent = b"a" * 65536, 0
    with probing(server) as latencies:
        try:
            while sent < 100 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert sent < 8 * 1024 * 1024  # refused after the first 64 KiB (plus socket buffers)
    assert latencies and max(latencies) < PROBE_BUDGET_S


def test_slowloris_headers_are_cut_at_the_header_timeout(server: GatewayProcess) -> None:
    """200 sockets each send a header line now and then: the server closes each of them
    within its 1 s header timeout (never resetting it per byte), answering 408. When a drip
    is still unread as the server closes, the kernel resets the connection and the 408 is
    lost (status 0): the connection is cut all the same."""
    socks = [connect(server) for _ in range(200)]
    for sock in socks:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    started = time.monotonic()
    statuses: list[int] = []
    with probing(server) as latencies:
        while socks and time.monotonic() - started < 10:
            readable, _, _ = select.select(socks, [], [], 0.2)
            for sock in list(socks):
                try:
                    if sock not in readable:
                        sock.sendall(b"X-a: b\r\n")  # a drip of header bytes
                        continue
                    statuses.append(answer(sock)[0])
                except OSError:
                    statuses.append(0)
                socks.remove(sock)
                sock.close()
    assert not socks and time.monotonic() - started < 5
    assert set(statuses) == {408, 0} or set(statuses) == {408}, statuses
    assert latencies and max(latencies) < PROBE_BUDGET_S


@pytest.mark.parametrize("body", [b"a", b""])
def test_a_body_that_does_not_arrive_is_408(server: GatewayProcess, body: bytes) -> None:
    """Content-Length larger than what is sent (one byte, or none)."""
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(
        b"POST /v1/upscale HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + body
    )
    status, headers, payload = answer(sock)
    assert status == 408 and time.monotonic() - started < 5
    assert_problem(status, headers, payload, "request_timeout")
    assert wait_for_count(server, "408") >= 1  # recorded once the app sees the cut
    assert requests_counted(server, "500") == 0


def test_probes_are_served_when_every_connection_is_busy() -> None:
    env = {**LIMITS, "IMAGE_GATEWAY_CONNECTIONS__MAX_CONNECTIONS": "4"}
    env["IMAGE_GATEWAY_CONNECTIONS__BODY_TIMEOUT_S"] = "30"
    with GatewayProcess(env=env) as server:
        busy = [connect(server) for _ in range(4)]
        for sock in busy:  # four uploads in progress: nothing idle to close
            sock.sendall(b"POST /v1/upscale HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n{")
        assert probe_seconds(server) < PROBE_BUDGET_S
        extra = connect(server)
        extra.sendall(b"POST /v1/upscale HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        status, headers, body = answer(extra)
        assert status == 503 and headers["retry-after"] == "1"
        assert_problem(status, headers, body, "provider_unavailable")
        for sock in busy:
            sock.close()


#: The attacker, in its own process so that the probes here do not share its CPU time:
#: 25,000 connection attempts to 127.0.0.1, each left waiting after a partial request line,
#: up to 3,000 held at once, spread over source addresses 127.0.0.2-9; stops after 150 s.
FLOOD = """
import socket, sys, time
port, held, done, started = int(sys.argv[1]), [], 0, time.monotonic()
for attempt in range(25_000):
    if time.monotonic() - started > 150:
        break
    done += 1
    try:
        sock = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(f"127.0.0.{2 + attempt % 8}", 0)
        )
        sock.setblocking(False)
        sock.send(b"GET /v1/providers HT")
        held.append(sock)
    except OSError:
        pass  # refused or reset under the flood: still an attempt
    if len(held) >= 3000:
        held.pop(0).close()
print(done)
"""


def test_25000_connection_attempts_past_the_descriptor_limit() -> None:
    """The server runs with 2,048 descriptors (its connection cap is lowered below that)
    and is flooded by ``FLOOD`` on its main port: the oldest waiting connections are closed
    to make room, the probes on the probe port (where Kubernetes sends them) keep
    answering within 1 s, and the process stays up and serves the main port afterwards."""
    prlimit = ["prlimit", "--nofile=2048:2048", sys.executable, "-m", "app"]
    probe_port = free_port()
    env = {**LIMITS, "IMAGE_GATEWAY_CONNECTIONS__PROBE_PORT": str(probe_port)}
    with GatewayProcess(env=env, command=prlimit) as server:
        with probing(server, f"http://127.0.0.1:{probe_port}") as latencies:
            attacker = subprocess.run(
                [sys.executable, "-c", FLOOD, str(server.port)],
                capture_output=True,
                timeout=200,
                check=True,
            )
        assert server.proc is not None and server.proc.poll() is None
        assert probe_seconds(server) < PROBE_BUDGET_S
        refused = httpx.get(f"http://127.0.0.1:{probe_port}/v1/providers")
    assert int(attacker.stdout) == 25_000
    assert len(latencies) > 10 and max(latencies) < PROBE_BUDGET_S, sorted(latencies)[-5:]
    assert refused.status_code == 503  # the probe port answers the probes only


def test_the_drain_does_not_wait_for_a_body_that_is_not_arriving() -> None:
    env = {
        **LIMITS,
        "IMAGE_GATEWAY_CONNECTIONS__BODY_TIMEOUT_S": "60",
        "IMAGE_GATEWAY_CONNECTIONS__DRAIN_BODY_TIMEOUT_S": "0.5",
        "IMAGE_GATEWAY_SHUTDOWN_GRACE_S": "60",
    }
    with GatewayProcess(env=env) as server:
        sock = connect(server)
        sock.sendall(b"POST /v1/upscale HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        probe_seconds(server)  # the upload is in flight
        started = time.monotonic()
        server.terminate()
        status, _, _ = answer(sock)
        assert server.wait(timeout=10) == 0
        assert status == 408 and time.monotonic() - started < 5
