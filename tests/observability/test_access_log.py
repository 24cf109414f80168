"""The logs of a real gateway process at debug level never carry a secret, and every
request leaves exactly one JSON access-log line with the documented fields.

Canaries: vendor API keys, and a private string inside the image (a PNG tEXt chunk) that
travels raw (multipart), base64 (JSON bodies) and to the vendors. The failing vendor echoes
the key and the body back in its error, the way real vendors sometimes do."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.observability.support import (
    VENDORS,
    Exchange,
    FakeVendor,
    png_with_text,
    send_mix,
    vendor_env,
)
from tests.process import GatewayProcess

#: docs/observability.md, "Access log".
ACCESS_LOG_FIELDS = {
    "request_id",
    "operation",
    "provider",
    "model",
    "status",
    "code",
    "caller",
    "cost_usd",
    "total_ms",
    "upstream_ms",
    "attempts",
}
KEYS = {
    "venice": f"canary-venice-{uuid.uuid4().hex}",
    "deepimage": f"canary-deepimage-{uuid.uuid4().hex}",
}
IMAGE_CANARY = f"canary-image-{uuid.uuid4().hex}"
#: The signature of a result URL (vendors.md §3.2: Deep-Image results may live on S3).
URL_CANARY = f"canary-signature-{uuid.uuid4().hex}"
SECRETS = [*KEYS.values(), IMAGE_CANARY, URL_CANARY]


def secret_forms(secret: str) -> list[str]:
    """``secret`` raw, and the part of its base64 that is the same wherever it sits in a
    longer base64 text (one form per alignment)."""
    raw = secret.encode()
    forms = [secret]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        forms.append(encoded[4:-4])
    return forms


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [form for s in secrets for form in secret_forms(s) if form in text]


def test_secret_forms_find_base64_at_any_offset() -> None:
    for prefix in (b"", b"a", b"ab", b"abc"):
        encoded = base64.b64encode(prefix + IMAGE_CANARY.encode() + b"tail").decode()
        assert leaks(encoded, [IMAGE_CANARY])
    assert not leaks("nothing to see", [IMAGE_CANARY])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[list[Exchange], str, list[Any]]]:
    """A gateway at log level debug that served the request mix; its whole output."""
    image = png_with_text(IMAGE_CANARY)
    with FakeVendor(url_secret=URL_CANARY) as vendor:
        env = {"IMAGE_GATEWAY_LOG_LEVEL": "debug", **vendor_env(vendor.url, KEYS)}
        gw = GatewayProcess(env).start()
        try:
            with httpx.Client(base_url=gw.url, timeout=30) as client:
                exchanges = send_mix(client, image, "canary", vendor)
            gw.terminate()
            gw.wait(20)
            output = gw.output()
        finally:
            gw.stop()
        yield exchanges, output, list(vendor.state.requests)


def test_the_canaries_were_in_play(served: tuple[list[Exchange], str, list[Any]]) -> None:
    """The test can fail: the secrets reached the vendors (and came back in their errors)."""
    exchanges, _, vendor_requests = served
    assert {e.status for e in exchanges} >= {200, 400, 415, 422}
    for vendor in VENDORS:
        seen = [r for r in vendor_requests if KEYS[vendor] in json.dumps(r.headers)]
        assert seen, f"{vendor} never received its key"
        assert any(leaks(r.body.decode("latin-1"), [IMAGE_CANARY]) for r in seen)
    if "deepimage" in VENDORS:
        signed = [e for e in exchanges if e.name == "deepimage signed result"]
        assert [e.status for e in signed] == [200]
        assert any(URL_CANARY in r.query for r in vendor_requests)


def test_no_secret_in_any_log_line(served: tuple[list[Exchange], str, list[Any]]) -> None:
    _, output, _ = served
    assert output.count("\n") > len(served[0])  # debug output was captured
    for number, line in enumerate(output.splitlines(), 1):
        found = leaks(line, SECRETS)
        assert not found, f"log line {number} leaks {found}: {line[:300]}"


def test_no_secret_in_any_error_answer(served: tuple[list[Exchange], str, list[Any]]) -> None:
    exchanges, _, _ = served
    for exchange in exchanges:
        text = json.dumps(dict(exchange.headers))
        if exchange.status >= 400:
            text += exchange.body.decode("utf-8", "replace")
        found = leaks(text, SECRETS)
        assert not found, f"{exchange.name} ({exchange.status}) leaks {found}"


def access_lines(output: str) -> list[dict[str, Any]]:
    records = []
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if isinstance(record, dict) and "request_id" in record:
            records.append(record)
    return records


def test_one_access_line_per_request(served: tuple[list[Exchange], str, list[Any]]) -> None:
    exchanges, output, _ = served
    records = access_lines(output)
    assert sorted(r["request_id"] for r in records) == sorted(e.request_id for e in exchanges)
    by_id = {r["request_id"]: r for r in records}
    for exchange in exchanges:
        check_access_record(by_id[exchange.request_id], exchange)


def check_access_record(record: dict[str, Any], exchange: Exchange) -> None:
    where = f"{exchange.name}: {record}"
    assert set(record) == ACCESS_LOG_FIELDS, where
    assert record["status"] == exchange.status, where
    assert record["code"] == exchange.code, where
    assert record["operation"] == ("generate" if exchange.name == "generate" else "upscale")
    assert isinstance(record["total_ms"], float) and isinstance(record["upstream_ms"], float)
    assert 0 <= record["upstream_ms"] <= record["total_ms"], where
    assert isinstance(record["attempts"], int) and record["attempts"] >= 0, where
    if exchange.status == 200:
        assert record["provider"] == exchange.headers["x-image-gateway-provider"], where
        assert record["model"] == exchange.headers["x-image-gateway-model"], where
        assert record["attempts"] >= 1, where
    if exchange.name.startswith("local "):
        assert (record["provider"], record["attempts"]) == ("local", 1), where
    if exchange.status in (400, 415):
        assert (record["provider"], record["attempts"], record["upstream_ms"]) == ("none", 0, 0)
