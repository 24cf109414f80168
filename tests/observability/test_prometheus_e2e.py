"""A real Prometheus (Debian's package) scrapes a real gateway that has served successes,
caller errors and upstream failures, and its query API shows exactly those counts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.emulators import venice
from tests.emulators.common import EmulatorServer, Fault
from tests.observability.promql import substitute_grafana_variables
from tests.observability.support import (
    RULES,
    VENDORS,
    Exchange,
    FakeVendor,
    PrometheusServer,
    dashboard_queries,
    finite,
    png_with_text,
    poll,
    send_mix,
    statuses,
    vendor_env,
)
from tests.process import GatewayProcess

JOB = "image-gateway"
P99 = (
    "histogram_quantile(0.99, sum by (le) "
    "(rate(image_gateway_request_duration_seconds_bucket[1m])))"
)


def scrape_config(target: str) -> str:
    return f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {RULES}
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["{target}"]
"""


@dataclass
class Scraped:
    prometheus: PrometheusServer
    exchanges: list[Exchange]
    venice: venice.VeniceState


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """Prometheus scrapes the gateway once before any request (so rates see the increase),
    then the gateway serves the mix."""
    workdir: Path = tmp_path_factory.mktemp("prometheus")
    keys = {"venice": "e2e-venice-key", "deepimage": "e2e-deepimage-key"}
    venice_state = venice.VeniceState(api_key=keys["venice"])
    # The Venice emulator fails the first two Venice upscales of the mix (500, as its
    # inference failure), then serves the third; Deep-Image is the failing fake vendor.
    failure = {"error": "Inference processing failed"}
    venice_state.add_fault(
        Fault("status", status=500, body=failure, path="/image/upscale", times=2)
    )
    venice_server = EmulatorServer(venice.create_app(venice_state), venice_state)
    with (
        venice_server,
        FakeVendor() as vendor,
        GatewayProcess(vendor_env(vendor.url, keys, venice_url=venice_server.url)) as gw,
    ):
        prometheus = PrometheusServer(workdir, scrape_config(f"127.0.0.1:{gw.port}"))
        try:
            prometheus.start()
            up = f'up{{job="{JOB}"}}'
            poll(lambda: prometheus.values_by(up, "job") == {JOB: 1.0}, 15, "a first scrape")
            with httpx.Client(base_url=gw.url, timeout=30) as client:
                exchanges = send_mix(client, png_with_text("e2e"), "e2e", vendor)
            yield Scraped(prometheus, exchanges, venice_state)
        finally:
            prometheus.stop()


def wait_for_counts(
    prometheus: PrometheusServer, query: str, label: str, expected: dict[str, float]
) -> None:
    """Polls (bounded) until a scrape has brought every count in; asserts the exact counts."""
    poll(lambda: prometheus.values_by(query, label) == expected, 10, f"{query} == {expected}")


def test_requests_total_counts_every_answer_by_status(scraped: Scraped) -> None:
    expected = {k: float(v) for k, v in statuses(scraped.exchanges).items()}
    assert {"200", "400", "415", "422"} <= set(expected)
    if VENDORS:
        assert any(status.startswith("5") for status in expected), expected
    query = f'sum by (status_code) (image_gateway_requests_total{{job="{JOB}"}}) > 0'
    wait_for_counts(scraped.prometheus, query, "status_code", expected)


def test_requests_total_counts_by_error_code(scraped: Scraped) -> None:
    expected: dict[str, float] = {}
    for exchange in scraped.exchanges:
        expected[exchange.code] = expected.get(exchange.code, 0.0) + 1
    query = f'sum by (code) (image_gateway_requests_total{{job="{JOB}"}}) > 0'
    wait_for_counts(scraped.prometheus, query, "code", expected)


def test_p99_latency_is_a_number(scraped: Scraped) -> None:
    def p99() -> str | None:
        result = scraped.prometheus.query(P99)
        if result and finite(result[0]["value"][1]):
            return str(result[0]["value"][1])
        return None

    value = float(poll(p99, 10, "a finite p99 from the request-duration histogram"))
    assert 0 < value <= 300


@pytest.mark.skipif(not VENDORS, reason="no vendor provider in this tree")
def test_upstream_failures_are_visible(scraped: Scraped) -> None:
    errors = 'sum by (provider) (image_gateway_upstream_errors_total{reason="server_error"})'
    seen = poll(lambda: scraped.prometheus.values_by(errors, "provider"), 10, "upstream errors")
    assert set(seen) <= set(VENDORS) and all(v > 0 for v in seen.values())
    fallbacks = "sum by (from_provider) (image_gateway_fallbacks_total)"
    moved = poll(lambda: scraped.prometheus.values_by(fallbacks, "from_provider"), 10, "fallbacks")
    assert set(moved) == set(VENDORS)
    retried = "sum by (provider) (image_gateway_retries_total)"
    assert poll(lambda: scraped.prometheus.values_by(retried, "provider"), 10, "retries")
    if "venice" in VENDORS:  # the emulator's last x-ratelimit-remaining-requests
        headroom = "image_gateway_vendor_ratelimit_remaining_requests"
        expected = {"venice": float(scraped.venice.remaining_requests)}
        assert poll(
            lambda: scraped.prometheus.values_by(headroom, "provider") == expected,
            10,
            "the Venice headroom",
        )


def test_rules_evaluate_without_errors(scraped: Scraped) -> None:
    def evaluated() -> list[dict[str, str]] | None:
        groups = scraped.prometheus.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r["health"] == "ok" for r in rules):
            return rules
        return None

    rules = poll(evaluated, 10, "every rule to be evaluated healthy")
    assert len(rules) == 12
    ratio = "image_gateway:request_errors:ratio_rate5m"
    by_operation = poll(
        lambda: scraped.prometheus.values_by(ratio, "operation"), 10, "the recorded error ratio"
    )
    assert set(by_operation) <= {"upscale", "generate"} and "upscale" in by_operation
    assert all(0 <= v <= 1 for v in by_operation.values())


def test_every_dashboard_query_runs(scraped: Scraped) -> None:
    for _, expr in dashboard_queries():
        promql = substitute_grafana_variables(expr)
        scraped.prometheus.query(promql)  # asserts status "success"
    rate = 'sum by (status_code) (rate(image_gateway_requests_total{job=~".*"}[1m]))'
    assert poll(lambda: scraped.prometheus.query(rate), 10, "a request rate")
