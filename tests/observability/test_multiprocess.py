"""Two uvicorn workers (prometheus-client multiprocess mode): /metrics adds up what both
served, and each worker writes its own access-log lines."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import png_bytes
from tests.process import GatewayProcess

BATCH = 24
MAX_BATCHES = 10
_WORKER_PID = re.compile(r"Started server process \[(\d+)\]")


@dataclass
class Served:
    statuses: Counter[str]
    request_ids: list[str]
    per_pid: dict[int, float]
    metrics: str
    output: str
    worker_pids: set[int]


def per_process_requests(directory: Path) -> dict[int, float]:
    """Requests each worker counted, from its own multiprocess file (counter_<pid>.db)."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        families = MultiProcessCollector.merge([str(path)], accumulate=True)  # type: ignore[no-untyped-call]
        counts[pid] = sum(
            s.value
            for f in families
            if f.name == "image_gateway_requests"
            for s in f.samples
            if s.name == "image_gateway_requests_total"
        )
    return counts


def _send_batch(url: str, first: int) -> list[tuple[str, int]]:
    """BATCH concurrent requests on separate connections: upscales and malformed bodies."""
    image = base64.b64encode(png_bytes(32, 24)).decode()

    def one(n: int) -> tuple[str, int]:
        request_id = f"mp-{n}"
        body = {"image": image, "scale": 2} if n % 3 else {"image": 7}
        with httpx.Client(base_url=url, timeout=30) as client:
            response = client.post("/v1/upscale", json=body, headers={"x-request-id": request_id})
        return request_id, response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(first, first + BATCH)))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Batches until both workers have served some (bounded), then the aggregated metrics."""
    directory = tmp_path_factory.mktemp("multiproc")
    env = {
        "IMAGE_GATEWAY_WORKERS": "2",
        "IMAGE_GATEWAY_ROUTING__UPSCALE": "local",
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }
    with GatewayProcess(env) as gw:
        sent: list[tuple[str, int]] = []
        for _ in range(MAX_BATCHES):
            sent += _send_batch(gw.url, len(sent))
            if len([n for n in per_process_requests(directory).values() if n > 0]) >= 2:
                break
        metrics = httpx.get(gw.url + "/metrics", timeout=10).text
        gw.terminate()
        gw.wait(30)
        yield Served(
            Counter(str(status) for _, status in sent),
            [request_id for request_id, _ in sent],
            per_process_requests(directory),
            metrics,
            gw.output(),
            {int(pid) for pid in _WORKER_PID.findall(gw.output())},
        )


def _samples(metrics: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for f in text_string_to_metric_families(metrics)
        for s in f.samples
        if s.name == name
    ]


def test_counts_add_up_across_workers(served: Served) -> None:
    total = sum(served.statuses.values())
    assert served.statuses == Counter({"200": total * 2 // 3, "400": total // 3})
    by_status = Counter[str]()
    for labels, value in _samples(served.metrics, "image_gateway_requests_total"):
        by_status[labels["status_code"]] += int(value)
    assert by_status == served.statuses
    durations = {
        (labels["operation"], labels["provider"]): value
        for labels, value in _samples(
            served.metrics, "image_gateway_request_duration_seconds_count"
        )
    }
    assert durations[("upscale", "local")] == served.statuses["200"]
    assert durations[("upscale", "none")] == served.statuses["400"]


def test_both_workers_served_and_each_counted_its_own(served: Served) -> None:
    assert len(served.worker_pids) == 2, served.output
    assert set(served.per_pid) == served.worker_pids
    assert all(n > 0 for n in served.per_pid.values()), served.per_pid
    assert sum(served.per_pid.values()) == sum(served.statuses.values())


def test_gauges_aggregate_without_double_counting(served: Served) -> None:
    """build_info is 1, not one per worker; nothing is in flight once all answered."""
    assert [v for _, v in _samples(served.metrics, "image_gateway_build_info")] == [1.0]
    inflight = _samples(served.metrics, "image_gateway_inflight_requests")
    assert inflight and all(v == 0 for _, v in inflight)
    circuit = _samples(served.metrics, "image_gateway_circuit_state")
    assert circuit == [({"provider": "local"}, 0.0)]


def test_every_worker_writes_the_access_log(served: Served) -> None:
    ids = []
    for line in served.output.splitlines():
        if line.startswith("{"):
            ids.append(json.loads(line).get("request_id"))
    assert sorted(ids) == sorted(served.request_ids)
