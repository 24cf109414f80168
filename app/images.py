"""Image intake: strict base64, format sniffing, header dimensions, byte and pixel guards.

Nothing here decodes pixels. The format comes from magic bytes (never from a filename or
a Content-Type), width and height from the format's header, so a PNG that claims
100000x100000 is refused in microseconds, before any decoder sees it.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from app import codec
from app.errors import (
    FieldError,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)

MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

#: Whatever a caller sends, the gateway itself never decodes more than this many pixels.
GATEWAY_MAX_PIXELS = 16384 * 16384

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_DATA_URI = re.compile(r"^data:(image/(?:png|jpeg|jpg|webp))?;base64,", re.IGNORECASE)
_OTHER_FORMATS = (
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"\x00\x00\x01\x00", "ico"),
    (b"%PDF", "pdf"),
)
# JPEG start-of-frame markers carry the dimensions (all SOFn except DHT/JPG/DAC).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str
    width: int
    height: int
    size: int
    #: Animated WebP (VP8X animation flag) or APNG (an acTL chunk before the pixel data).
    animated: bool = False

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.format]

    @property
    def pixels(self) -> int:
        return self.width * self.height


def data_uri_length(text: str, field: str = "image") -> int:
    """How many leading characters a ``data:image/...;base64,`` prefix takes (0 if none);
    any other data: URI is refused."""
    if not text.startswith("data:"):
        return 0
    match = _DATA_URI.match(text)
    if match is None or match.group(1) is None:
        raise InvalidRequest(
            f"{field}: a data URI must start with data:image/png;base64, "
            "data:image/jpeg;base64, or data:image/webp;base64,",
            errors=[FieldError((field,), "unsupported data URI prefix")],
        )
    return match.end()


def decode_base64_image(text: str, field: str = "image") -> tuple[bytes, str]:
    """Strictly decode a raw base64 string or a ``data:image/...;base64,`` URI.

    Returns the bytes and the bare base64 text (without a data: prefix), so that the text
    can be forwarded to vendors that want base64 without encoding it again.
    """
    text = text[data_uri_length(text, field) :]
    if not text:
        raise _empty(field)
    try:
        data = codec.decode_strict(text)
    except codec.InvalidBase64:
        raise _invalid_base64(field) from None
    return data, text


#: Base64 is validated this many characters at a time, so no image-sized buffer is made.
_VALIDATE_CHARS = 1 << 20
#: Enough of the decoded start for any png/webp header and nearly every jpeg one.
_HEAD_BYTES = 1 << 16


def inspect_base64_span(body: bytes, start: int, end: int, field: str = "image") -> ImageInfo:
    """Strictly validate the base64 in ``body[start:end]`` and sniff the image it encodes,
    without decoding it whole: chunk by chunk, keeping only the head and the tail."""
    length = end - start
    if length == 0:
        raise _empty(field)
    # Padding may only close the text; chunks are validated separately, so check it here.
    if length % 4 or body.find(b"=", start, end - 2) != -1:
        raise _invalid_base64(field)
    view = memoryview(body)
    head, tail, iend = b"", b"", -1
    for offset in range(start, end, _VALIDATE_CHARS):
        try:
            part = codec.decode_strict(view[offset : min(offset + _VALIDATE_CHARS, end)])
        except codec.InvalidBase64:
            raise _invalid_base64(field) from None
        if len(head) < _HEAD_BYTES:
            head += part
        seen = (tail + part).rfind(_PNG_IEND)
        if seen != -1:
            iend = (offset - start) * 3 // 4 - len(tail) + seen
        tail = part[-16:] if len(part) >= 16 else (tail + part)[-16:]
    size = length * 3 // 4 - (body[end - 2 : end].count(b"="))
    try:
        info = _sniff_header(head)
    except InvalidRequest:
        if len(head) >= size:
            raise
        info = _sniff_header(codec.decode_strict(view[start:end]))  # a JPEG header further in
    if info.format == "png" and not tail.endswith(_PNG_IEND):
        raise _png_end_error(iend, size)
    return ImageInfo(info.format, info.width, info.height, size, info.animated)


def _empty(field: str) -> InvalidRequest:
    return InvalidRequest(f"{field} is empty", errors=[FieldError((field,), "empty image")])


def _invalid_base64(field: str) -> InvalidRequest:
    return InvalidRequest(
        f"{field} is not valid base64", errors=[FieldError((field,), "invalid base64")]
    )


def sniff(data: bytes) -> ImageInfo:
    """Format and dimensions from the header; 415 for other formats, 400 for broken ones."""
    if not data:
        raise InvalidRequest(
            "image is empty (0 bytes)", errors=[FieldError(("image",), "empty image")]
        )
    info = _sniff_header(data)
    if info.format == "png" and not data.endswith(_PNG_IEND):
        raise _png_end_error(data.rfind(_PNG_IEND), len(data))
    return info


def _png_end_error(iend: int, size: int) -> InvalidRequest:
    """A PNG ends with its IEND chunk: with none it was cut short; with bytes after it, it
    is a polyglot (a ZIP, script or second file appended), refused as such."""
    if iend == -1:
        return _broken("png", "the file is truncated (no IEND chunk at the end)")
    extra = size - iend - len(_PNG_IEND)
    return InvalidRequest(
        f"image is a png followed by {extra} bytes of other data after its IEND chunk "
        "(a polyglot or appended file); send the image alone",
        errors=[FieldError(("image",), f"{extra} bytes after the end of the png")],
    )


def sniff_base64_header(text: str, chars: int = 65_536) -> ImageInfo | None:
    """Format and dimensions of a base64 image from its first ``chars`` characters, for
    vendor answers that are passed through without being decoded. ``None`` when the prefix
    is not a png, jpeg or webp header; width and height 0 when a JPEG's frame header lies
    beyond the prefix. ``size`` is the decoded length."""
    try:
        head = codec.decode_prefix(text, chars)
        info = _sniff_header(head)
    except (codec.InvalidBase64, ValueError, InvalidRequest, UnsupportedMediaType):
        if text[:4] == "/9j/":  # base64 of FF D8 FF: a JPEG whose size needs more bytes
            return ImageInfo("jpeg", 0, 0, _decoded_length(text))
        return None
    return ImageInfo(info.format, info.width, info.height, _decoded_length(text), info.animated)


def _decoded_length(text: str) -> int:
    return len(text) * 3 // 4 - text[-2:].count("=")


def _sniff_header(data: bytes) -> ImageInfo:
    if data.startswith(_PNG_SIGNATURE):
        return _png(data)
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            raise UnsupportedMediaType(f"image is {name}; accepted formats are png, jpeg and webp")
    raise UnsupportedMediaType("image is not a png, jpeg or webp file")


def _broken(fmt: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"image is a damaged {fmt} file: {why}", errors=[FieldError(("image",), why)]
    )


def _png(data: bytes) -> ImageInfo:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise _broken("png", "the IHDR header is missing or truncated")
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise _broken("png", "width or height is zero")
    return ImageInfo("png", width, height, len(data), _apng(data))


def _apng(data: bytes) -> bool:
    """An acTL chunk before the first IDAT makes a PNG animated (APNG)."""
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"acTL":
            return True
        if kind == b"IDAT":
            return False
        pos += 12 + length
    return False


def _jpeg(data: bytes) -> ImageInfo:
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            raise _broken("jpeg", "a segment marker is missing")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > end:
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            if width == 0 or height == 0:
                raise _broken("jpeg", "width or height is zero")
            return ImageInfo("jpeg", width, height, end)
        if marker == 0xDA or length < 2:
            break
        pos += 2 + length
    raise _broken("jpeg", "no frame header with the image size")


def _webp(data: bytes) -> ImageInfo:
    chunk, animated = data[12:16], False
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        width, height = width & 0x3FFF, height & 0x3FFF
    elif chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        animated = bool(data[20] & 0x02)
    else:
        raise _broken("webp", "the frame header is missing or truncated")
    if width == 0 or height == 0:
        raise _broken("webp", "width or height is zero")
    return ImageInfo("webp", width, height, len(data), animated)


def guard(
    info: ImageInfo, max_bytes: int | None = None, max_pixels: int = GATEWAY_MAX_PIXELS
) -> None:
    """The gateway's own ceilings, applied before any provider looks at the image.
    Animated images are refused: every provider takes one still frame, and silently
    answering with the first frame alone would lose the rest."""
    if info.animated:
        raise ValidationFailed(
            f"image is an animated {info.format}; the gateway accepts still images only",
            errors=[FieldError(("image",), "animated image", "gateway: image must be still")],
        )
    if max_bytes is not None and info.size > max_bytes:
        raise PayloadTooLarge(f"image is {info.size} bytes; the limit is {max_bytes}")
    if info.pixels > max_pixels:
        raise ValidationFailed(
            f"image claims {info.width}x{info.height} px; "
            f"the gateway accepts at most {max_pixels} px",
            errors=[
                FieldError(
                    ("image",),
                    f"{info.width}x{info.height} px",
                    f"gateway: input must be <= {max_pixels} px",
                )
            ],
        )
