import base64
import io

import pytest
from PIL import Image

from app import images
from app.errors import InvalidRequest, UnsupportedMediaType, ValidationFailed
from tests.conftest import png_bytes
from tests.images_corpus import BMP, GIF, TEXT, TIFF, png_claiming


def encoded(fmt: str, size: tuple[int, int] = (37, 21), **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (encoded("PNG"), "png"),
        (encoded("JPEG"), "jpeg"),
        (encoded("JPEG", progressive=True), "jpeg"),
        (encoded("WEBP", lossless=False), "webp"),
        (encoded("WEBP", lossless=True), "webp"),
    ],
)
def test_sniff_reads_format_and_size_from_the_header(data: bytes, fmt: str) -> None:
    info = images.sniff(data)
    assert (info.format, info.width, info.height, info.size) == (fmt, 37, 21, len(data))


def test_sniff_reads_extended_webp_canvas() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (300, 170), (1, 2, 3, 100)).save(buffer, format="WEBP", exif=b"Exif\x00\x00")
    info = images.sniff(buffer.getvalue())
    assert (info.format, info.width, info.height) == ("webp", 300, 170)


@pytest.mark.parametrize(("data", "name"), [(GIF, "gif"), (BMP, "bmp"), (TIFF, "tiff")])
def test_other_formats_are_unsupported(data: bytes, name: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=name):
        images.sniff(data)


def test_text_is_unsupported() -> None:
    with pytest.raises(UnsupportedMediaType):
        images.sniff(TEXT)


@pytest.mark.parametrize(
    "data",
    [b"", png_bytes()[:20], png_bytes()[:-12], encoded("JPEG")[:10], encoded("WEBP")[:18]],
    ids=["empty", "png-header-cut", "png-no-iend", "jpeg-cut", "webp-cut"],
)
def test_damaged_or_empty_images_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidRequest):
        images.sniff(data)


def test_a_huge_claimed_size_is_refused_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a decoder was called")

    monkeypatch.setattr("PIL.Image.open", no_decoding)
    bomb = png_claiming(100_000, 100_000)
    info = images.sniff(bomb)  # header arithmetic only
    with pytest.raises(ValidationFailed) as caught:
        images.guard(info)
    assert (
        caught.value.errors[0].limit == f"gateway: input must be <= {images.GATEWAY_MAX_PIXELS} px"
    )


def test_base64_raw_and_data_uri() -> None:
    data = png_bytes()
    text = base64.b64encode(data).decode()
    assert images.decode_base64_image(text) == (data, text)
    assert images.decode_base64_image("data:image/png;base64," + text) == (data, text)
    assert images.decode_base64_image("data:image/JPEG;base64," + text)[0] == data


@pytest.mark.parametrize(
    "text",
    [
        "not base64!",
        "aGVsbG8",
        "aGVs bG8=",
        "data:text/plain;base64,aGVsbG8=",
        "data:image/png,aGVsbG8=",
        "data:;base64,aGVsbG8=",
        "",
    ],
)
def test_bad_base64_is_invalid(text: str) -> None:
    with pytest.raises(InvalidRequest):
        images.decode_base64_image(text)


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")])
def test_base64_header_sniff_reads_a_prefix_only(fmt: str, name: str) -> None:
    data = encoded(fmt, size=(640, 360))
    text = base64.b64encode(data).decode()
    prefix = min(4096, len(text) - 4)  # the garbage after it is never read
    info = images.sniff_base64_header(text + "!!!not even base64", chars=prefix)
    assert (info is not None) and (info.format, info.width, info.height) == (name, 640, 360)
    exact = images.sniff_base64_header(text)
    assert exact is not None and exact.size == len(data)


def test_base64_header_sniff_of_non_images() -> None:
    assert images.sniff_base64_header(base64.b64encode(GIF).decode()) is None
    assert images.sniff_base64_header("not base64 at all") is None
    big_exif = encoded("JPEG", size=(50, 40), exif=b"Exif\x00\x00" + b"\x00" * 60000)
    info = images.sniff_base64_header(base64.b64encode(big_exif).decode(), chars=1024)
    assert info is not None and (info.format, info.width) == ("jpeg", 0)  # size lies further


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animated_images_are_refused_from_the_header(fmt: str) -> None:
    from tests.images_corpus import animated

    info = images.sniff(animated(fmt))
    assert info.animated
    with pytest.raises(ValidationFailed, match="animated") as caught:
        images.guard(info)
    assert caught.value.errors[0].limit == "gateway: image must be still"
    assert not images.sniff(encoded(fmt)).animated


def test_a_png_zip_polyglot_is_named_as_such() -> None:
    from tests.images_corpus import zip_archive

    data = encoded("PNG") + zip_archive()
    extra = len(zip_archive())
    with pytest.raises(InvalidRequest, match=f"followed by {extra} bytes of other data"):
        images.sniff(data)
    text = base64.b64encode(data)
    with pytest.raises(InvalidRequest, match=f"followed by {extra} bytes of other data"):
        images.inspect_base64_span(text, 0, len(text))
    with pytest.raises(InvalidRequest, match="truncated"):
        images.sniff(encoded("PNG")[:-12])
