"""deploy/grafana/image-gateway.json: every PromQL expression in it parses, and every metric
it queries is one a running gateway exposes on /metrics (a misspelled name fails here)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import gateway, make_settings, png_bytes
from tests.observability.promql import metric_names, substitute_grafana_variables
from tests.observability.support import dashboard, dashboard_panels, dashboard_queries, run_promtool

#: Series Prometheus itself adds to every scrape target.
PROMETHEUS_SERIES = {"up"}
_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}
#: What the issue asks the dashboard to show, by the metrics that show it.
REQUIRED = {
    "request rate": "image_gateway_requests_total",
    "latency quantiles": "image_gateway_request_duration_seconds_bucket",
    "upstream time": "image_gateway_upstream_duration_seconds_sum",
    "overhead time": "image_gateway_overhead_seconds_sum",
    "circuit states": "image_gateway_circuit_state",
    "spend": "image_gateway_cost_usd_total",
    "key budgets": "image_gateway_key_spend_usd",
}


def exposed_series(exposition: str) -> set[str]:
    """Every series name the exposition offers: ``_total`` for counters, ``_bucket`` /
    ``_count`` / ``_sum`` for histograms (a family is listed even before its first sample)."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return names


def unknown_metrics(queries: list[tuple[str, str]], exposed: set[str]) -> dict[str, set[str]]:
    unknown = {}
    for where, expr in queries:
        missing = metric_names(substitute_grafana_variables(expr)) - exposed - PROMETHEUS_SERIES
        if missing:
            unknown[where] = missing
    return unknown


@pytest.fixture(scope="module")
def metrics_text() -> str:
    """/metrics of the app after a success, a caller error and a refusal."""
    import anyio

    async def scrape() -> str:
        image = base64.b64encode(png_bytes(16, 12)).decode()
        async with gateway(make_settings(routing={"upscale": ["local"]})) as client:
            ok = await client.post("/v1/upscale", json={"image": image, "scale": 2})
            assert ok.status_code == 200
            bad = await client.post("/v1/upscale", json={"image": image, "scale": 9})
            assert bad.status_code == 422
            refused = await client.post(
                "/v1/upscale", json={"image": image, "scale": 1, "provider": "local"}
            )
            assert refused.status_code == 422
            return (await client.get("/metrics")).text

    return anyio.run(scrape)


def test_dashboard_queries_only_metrics_the_gateway_exposes(metrics_text: str) -> None:
    exposed = exposed_series(metrics_text)
    assert "image_gateway_requests_total" in exposed  # the scrape is the gateway's
    queries = dashboard_queries()
    assert len(queries) >= 15
    assert unknown_metrics(queries, exposed) == {}


def test_the_check_catches_a_misspelled_metric(metrics_text: str) -> None:
    exposed = exposed_series(metrics_text)
    typo = [("typo", 'sum(rate(image_gateway_request_total{job=~"$job"}[$__rate_interval]))')]
    assert unknown_metrics(typo, exposed) == {"typo": {"image_gateway_request_total"}}
    bucket = [
        (
            "bucket",
            "histogram_quantile(0.9, sum by (le) (rate(image_gateway_overhead_seconds[1m])))",
        )
    ]
    assert unknown_metrics(bucket, exposed) == {"bucket": {"image_gateway_overhead_seconds"}}


def test_metric_names_tells_metrics_from_functions_labels_and_keywords() -> None:
    expr = (
        'sum by (provider, code) (rate(a_total{code!="ok",x=~"b_total"}[5m]))'
        " / on (provider) group_left sum without (le) (rate(c_total[5m] offset 1m)) > bool 0"
        ' or vector(0) and absent(up{job="j"})'
    )
    assert metric_names(expr) == {"a_total", "c_total", "up"}


def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    """The real PromQL parser (promtool) reads each expression, as recording rules."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substitute_grafana_variables(expr)}
        for i, (_, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    queried = set().union(
        *(metric_names(substitute_grafana_variables(e)) for _, e in dashboard_queries())
    )
    for what, metric in REQUIRED.items():
        assert metric in queried, f"no panel shows {what} ({metric})"
    exprs = [e for _, e in dashboard_queries()]
    assert any("by (provider, code)" in e for e in exprs), "no error ratio by code and provider"
    assert any(e.startswith("histogram_quantile(0.99") for e in exprs), "no p99"
    assert any(p["type"] == "state-timeline" for p in dashboard_panels(dashboard()["panels"]))


def test_dashboard_is_importable() -> None:
    """What Grafana's import needs: unique panel ids, a uid, and every query bound to the
    dashboard's Prometheus data-source variable."""
    doc = dashboard()
    assert doc["uid"] == "image-gateway" and doc["schemaVersion"] >= 30
    panels = list(dashboard_panels(doc["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
    names = [v["name"] for v in doc["templating"]["list"]]
    assert names[0] == "datasource"
