"""The local provider: limits, encodings, image modes, and its bounded CPU pool."""

import asyncio
import base64
import io

import pytest
from PIL import Image

from app.domain import CallContext, Deadline, GenerateJob, InputImage, UpscaleJob
from app.errors import InvalidRequest, ProviderUnavailable, ValidationFailed
from app.images import sniff
from app.providers.local import LocalCall, LocalProvider
from app.schemas import GenerateParams, UpscaleParams
from tests.conftest import make_settings, png_bytes

pytestmark = pytest.mark.anyio


def job(data: bytes, **params: object) -> UpscaleJob:
    return UpscaleJob(
        params=UpscaleParams.model_validate(params), image=InputImage(data, sniff(data))
    )


def ctx(seconds: float = 30) -> CallContext:
    return CallContext(request_id="t", deadline=Deadline(seconds))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA"])
async def test_modes_survive_the_round_trip(mode: str) -> None:
    provider = LocalProvider(make_settings())
    data = png_bytes(16, 12, mode=mode)
    result = await provider.execute(provider.prepare(job(data, scale=3)), ctx())
    [image] = result.images
    decoded = Image.open(io.BytesIO(image.as_bytes()))
    assert decoded.size == (48, 36) == (image.width, image.height)
    assert base64.b64decode(image.as_base64()) == image.as_bytes()


async def test_rgba_to_jpeg_drops_alpha() -> None:
    provider = LocalProvider(make_settings())
    call = provider.prepare(job(png_bytes(10, 10, mode="RGBA"), scale=2, output={"format": "jpeg"}))
    [image] = (await provider.execute(call, ctx())).images
    assert image.mime_type == "image/jpeg"
    assert Image.open(io.BytesIO(image.as_bytes())).mode == "RGB"


def test_generate_is_refused() -> None:
    provider = LocalProvider(make_settings())
    with pytest.raises(ValidationFailed, match="local: operation must be upscale"):
        provider.prepare(GenerateJob(params=GenerateParams(prompt="x")))


def test_input_over_the_pixel_limit_is_refused_from_the_header() -> None:
    from tests.images_corpus import png_claiming

    provider = LocalProvider(make_settings())
    with pytest.raises(ValidationFailed) as caught:
        provider.prepare(job(png_claiming(5000, 4000), scale=2))
    assert "local: input must be <= 16777216 px" in [e.limit for e in caught.value.errors]


async def test_undecodable_pixels_are_400_not_500() -> None:
    from tests.images_corpus import png_claiming

    provider = LocalProvider(make_settings())
    call = provider.prepare(job(png_claiming(64, 64), scale=2))  # header fine, pixel data bogus
    with pytest.raises(InvalidRequest, match="could not be decoded"):
        await provider.execute(call, ctx())


async def test_busy_pool_answers_503_after_the_bounded_wait() -> None:
    provider = LocalProvider(make_settings(local={"max_concurrency": 1, "queue_timeout_s": 0.05}))
    call = provider.prepare(job(png_bytes(8, 8), scale=2))
    assert isinstance(call, LocalCall)
    await provider._slots.acquire()  # another upscale holds the only slot
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await provider.execute(call, ctx())
    finally:
        provider._slots.release()
    assert caught.value.retry_after == 1
    assert (await provider.execute(call, ctx())).images  # and the slot works again


async def test_work_runs_off_the_event_loop() -> None:
    provider = LocalProvider(make_settings(local={"max_concurrency": 2}))
    call = provider.prepare(job(png_bytes(400, 300), scale=4))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await provider.execute(call, ctx())
    task.cancel()
    assert ticks > 10  # the loop kept turning while Pillow resampled in a thread
