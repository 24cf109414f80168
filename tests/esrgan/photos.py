"""Real photographs for the model tests: the samples that scikit-image ships inside its
wheel (no download), read as files without importing scikit-image."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

from PIL import Image


def sample(name: str = "astronaut.png") -> Path:
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations, "scikit-image (dev extra)"
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name


def photo(width: int, height: int, name: str = "astronaut.png", mode: str = "RGB") -> Image.Image:
    """A crop of the photograph around its detail, resized to ``width`` x ``height``."""
    with Image.open(sample(name)) as image:
        source = image.convert(mode)
    return source.crop((96, 0, 416, 320)).resize((width, height), Image.Resampling.LANCZOS)


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()
