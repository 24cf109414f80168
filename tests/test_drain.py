"""Graceful shutdown with a real uvicorn process: SIGTERM while 20 slow requests are in
flight. /readyz turns 503 at once, a new request gets 503, all 20 finish with 200, and the
process exits 0 within the grace period. The "slow" vendor is the Venice emulator holding
requests at a gate the test opens, so nothing here waits on timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from tests.emulators.common import EmulatorServer, Fault
from tests.emulators.venice import DEFAULT_API_KEY, VeniceState, create_app
from tests.process import GatewayProcess

IN_FLIGHT = 20
GRACE_S = 30


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def venice_env(url: str) -> dict[str, str]:
    return {
        "IMAGE_GATEWAY_VENICE__API_KEY": DEFAULT_API_KEY,
        "IMAGE_GATEWAY_VENICE__BASE_URL": url + "/api/v1",
        "IMAGE_GATEWAY_ROUTING__GENERATE": "venice",
        "IMAGE_GATEWAY_SHUTDOWN_GRACE_S": str(GRACE_S),
    }


def test_sigterm_drains_in_flight_requests_then_exits_0() -> None:
    state = VeniceState()
    with EmulatorServer(create_app(state), state) as venice:
        state.add_fault(Fault("gated", times=IN_FLIGHT, path="/image/generate"))
        with GatewayProcess(env=venice_env(venice.url)) as gateway:
            statuses: list[int] = []

            def call() -> None:
                response = httpx.post(
                    gateway.url + "/v1/generate", json={"prompt": "a slow fox"}, timeout=60
                )
                statuses.append(response.status_code)

            threads = [threading.Thread(target=call) for _ in range(IN_FLIGHT)]
            for thread in threads:
                thread.start()
            assert wait_for(lambda: len(state.requests_to("/image/generate")) == IN_FLIGHT)

            signalled = time.monotonic()
            gateway.terminate()
            assert wait_for(lambda: httpx.get(gateway.url + "/readyz").status_code == 503)
            late = httpx.post(gateway.url + "/v1/generate", json={"prompt": "too late"}, timeout=10)
            assert late.status_code == 503
            assert late.json()["code"] == "provider_unavailable" and late.headers["retry-after"]
            assert statuses == []  # nothing in flight was cut off

            state.open_gate()
            for thread in threads:
                thread.join(30)
            assert statuses == [200] * IN_FLIGHT
            assert gateway.wait(timeout=GRACE_S) == 0
            assert time.monotonic() - signalled < GRACE_S
            assert len(state.requests_to("/image/generate")) == IN_FLIGHT  # the late one never left


def test_with_two_workers_each_drains_and_the_supervisor_exits_0() -> None:
    state = VeniceState()
    with EmulatorServer(create_app(state), state) as venice:
        state.add_fault(Fault("gated", times=4, path="/image/generate"))
        env = {**venice_env(venice.url), "IMAGE_GATEWAY_WORKERS": "2"}
        with GatewayProcess(env=env) as gateway:
            statuses: list[int] = []

            def call() -> None:
                response = httpx.post(
                    gateway.url + "/v1/generate", json={"prompt": "a fox"}, timeout=60
                )
                statuses.append(response.status_code)

            threads = [threading.Thread(target=call) for _ in range(4)]
            for thread in threads:
                thread.start()
            assert wait_for(lambda: len(state.requests_to("/image/generate")) == 4)
            gateway.terminate()  # the supervisor forwards SIGTERM to both workers
            state.open_gate()
            for thread in threads:
                thread.join(30)
            assert statuses == [200] * 4
            assert gateway.wait(timeout=GRACE_S) == 0
            assert gateway.output().count("draining:") == 2
