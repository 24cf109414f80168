"""Faithful pixels through the local provider: orientation, 16-bit, CMYK, ICC, answer cap."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image, ImageCms

from app.domain import CallContext, Deadline, InputImage, UpscaleJob
from app.errors import ValidationFailed
from app.images import sniff
from app.providers.local import LocalProvider
from app.schemas import UpscaleParams
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


async def upscale(data: bytes, **params: object) -> Image.Image:
    provider = LocalProvider(make_settings(**params.pop("settings", {})))  # type: ignore[arg-type]
    job = UpscaleJob(UpscaleParams.model_validate(params), InputImage(data, sniff(data)))
    result = await provider.execute(provider.prepare(job), CallContext("t", Deadline(30)))
    [image] = result.images
    decoded = Image.open(io.BytesIO(image.as_bytes()))
    assert decoded.size == (image.width, image.height)
    return decoded


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def sideways_photo() -> bytes:
    """Stored 40x20 with a red left half; EXIF orientation 6 says "turn 90 degrees
    clockwise to view", so the viewer sees a 20x40 portrait with red on top."""
    image = Image.new("RGB", (40, 20), "blue")
    image.paste("red", (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
async def test_exif_orientation_is_applied_and_the_tag_reset(fmt: str) -> None:
    out = await upscale(sideways_photo(), scale=2, output={"format": fmt})
    assert out.size == (40, 80)  # portrait, as the caller's viewer showed it
    red, blue = out.convert("RGB").getpixel((20, 10)), out.convert("RGB").getpixel((20, 70))
    assert red[0] > 200 > red[2] and blue[2] > 200 > blue[0]
    assert out.getexif().get(0x0112, 1) == 1  # no viewer turns it a second time


async def test_a_width_target_means_the_width_the_caller_sees() -> None:
    out = await upscale(sideways_photo(), width=60)
    assert out.size == (60, 120)


async def test_sixteen_bit_grey_keeps_its_depth_in_png() -> None:
    data = encode(Image.new("I;16", (8, 8), 32768), "PNG")
    out = await upscale(data, scale=2)
    assert out.mode == "I;16" and out.getpixel((5, 5)) == 32768


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
async def test_sixteen_bit_grey_is_scaled_not_clipped_to_eight_bits(fmt: str) -> None:
    data = encode(Image.new("I;16", (8, 8), 32768), "PNG")
    out = await upscale(data, scale=2, output={"format": fmt})
    value = out.convert("L").getpixel((5, 5))
    assert isinstance(value, int) and 125 <= value <= 130  # mid-grey, not white


async def test_cmyk_jpeg_asked_for_png_is_converted_to_rgb() -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")  # pure red ink
    out = await upscale(data, scale=2, output={"format": "png"})
    r, g, b = out.convert("RGB").getpixel((8, 8))  # type: ignore[misc]
    assert out.mode == "RGB" and r > 200 and g < 60 and b < 60


async def test_cmyk_stays_cmyk_in_jpeg() -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")
    out = await upscale(data, scale=2)
    assert out.mode == "CMYK"


@pytest.mark.parametrize("source", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
async def test_icc_profile_is_kept_on_every_output_format(source: str, fmt: str) -> None:
    data = encode(Image.new("RGB", (16, 16), "teal"), source, icc_profile=SRGB)
    out = await upscale(data, scale=2, output={"format": fmt})
    assert out.info.get("icc_profile") == SRGB


async def test_the_answer_is_never_built_past_its_maximum() -> None:
    noise = Image.frombytes("RGB", (256, 256), os.urandom(256 * 256 * 3))
    with pytest.raises(ValidationFailed) as caught:
        await upscale(
            encode(noise, "PNG"), scale=2, settings={"local": {"max_answer_bytes": 100_000}}
        )
    [error] = caught.value.errors
    assert error.limit is not None and "answer must be <= 100000 bytes" in error.limit
