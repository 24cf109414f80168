"""The price table as data, how it is applied, operator overrides, and the cost of real
calls through the gateway to each vendor's emulator."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app import metrics
from app.domain import Operation
from app.main import create_app
from app.providers import deepimage_limits, vertex_limits
from app.providers.pricing import CallFacts, Price, PriceTable, PriceTier, apply
from app.providers.registry import price_table
from app.providers.venice_limits import UPSCALE_MODEL
from tests.callers.vendors import Vendors, vendor_emulators
from tests.conftest import gateway, make_settings

TABLE = price_table(make_settings())


def test_every_row_says_where_its_figure_comes_from() -> None:
    assert TABLE.rows
    for row in TABLE.rows.values():
        assert row.source and row.read_on.year >= 2026 and row.depends_on
        assert all(t.usd >= 0 for t in row.tiers)


def every_model() -> Iterator[tuple[str, str, Operation]]:
    for row in vertex_limits.LIMITS:
        for op in row.operations:
            yield "vertex", row.model, op
    for row in deepimage_limits.LIMITS:
        for op in row.operations:
            yield "deepimage", row.model, op
    yield "venice", UPSCALE_MODEL, Operation.UPSCALE
    yield "venice", "venice-sd35", Operation.GENERATE
    yield "local", "lanczos", Operation.UPSCALE


@pytest.mark.parametrize(("provider", "model", "operation"), list(every_model()))
def test_every_model_of_every_provider_has_a_price(
    provider: str, model: str, operation: Operation
) -> None:
    assert TABLE.find(provider, model, operation.value) is not None


def test_tiers_follow_the_scale_and_the_image_size() -> None:
    venice = TABLE.find("venice", UPSCALE_MODEL, "upscale")
    assert venice is not None and venice.confirmed
    assert apply(venice, CallFacts(scale=2.0)).usd == 0.02
    assert apply(venice, CallFacts(scale=1.0)).usd == 0.02
    assert apply(venice, CallFacts(scale=2.5)).usd == 0.08
    assert apply(venice, CallFacts(scale=4.0)).basis.startswith("1 image(s) x $0.08")
    pro = TABLE.find("vertex", "gemini-3-pro-image", "generate")
    assert pro is not None and not pro.confirmed
    assert apply(pro, CallFacts(image_size="2K")).usd == pytest.approx(0.1344)
    assert apply(pro, CallFacts(image_size="4K", images=2)).usd == pytest.approx(0.48)
    reported = apply(pro, CallFacts(image_size="4K", output_tokens=1500))
    assert reported.usd == pytest.approx(0.18) and "1500 output tokens (reported)" in reported.basis
    assert "UNCONFIRMED" in reported.basis
    imagen = TABLE.find("vertex", "imagen-3.0-generate-002", "generate")
    assert imagen is not None and apply(imagen, CallFacts(images=3)).usd == pytest.approx(0.12)


def test_unknown_rows_cost_nothing_and_say_so() -> None:
    cost = PriceTable([]).cost("venice", "x", "generate", CallFacts())
    assert cost.usd == 0 and "no price" in cost.basis


def override(tmp_path: Path, rows: Any) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(rows))
    return path


def test_the_operator_overrides_a_row(tmp_path: Path) -> None:
    row = {
        "provider": "venice",
        "model": UPSCALE_MODEL,
        "operation": "upscale",
        "tiers": [{"usd": 0.015}],
        "source": "our contract 2026-10",
        "read_on": "2026-10-01",
        "confirmed": True,
    }
    table = price_table(make_settings(pricing={"file": override(tmp_path, [row])}))
    found = table.find("venice", UPSCALE_MODEL, "upscale")
    assert found == Price.model_validate(row)
    assert table.cost("venice", UPSCALE_MODEL, "upscale", CallFacts(scale=4)).usd == 0.015
    assert table.find("venice", "*", "generate") == TABLE.find("venice", "*", "generate")


@pytest.mark.parametrize(
    ("rows", "message"),
    [([{"provider": "venice"}], "0.model"), ({"not": "a list"}, "valid array"), ([{
        "provider": "venice", "model": "*", "operation": "upscale", "tiers": [],
        "source": "s", "read_on": "2026-01-01"}], "tiers")],
)  # fmt: skip
def test_a_bad_price_file_fails_at_start(tmp_path: Path, rows: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_app(make_settings(pricing={"file": override(tmp_path, rows)}))


def test_tier_without_condition_matches_anything() -> None:
    tier = PriceTier(usd=1.0)
    assert tier.matches(CallFacts()) and tier.describe() == "any"


# --------------------------------------------------------------------------- real calls


@pytest.fixture(scope="module")
def vendors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vendors]:
    with vendor_emulators(tmp_path_factory.mktemp("sa")) as running:
        yield running


def b64_png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 200)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def counter(provider: str, model: str, operation: str, caller: str = "anonymous") -> float:
    labels = {"provider": provider, "model": model, "operation": operation, "caller": caller}
    return metrics.COST_USD.labels(**labels)._value.get()  # type: ignore[attr-defined, no-any-return]


# (path, body, provider, model, usd, what the basis says)
CALLS: list[tuple[str, dict[str, Any], str, str, float, str]] = [
    ("/v1/upscale", {"provider": "venice", "image": b64_png(256, 256), "scale": 2},
     "venice", "upscaler", 0.02, "1 image(s) x $0.02"),
    # Venice lowers a scale of 4 to fit 16,777,216 px: 2048 px becomes 4096, scale 2, $0.02.
    ("/v1/upscale", {"provider": "venice", "image": b64_png(2048, 2048), "scale": 4},
     "venice", "upscaler", 0.02, "scale <= 2"),
    ("/v1/upscale", {"provider": "venice", "image": b64_png(300, 300), "scale": 3},
     "venice", "upscaler", 0.08, "1 image(s) x $0.08"),
    ("/v1/generate", {"provider": "venice", "prompt": "a fox", "n": 2},
     "venice", "venice-sd35", 0.02, "2 image(s) x $0.01"),
    ("/v1/upscale", {"provider": "deepimage", "image": b64_png(64, 48), "scale": 2},
     "deepimage", "v1", 0.08, "1 image(s) x $0.08"),
    ("/v1/generate", {"provider": "deepimage", "prompt": "a fox"},
     "deepimage", "realistic", 0.08, "1 image(s) x $0.08"),
    ("/v1/generate", {"provider": "vertex", "prompt": "a fox", "n": 3,
                      "model": "gemini-3.1-flash-image"},
     "vertex", "gemini-3.1-flash-image", 0.2016, "3360 output tokens (reported)"),
    ("/v1/upscale", {"provider": "vertex", "image": b64_png(64, 48), "scale": 4,
                     "model": "imagen-4.0-upscale-preview"},
     "vertex", "imagen-4.0-upscale-preview", 0.06, "1 image(s) x $0.06"),
    ("/v1/upscale", {"provider": "local", "image": b64_png(64, 48), "scale": 2},
     "local", "lanczos", 0.0, "1 image(s) x $0"),
]  # fmt: skip


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body", "provider", "model", "usd", "basis"),
    CALLS,
    ids=[f"{c[2]}-{c[4]}" for c in CALLS],
)
async def test_the_cost_of_each_vendor_call(
    vendors: Vendors,
    path: str,
    body: dict[str, Any],
    provider: str,
    model: str,
    usd: float,
    basis: str,
) -> None:
    before = counter(provider, model, path.rsplit("/", 1)[1])
    async with gateway(vendors.settings()) as client:
        response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["provider"], answer["model"]) == (provider, model)
    assert answer["cost"]["usd"] == pytest.approx(usd) and basis in answer["cost"]["basis"]
    assert response.headers["x-image-gateway-cost-usd"] == f"{usd:.6f}"
    assert counter(provider, model, path.rsplit("/", 1)[1]) - before == pytest.approx(usd)


@pytest.mark.anyio
async def test_the_cost_header_comes_with_raw_image_answers(vendors: Vendors) -> None:
    async with gateway(vendors.settings()) as client:
        response = await client.post(
            "/v1/upscale",
            json={"provider": "venice", "image": b64_png(256, 256), "scale": 4},
            headers={"accept": "image/png"},
        )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-image-gateway-cost-usd"] == "0.080000"
