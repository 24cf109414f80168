"""Faithful pixels for every path that decodes and re-encodes an image on this machine
(the ``local`` provider's Lanczos path today; any other local model can reuse it).

- EXIF orientation is applied to the pixels and the tag reset to 1, so a portrait photo
  stays portrait and no viewer rotates it a second time.
- 16-bit greyscale keeps its 16 bits in PNG and is scaled (not clipped) to 8 bits for
  JPEG and WebP; CMYK becomes RGB through its ICC profile where the output has no CMYK.
- The ICC profile is written on every output format that carries one (PNG, JPEG, WebP)
  whenever the pixels are still in the profile's colour space.
- Encoding stops as soon as the answer would pass ``max_bytes``: no answer larger than
  the configured maximum is ever built.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from app.errors import FieldError, InvalidRequest, ValidationFailed

_DEFAULT_QUALITY = {"jpeg": 90, "webp": 90}
_EXIF_ORIENTATION = 0x0112
#: Orientations 5-8 turn the stored image by 90 degrees: width and height swap.
_SWAPPING = frozenset({5, 6, 7, 8})
#: Modes each output format stores as they are; anything else is converted first.
_NATIVE = {
    "png": frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}),
    "jpeg": frozenset({"L", "RGB", "CMYK"}),
    "webp": frozenset({"RGB", "RGBA"}),
}
_SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I"})
#: Colour space of the pixels per mode, as an ICC profile names it.
_SPACE = {"L": "GRAY", "LA": "GRAY", "RGB": "RGB", "RGBA": "RGB", "CMYK": "CMYK", "I;16": "GRAY"}
DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)


@dataclass(frozen=True, slots=True)
class Encoded:
    data: bytes
    width: int
    height: int


def orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) from the header alone; 1 when absent or unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(width: int, height: int, orientation_tag: int) -> tuple[int, int]:
    """The size as a viewer shows it, once the orientation is applied."""
    return (height, width) if orientation_tag in _SWAPPING else (width, height)


def decode_upright(data: bytes) -> Image.Image:
    """Decode all pixels, with the EXIF orientation applied and reset."""
    try:
        with Image.open(io.BytesIO(data)) as source:
            source.load()
            image = ImageOps.exif_transpose(source) or source.copy()
    except DECODE_ERRORS as exc:
        raise InvalidRequest(
            f"the image could not be decoded: {type(exc).__name__}",
            errors=[FieldError(("image",), "undecodable image")],
        ) from None
    return image


def for_output(image: Image.Image, fmt: str) -> Image.Image:
    """The image in a mode ``fmt`` stores faithfully (resample after this, never before
    a palette is expanded: palettes do not interpolate)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT:
        return _sixteen_bit(image, fmt)
    if mode == "CMYK" and fmt != "jpeg":
        return _cmyk_to_rgb(image)
    if mode in ("P", "PA", "1", "La", "RGBa", "RGBX") or mode not in _NATIVE[fmt]:
        return _convert(image, fmt)
    return image


def _sixteen_bit(image: Image.Image, fmt: str) -> Image.Image:
    if fmt == "png":
        return image if image.mode == "I;16" else image.convert("I;16")
    wide = image if image.mode == "I" else image.convert("I")
    # 16-bit to 8-bit is a division by 257, not a clip at 255 (which turns mid-grey white).
    eight = wide.point(lambda v: v * (1 / 257)).convert("L")
    eight.info = dict(image.info)
    return eight.convert("RGB") if fmt == "webp" else eight


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            if converted is not None:
                converted.info = {k: v for k, v in image.info.items() if k != "icc_profile"}
                return converted
        except (ImageCms.PyCMSError, OSError):
            pass
    return image.convert("RGB")


def _convert(image: Image.Image, fmt: str) -> Image.Image:
    has_alpha = "A" in image.mode or "a" in image.mode or "transparency" in image.info
    if fmt == "jpeg":
        target = "L" if image.mode in ("1", "L", "LA", "La") else "RGB"
    elif image.mode in ("1", "L", "LA", "La") and fmt == "png":
        target = "LA" if has_alpha else "L"
    else:
        target = "RGBA" if has_alpha else "RGB"
    converted = image.convert(target)
    converted.info = dict(image.info)
    return converted


def encode(image: Image.Image, fmt: str, quality: int | None, max_bytes: int) -> bytes:
    """Encode with the ICC profile and EXIF kept; refuse once the answer passes
    ``max_bytes`` (the encoder is stopped there, the rest is never built)."""
    sink = _CappedSink(max_bytes)
    try:
        image.save(sink, format=fmt.upper(), **_save_options(image, fmt, quality))
    except _TooLarge:
        raise ValidationFailed(
            f"the {fmt} answer would be larger than {max_bytes} bytes",
            errors=[
                FieldError(
                    ("output", "format"),
                    f"the encoded {fmt} passed {max_bytes} bytes",
                    f"local: answer must be <= {max_bytes} bytes "
                    "(ask for jpeg or webp, or a smaller scale)",
                )
            ],
        ) from None
    return sink.getvalue()


def _save_options(image: Image.Image, fmt: str, quality: int | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if fmt != "png":
        options["quality"] = quality if quality is not None else _DEFAULT_QUALITY[fmt]
    icc = image.info.get("icc_profile")
    if icc and _profile_space(icc) == _SPACE.get(image.mode):
        options["icc_profile"] = icc
    exif = image.getexif()
    if exif:
        exif[_EXIF_ORIENTATION] = 1
        options["exif"] = exif.tobytes()
    return options


def _profile_space(icc: bytes) -> str | None:
    # ICC header: the data colour space signature is bytes 16-19 ("RGB ", "GRAY", "CMYK").
    return icc[16:20].decode("latin-1").strip() if len(icc) >= 20 else None


class _TooLarge(Exception):
    pass


class _CappedSink(io.BytesIO):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.limit:
            raise _TooLarge
        return super().write(data)
