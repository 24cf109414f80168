"""The pixel work, in process: exact sizes, alpha, EXIF orientation, and no seams between
strips. (The worker process around it is tested in test_pool.py.)"""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageStat

from app.esrgan import engine
from app.esrgan.engine import Engine, Order
from tests.esrgan.photos import encode, photo


@pytest.fixture(scope="module")
def ai() -> Engine:
    return Engine(gpu=None)


def order(data: bytes, model: str = "realesr-animevideov3", **fields: object) -> Order:
    values: dict[str, object] = {
        "scale": None,
        "width": None,
        "height": None,
        "format": "png",
        "quality": None,
        "max_output_pixels": 1 << 26,
    }
    values.update(fields)
    return Order(data=data, model=model, **values)  # type: ignore[arg-type]


def decoded(result: engine.Result) -> Image.Image:
    image = Image.open(io.BytesIO(result.data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("fields", "size", "native"),
    [
        ({"scale": 2}, (96, 64), 2),
        ({"scale": 3}, (144, 96), 3),
        ({"scale": 4}, (192, 128), 4),
        ({"scale": 2.2}, (106, 70), 2),  # nearest net, then Lanczos to the exact size
        ({"scale": 2.5}, (120, 80), 3),
        ({"scale": 6}, (288, 192), 4),
        ({"width": 101}, (101, 67), 2),
        ({"height": 150}, (225, 150), 4),
    ],
)
def test_photo_reaches_the_exact_size(
    ai: Engine, fields: dict[str, object], size: tuple[int, int], native: int
) -> None:
    result = ai.run(order(encode(photo(48, 32)), **fields))
    assert decoded(result).size == size == (result.width, result.height)
    assert result.native_scale == native


def test_alpha_is_kept_and_upscaled_with_lanczos(ai: Engine) -> None:
    rgba = photo(40, 40).convert("RGBA")
    mask = Image.new("L", (40, 40), 0)
    mask.paste(255, (10, 10, 30, 30))
    rgba.putalpha(mask)
    image = decoded(ai.run(order(encode(rgba), scale=2)))
    assert image.mode == "RGBA" and image.size == (80, 80)
    expected = mask.resize((80, 80), Image.Resampling.LANCZOS)
    assert ImageChops.difference(image.getchannel("A"), expected).getbbox() is None


def test_grayscale_stays_grayscale(ai: Engine) -> None:
    image = decoded(ai.run(order(encode(photo(32, 32, mode="L")), scale=2)))
    assert image.mode == "L" and image.size == (64, 64)


def test_exif_orientation_is_applied_before_the_size_is_worked_out(ai: Engine) -> None:
    upright = photo(24, 40)  # portrait as displayed
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 40x24 as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)
    image = decoded(ai.run(order(data, width=48)))
    assert image.size == (48, 80)  # width of the displayed image, aspect kept
    # the top of the displayed photo is where the top of the result is
    reference = upright.resize((48, 80), Image.Resampling.LANCZOS)
    mean = ImageStat.Stat(ImageChops.difference(image, reference)).mean
    assert max(mean) < 20


def test_jpeg_output_drops_alpha(ai: Engine) -> None:
    rgba = photo(20, 20).convert("RGBA")
    result = ai.run(order(encode(rgba), scale=2, format="jpeg", quality=80))
    assert decoded(result).mode == "RGB"


@pytest.mark.parametrize("picture", ["gradient", "photo"])
def test_strips_leave_no_seam(ai: Engine, monkeypatch: pytest.MonkeyPatch, picture: str) -> None:
    """Upscaled in 16-row strips, the picture matches the same network run over it in one
    pass (ncnn's own tile is larger than the picture): the strips' context rows hide every
    boundary. (animevideov3 bands smooth gradients by itself, in both passes alike.)"""
    if picture == "gradient":
        gradient = Image.linear_gradient("L").resize((64, 96))
        rgb = Image.merge("RGB", [gradient, gradient.rotate(90).resize((64, 96)), gradient])
    else:
        rgb = photo(64, 96)
    whole = ai.upscale_rgb(rgb, "realesr-animevideov3", 2)
    monkeypatch.setattr(engine, "STRIP_ROWS", 16)
    strips = ai.upscale_rgb(rgb, "realesr-animevideov3", 2)
    difference = ImageStat.Stat(ImageChops.difference(whole, strips))
    assert max(difference.extrema[c][1] for c in range(3)) <= 2


def test_undecodable_pixels_are_a_decode_error(ai: Engine) -> None:
    from tests.images_corpus import png_claiming

    with pytest.raises(engine.DecodeError):
        ai.run(order(png_claiming(64, 64), scale=2))


def test_output_limit_is_checked_on_the_displayed_size(ai: Engine) -> None:
    with pytest.raises(engine.TooLarge):
        ai.run(order(encode(photo(40, 30)), scale=4, max_output_pixels=100 * 100))
