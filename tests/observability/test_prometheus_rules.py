"""deploy/prometheus: the rules pass `promtool check rules`, their unit tests pass
`promtool test rules`, and the compose scrape config passes `promtool check config`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.observability.support import RULES, RULES_TEST, SCRAPE_CONFIG, run_promtool

#: The alerts the issue asks for, by what they watch.
REQUIRED_ALERTS = {
    "ImageGatewayHighErrorRatio": "image_gateway_requests_total",
    "ImageGatewayHighLatencyP99": "image_gateway:request_duration_seconds:p99_rate5m",
    "ImageGatewayCircuitOpen": "image_gateway_circuit_state",
    "ImageGatewayBulkheadRejections": "image_gateway_bulkhead_rejections_total",
    "ImageGatewayMetricsAbsent": "absent(image_gateway_build_info)",
    "ImageGatewayKeyNearBudget": "image_gateway_key_spend_usd",
}


def _rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r.get("alert") or r["record"]: r for g in groups for r in g["rules"]}


def test_promtool_check_rules_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", RULES_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_required_alert_exists_and_is_unit_tested() -> None:
    rules = _rules()
    tests = RULES_TEST.read_text()
    for alert, watched in REQUIRED_ALERTS.items():
        assert alert in rules, f"rules.yml has no {alert}"
        expr = rules[alert]["expr"]
        recorded = {name: r["expr"] for name, r in rules.items() if "record" in r}
        used = expr + "".join(e for n, e in recorded.items() if n in expr)
        assert watched in used, f"{alert} does not watch {watched}: {expr}"
        assert rules[alert]["labels"]["severity"] in ("warning", "critical")
        assert f"alertname: {alert}" in tests, f"rules_test.yml does not exercise {alert}"


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    suite = yaml.safe_load(RULES_TEST.read_text())
    fired: set[str] = set()
    silent: set[str] = set()
    for case in suite["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {name for name, r in _rules().items() if "alert" in r}
    assert alerts <= fired, f"never shown firing: {alerts - fired}"
    assert alerts <= silent, f"never shown silent: {alerts - silent}"


def test_promtool_check_config_accepts_the_compose_scrape_config() -> None:
    result = run_promtool("check", "config", SCRAPE_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "image-gateway"
    assert job["static_configs"][0]["targets"] == ["gateway:8080"]
    assert config["rule_files"] == ["rules.yml"]


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: a rule with a PromQL syntax error is refused."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: Broken\n"
        "        expr: sum by (provider (rate(image_gateway_requests_total[5m]))\n"
    )
    result = run_promtool("check", "rules", broken)
    assert result.returncode != 0
