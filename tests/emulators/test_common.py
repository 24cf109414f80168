"""The emulator harness itself: recording and every fault kind, over real HTTP."""

import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.emulators.common import EmulatorServer, EmulatorState, Fault, Receive, Scope, Send


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    body = b'{"hello": "vendor"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    state = EmulatorState()
    with EmulatorServer(hello, state) as running:
        yield running


def test_requests_are_recorded_and_answered(server: EmulatorServer) -> None:
    response = httpx.post(server.url + "/v1/thing?x=1", json={"a": 1}, headers={"x-key": "k"})
    assert response.json() == {"hello": "vendor"}
    [seen] = server.state.requests
    assert (seen.method, seen.path, seen.query, seen.json()) == (
        "POST",
        "/v1/thing",
        "x=1",
        {"a": 1},
    )
    assert seen.headers["x-key"] == "k"


def test_status_fault_applies_to_matching_paths_for_its_count(server: EmulatorServer) -> None:
    server.state.add_fault(
        Fault(
            "status",
            status=429,
            body={"error": "slow down"},
            headers={"retry-after": "7"},
            path="/busy",
            times=2,
        )
    )
    assert httpx.get(server.url + "/other").status_code == 200
    first, second, third = (httpx.get(server.url + "/busy") for _ in range(3))
    assert (first.status_code, first.headers["retry-after"], first.json()) == (
        429,
        "7",
        {"error": "slow down"},
    )
    assert second.status_code == 429 and third.status_code == 200


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_broken_responses_fail_in_the_client(server: EmulatorServer, kind: str) -> None:
    server.state.add_fault(Fault(kind))  # type: ignore[arg-type]
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(server.url + "/x")


def test_malformed_body(server: EmulatorServer) -> None:
    server.state.add_fault(Fault("malformed"))
    response = httpx.get(server.url + "/x")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_hang_never_answers(server: EmulatorServer) -> None:
    server.state.add_fault(Fault("hang"))
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(server.url + "/x", timeout=httpx.Timeout(0.2))


def test_gated_requests_wait_for_the_test(server: EmulatorServer) -> None:
    server.state.add_fault(Fault("gated", times=2, path="/x"))
    results: list[int] = []

    def call() -> None:
        results.append(httpx.get(server.url + "/x", timeout=10).status_code)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    assert httpx.get(server.url + "/y").status_code == 200  # the gate holds only gated requests
    assert wait_for(lambda: len(server.state.requests_to("/x")) == 2)
    assert results == []
    server.state.open_gate()
    for thread in threads:
        thread.join(10)
    assert results == [200, 200]


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll a condition on the emulator's state until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
