"""Every Prometheus metric the gateway exports. Names and labels are fixed here, and every
label value is bounded (operations, provider ids, status codes, error codes, reasons).

With several uvicorn workers, prometheus-client's multiprocess mode is used: the server
sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, and ``/metrics`` aggregates
the per-process files (see ``render``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from app import __version__

# 5 ms to 300 s: gateway-only answers are milliseconds, vendor calls are seconds to minutes.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BYTES_BUCKETS = tuple(float(2**n) for n in range(10, 27, 2))  # 1 KiB .. 64 MiB

REQUESTS = Counter(
    "image_gateway_requests",
    "Requests answered, by operation, provider, HTTP status and error code.",
    ["operation", "provider", "status_code", "code"],
)
REQUEST_DURATION = Histogram(
    "image_gateway_request_duration_seconds",
    "Whole-request latency as the caller sees it.",
    ["operation", "provider"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_DURATION = Histogram(
    "image_gateway_upstream_duration_seconds",
    "Latency of each provider call (one attempt).",
    ["provider", "operation", "outcome"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "image_gateway_upstream_errors",
    "Failed provider calls by reason.",
    ["provider", "operation", "reason"],
)
OVERHEAD = Histogram(
    "image_gateway_overhead_seconds",
    "The gateway's own cost: total request time minus time spent waiting on providers.",
    ["operation"],
    buckets=OVERHEAD_BUCKETS,
)
VALIDATION_FAILURES = Counter(
    "image_gateway_validation_failures",
    "Requests refused by a provider's limits before any upstream call.",
    ["provider", "operation"],
)
RETRIES = Counter(
    "image_gateway_retries", "Provider calls repeated after a retryable failure.", ["provider"]
)
FALLBACKS = Counter(
    "image_gateway_fallbacks",
    "Requests moved from one provider to the next.",
    ["from_provider", "to_provider"],
)
BULKHEAD_REJECTIONS = Counter(
    "image_gateway_bulkhead_rejections",
    "Requests refused because a provider had too many calls in flight.",
    ["provider"],
)
COST_USD = Counter(
    "image_gateway_cost_usd",
    "Vendor spend in USD from the price table, by provider, model, operation and caller key.",
    ["provider", "model", "operation", "caller"],
)
KEY_BUDGET_USD = Gauge(
    "image_gateway_key_budget_usd",
    "A caller key's budget in USD for the period (day or month).",
    ["caller", "period"],
    multiprocess_mode="mostrecent",
)
KEY_SPEND_USD = Gauge(
    "image_gateway_key_spend_usd",
    "What a caller key has spent in the current period (day or month), from the state store.",
    ["caller", "period"],
    multiprocess_mode="mostrecent",
)
CALLER_REQUESTS = Counter(
    "image_gateway_caller_requests",
    "Operation requests by caller key id (operator-defined, so bounded) and HTTP status.",
    ["caller", "operation", "status_code"],
)
INFLIGHT = Gauge(
    "image_gateway_inflight_requests",
    "Requests being served.",
    ["operation"],
    multiprocess_mode="livesum",
)
CIRCUIT_STATE = Gauge(
    "image_gateway_circuit_state",
    "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
    ["provider"],
    multiprocess_mode="max",
)
IMAGE_BYTES = Histogram(
    "image_gateway_image_bytes",
    "Image payload sizes, in (from callers) and out (to callers).",
    ["direction"],
    buckets=BYTES_BUCKETS,
)
VENDOR_RATELIMIT_REMAINING = Gauge(
    "image_gateway_vendor_ratelimit_remaining_requests",
    "Requests left in the vendor's current rate-limit window, as the vendor last reported.",
    ["provider"],
    multiprocess_mode="mostrecent",
)
VENDOR_RATE_LIMIT = Gauge(
    "image_gateway_vendor_rate_limit",
    "The key's limit per model and kind (RPM, RPD, TPM), as the vendor reports it "
    "(Venice GET /api_keys/rate_limits).",
    ["provider", "model", "type"],
    multiprocess_mode="mostrecent",
)
VENDOR_BALANCE = Gauge(
    "image_gateway_vendor_balance",
    "The key's balance per currency, as the vendor last reported it.",
    ["provider", "currency"],
    multiprocess_mode="mostrecent",
)
BUILD_INFO = Gauge(
    "image_gateway_build_info",
    "Always 1; the labels carry the version.",
    ["version"],
    multiprocess_mode="max",
)

OPERATIONS = ("upscale", "generate")
#: The answers that alerts count as failures (DESIGN §1), created at start-up: ``rate()``
#: and ``increase()`` cannot see the first increment of a series that did not exist before
#: it, so without these a pod's first failure of each kind would be invisible to alerts.
_WATCHED_ANSWERS = (
    ("200", "ok"),
    ("429", "rate_limited"),
    ("500", "internal_error"),
    ("502", "upstream_error"),
    ("503", "provider_unavailable"),
    ("504", "upstream_timeout"),
)


def init(provider_ids: list[str]) -> None:
    """Create the label sets that should exist before the first request, so dashboards and
    alerts see zeros instead of absent series (and rates count the first request)."""
    BUILD_INFO.labels(version=__version__).set(1)
    for pid in provider_ids:
        CIRCUIT_STATE.labels(provider=pid).set(0)
    for op in OPERATIONS:
        INFLIGHT.labels(operation=op)
        OVERHEAD.labels(operation=op)
        _init_request_series(op, [*provider_ids, "none"])


def _init_request_series(operation: str, providers: list[str]) -> None:
    for provider in providers:
        REQUEST_DURATION.labels(operation=operation, provider=provider)
        for status, code in _WATCHED_ANSWERS:
            REQUESTS.labels(operation=operation, provider=provider, status_code=status, code=code)


def record_vendor_headers(provider: str, headers: Mapping[str, str]) -> None:
    """Keep the rate-limit headroom a vendor reports (Venice ``x-ratelimit-remaining-requests``)."""
    value = headers.get("x-ratelimit-remaining-requests")
    if value is None:
        return
    try:
        VENDOR_RATELIMIT_REMAINING.labels(provider=provider).set(float(value))
    except ValueError:
        return


def record_key_limits(
    provider: str, limits: list[tuple[str, str, float]], balances: dict[str, float]
) -> None:
    """The key's limits ``(model, type, amount)`` and balances a vendor reported."""
    for model, kind, amount in limits:
        VENDOR_RATE_LIMIT.labels(provider=provider, model=model, type=kind).set(amount)
    for currency, amount in balances.items():
        VENDOR_BALANCE.labels(provider=provider, currency=currency).set(amount)


def render() -> tuple[bytes, str]:
    """The exposition text for ``/metrics`` (aggregated across workers in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
