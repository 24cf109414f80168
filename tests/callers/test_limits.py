"""Per-key rate limits and budgets on the state store: the RateLimit headers, 429, one
limit across two gateway processes sharing a real redis-server, and a budget refused
before the vendor call."""

from __future__ import annotations

import base64
import io
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app.callers.keys import CallerKey, digest, new_secret, write_key_file
from tests.callers.vendors import Vendors, vendor_emulators
from tests.conftest import gateway, make_settings, png_bytes
from tests.process import GatewayProcess
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

SMALL = base64.b64encode(png_bytes(40, 30)).decode()
DAY = 86_400  # the longest window: a window boundary inside a test is a midnight (UTC) away


def keys(tmp_path: Path, **scopes: dict[str, Any]) -> tuple[Path, dict[str, str]]:
    secrets = {key_id: new_secret(key_id) for key_id in scopes}
    path = tmp_path / "keys.json"
    write_key_file(
        path,
        [
            CallerKey.model_validate({"id": k, "hash": digest(secrets[k]), **fields})
            for k, fields in scopes.items()
        ],
    )
    return path, secrets


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def b64_png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 90)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# --------------------------------------------------------------------------- rate limits


async def test_rate_limit_headers_and_429(tmp_path: Path) -> None:
    path, secrets = keys(
        tmp_path, limited={"rate_limit": {"requests": 3, "window_s": DAY}}, free={}
    )
    settings = make_settings(callers={"keys_file": path}, state={"data_dir": tmp_path / "s"})
    body = {"image": SMALL, "scale": 2}
    async with gateway(settings) as client:
        answers = [
            await client.post("/v1/upscale", json=body, headers=bearer(secrets["limited"]))
            for _ in range(4)
        ]
        dry = await client.post(
            "/v1/upscale?dry_run=true", json=body, headers=bearer(secrets["limited"])
        )
        free = await client.post("/v1/upscale", json=body, headers=bearer(secrets["free"]))
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    for answer, remaining in zip(answers, (2, 1, 0, 0), strict=True):
        assert answer.headers["ratelimit-policy"] == f'"key";q=3;w={DAY}'
        assert answer.headers["ratelimit"].startswith(f'"key";r={remaining};t=')
    refused = answers[3]
    seconds = int(refused.headers["ratelimit"].rsplit("t=", 1)[1])
    # Retry-After is the time left, capped at an hour like every Retry-After the gateway sends.
    assert 0 < seconds <= DAY and int(refused.headers["retry-after"]) == min(seconds, 3600)
    problem = refused.json()
    assert problem["code"] == "rate_limited" and "limited" in problem["detail"]
    assert problem["rate_limit"] == {"requests": 3, "window_s": DAY}
    assert dry.status_code == 429  # a dry run is refused as the real call would be
    assert free.status_code == 200 and "ratelimit" not in free.headers


def test_two_processes_on_one_redis_enforce_one_limit(tmp_path: Path) -> None:
    limit = 5
    path, secrets = keys(tmp_path, shared={"rate_limit": {"requests": limit, "window_s": DAY}})
    with RedisServer() as redis_server:
        env = {
            "IMAGE_GATEWAY_CALLERS__KEYS_FILE": str(path),
            "IMAGE_GATEWAY_STATE__URL": redis_server.url,
            "IMAGE_GATEWAY_ACCESS_LOG": "false",
        }
        with GatewayProcess(env) as one, GatewayProcess(env) as two:
            answers = []  # (window index before, after, answer)
            for index in range(4 * limit):
                url = (one if index % 2 else two).url + "/v1/upscale"
                body = {"image": SMALL, "scale": 2}
                before = int(time.time() // DAY)
                answer = httpx.post(url, json=body, headers=bearer(secrets["shared"]), timeout=30)
                answers.append((before, int(time.time() // DAY), answer))
    admitted = Counter(before for before, _, a in answers if a.status_code == 200)
    assert all(count <= limit for count in admitted.values()), admitted
    if len({w for pair in answers for w in pair[:2]}) == 1:  # no midnight (UTC) in the test
        assert sum(admitted.values()) == limit
    ports = {a.url.port for _, _, a in answers if a.status_code == 200}
    assert ports == {one.port, two.port}  # both processes admitted some: the count is shared
    refused = [a for _, _, a in answers if a.status_code != 200]
    assert refused and all(a.status_code == 429 and a.headers["retry-after"] for a in refused)


# --------------------------------------------------------------------------- budgets and usage


@pytest.fixture(scope="module")
def vendors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vendors]:
    with vendor_emulators(tmp_path_factory.mktemp("sa")) as running:
        yield running


def venice_upscales(vendors: Vendors) -> int:
    return len(vendors.venice.state.requests_to("/image/upscale"))


async def test_a_budget_is_refused_before_the_vendor_call(vendors: Vendors, tmp_path: Path) -> None:
    path, secrets = keys(tmp_path, tenth={"budget_daily_usd": 0.10, "providers": ["venice"]})
    settings = vendors.settings(callers={"keys_file": path}, state={"data_dir": tmp_path / "s"})
    x3 = {"image": b64_png(300, 300), "scale": 3}  # $0.08 at Venice
    x2 = {"image": b64_png(300, 300), "scale": 2}  # $0.02
    headers = bearer(secrets["tenth"])
    async with gateway(settings) as client:
        first = await client.post("/v1/upscale", json=x3, headers=headers)
        calls = venice_upscales(vendors)
        refused = await client.post("/v1/upscale", json=x3, headers=headers)
        dry = await client.post("/v1/upscale?dry_run=true", json=x3, headers=headers)
        assert venice_upscales(vendors) == calls  # the emulator saw nothing of either
        last = await client.post("/v1/upscale", json=x2, headers=headers)  # exactly $0.10
        after = await client.post("/v1/upscale", json=x2, headers=headers)
        scrape = (await client.get("/metrics")).text
    assert first.status_code == 200 and first.json()["cost"]["usd"] == 0.08
    assert refused.status_code == 402 and dry.status_code == 402
    problem = refused.json()
    assert problem["code"] == "budget_exceeded"
    budget = problem["budget"]
    assert budget["period"] == "day" and budget["limit_usd"] == 0.1
    assert budget["spent_usd"] == 0.08 and budget["remaining_usd"] == pytest.approx(0.02)
    assert budget["estimate_usd"] == 0.08 and budget["resets_at"].endswith("T00:00:00+00:00")
    assert dry.json()["budget"] == budget
    assert last.status_code == 200 and last.json()["cost"]["usd"] == 0.02
    assert after.status_code == 402 and after.json()["budget"]["remaining_usd"] == 0
    assert 'image_gateway_key_spend_usd{caller="tenth",period="day"} 0.1' in scrape
    assert 'image_gateway_key_budget_usd{caller="tenth",period="day"} 0.1' in scrape


async def test_a_failed_call_spends_nothing(vendors: Vendors, tmp_path: Path) -> None:
    from tests.emulators.common import Fault

    path, secrets = keys(tmp_path, tight={"budget_monthly_usd": 0.08})
    settings = vendors.settings(callers={"keys_file": path}, state={"data_dir": tmp_path / "s"})
    body = {"provider": "venice", "image": b64_png(300, 300), "scale": 3}
    vendors.venice.state.add_fault(Fault("status", status=500, path="/image/upscale", times=1))
    async with gateway(settings) as client:
        failed = await client.post("/v1/upscale", json=body, headers=bearer(secrets["tight"]))
        ok = await client.post("/v1/upscale", json=body, headers=bearer(secrets["tight"]))
        usage = await client.get("/v1/usage", headers=bearer(secrets["tight"]))
    assert failed.status_code == 502 and ok.status_code == 200  # the 500 reserved, then gave back
    assert usage.json()["keys"][0]["requests"] == 1


async def test_usage_sums_the_costs_per_key_provider_and_model(
    vendors: Vendors, tmp_path: Path
) -> None:
    path, secrets = keys(tmp_path, alice={}, bob={}, ops={"admin": True})
    settings = vendors.settings(callers={"keys_file": path}, state={"data_dir": tmp_path / "s"})
    calls = [
        ("alice", "/v1/upscale", {"provider": "venice", "image": b64_png(300, 300), "scale": 3}),
        ("alice", "/v1/upscale", {"provider": "venice", "image": b64_png(300, 300), "scale": 2}),
        ("alice", "/v1/upscale", {"provider": "venice", "image": b64_png(300, 300), "scale": 2}),
        ("alice", "/v1/generate", {"provider": "venice", "prompt": "a fox", "n": 3}),
        ("alice", "/v1/generate", {"provider": "deepimage", "prompt": "a fox"}),
        ("bob", "/v1/generate", {"provider": "vertex", "prompt": "a fox", "n": 2,
                                 "model": "gemini-3.1-flash-image"}),
        ("bob", "/v1/upscale", {"provider": "local", "image": SMALL}),
    ]  # fmt: skip
    async with gateway(settings) as client:
        costs: dict[str, float] = Counter()
        for who, url, body in calls:
            answer = await client.post(url, json=body, headers=bearer(secrets[who]))
            assert answer.status_code == 200, answer.text
            costs[who] += answer.json()["cost"]["usd"]
        own = await client.get("/v1/usage", headers=bearer(secrets["alice"]))
        everyone = await client.get("/v1/usage", headers=bearer(secrets["ops"]))
        one = await client.get("/v1/usage?key=bob", headers=bearer(secrets["ops"]))
        other = await client.get("/v1/usage?key=bob", headers=bearer(secrets["alice"]))
        nobody = await client.get("/v1/usage")
        later = await client.get(
            "/v1/usage?start=2099-01-01T00:00:00&end=2099-02-01T00:00:00",
            headers=bearer(secrets["alice"]),
        )
        number = await client.get("/v1/usage?start=0.5", headers=bearer(secrets["alice"]))
        backwards = await client.get(
            "/v1/usage?start=2026-02-01T00:00:00Z&end=2026-01-01T00:00:00Z",
            headers=bearer(secrets["alice"]),
        )
    assert own.status_code == 200, own.text
    [mine] = own.json()["keys"]
    assert mine["key"] == "alice" and mine["requests"] == 5 and mine["images"] == 7
    assert mine["usd"] == pytest.approx(costs["alice"])
    assert mine["usd"] == pytest.approx(0.08 + 0.02 * 2 + 0.03 + 0.08)
    lines = {(line["provider"], line["model"]): line for line in mine["by_model"]}
    assert lines[("venice", "upscaler")] == {
        "provider": "venice", "model": "upscaler", "operation": "upscale",
        "requests": 3, "images": 3, "usd": 0.12,
    }  # fmt: skip
    assert lines[("venice", "venice-sd35")]["images"] == 3
    assert lines[("deepimage", "realistic")]["usd"] == 0.08
    report = everyone.json()
    assert [k["key"] for k in report["keys"]] == ["alice", "bob", "ops"]
    assert report["usd"] == pytest.approx(costs["alice"] + costs["bob"])
    assert report["usd"] == pytest.approx(0.23 + 0.1344)  # 2 x 1120 tokens x $60/1M
    bob = one.json()["keys"][0]
    assert [(m["model"], m["images"], m["usd"]) for m in bob["by_model"]] == [
        ("lanczos", 1, 0.0),
        ("gemini-3.1-flash-image", 2, 0.1344),
    ]
    assert other.status_code == 404 and other.json()["code"] == "not_found"
    assert nobody.status_code == 401
    assert later.json()["keys"][0]["requests"] == 0, later.text
    assert backwards.status_code == 422
    assert number.status_code == 400 and number.json()["errors"][0]["loc"] == ["query", "start"]


async def test_usage_needs_caller_keys() -> None:
    async with gateway(make_settings()) as client:
        response = await client.get("/v1/usage")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
