"""The jobs' Prometheus metrics (exported by ``/metrics`` with the rest; bounded labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from app.metrics import LATENCY_BUCKETS

JOBS = Counter(
    "image_gateway_jobs",
    "Jobs by operation and status reached (queued at submission, then a final status).",
    ["operation", "status"],
)
QUEUE_DEPTH = Gauge(
    "image_gateway_job_queue_depth",
    "Jobs in the shared queue: waiting for a worker, or claimed (running) by one.",
    ["state"],
    multiprocess_mode="mostrecent",
)
JOB_AGE = Histogram(
    "image_gateway_job_age_seconds",
    "From submission to a final status (queueing included).",
    ["operation", "status"],
    buckets=(*LATENCY_BUCKETS, 600.0, 1800.0, 3600.0),
)
WEBHOOK_DELIVERIES = Counter(
    "image_gateway_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, failed, gave_up).",
    ["outcome"],
)
IDEMPOTENT_REPLAYS = Counter(
    "image_gateway_idempotent_replays",
    "Requests answered from an earlier request with the same Idempotency-Key.",
    ["operation"],
)
RESUMED = Counter(
    "image_gateway_jobs_resumed",
    "Jobs picked up again after their process stopped: resumed at the vendor, or "
    "failed as interrupted.",
    ["outcome"],
)


def init() -> None:
    for op in ("upscale", "generate"):
        for status in ("queued", "succeeded", "failed", "canceled"):
            JOBS.labels(operation=op, status=status)
        IDEMPOTENT_REPLAYS.labels(operation=op)
    for state in ("waiting", "claimed"):
        QUEUE_DEPTH.labels(state=state)
    for outcome in ("delivered", "failed", "gave_up"):
        WEBHOOK_DELIVERIES.labels(outcome=outcome)
