"""The local Real-ESRGAN models on this machine: speed, worker memory, and quality.

Run: ``.venv/bin/python bench/esrgan.py`` (needs the dev extras: the esrgan extra and
scikit-image's photographs). ``--quality-only`` skips the timing, ``--crops PATH`` writes
the side-by-side picture (docs/local-ai-crops.png).

Speed: each model upscales a crop of a photograph through the gateway's own worker pool
(one worker process, the model loaded by a warm-up run), ``--repeat`` times; it prints the
median seconds per output megapixel, the input pixels per second, the input size that fits
the 60 s budget the limits are drawn from, and the worker's peak RSS (VmHWM).

Quality: the photograph is downscaled 4x (Lanczos) and upscaled back 4x by each model;
PSNR against the original (RGB, 8-bit) and the variance of the Laplacian of the result's
luma (sharpness: higher is sharper; the original's own figure is printed for reference).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.esrgan.engine import Engine, Order
from app.esrgan.models import TIME_BUDGET_S
from app.esrgan.pool import WorkerPool
from tests.esrgan.photos import sample

#: (model, native scale, input edge): small enough that x4plus takes seconds, not minutes.
SPEED_CASES = [
    ("realesr-animevideov3", 2, 256),
    ("realesr-animevideov3", 3, 256),
    ("realesr-animevideov3", 4, 256),
    ("realesrgan-x4plus-anime", 4, 96),
    ("realesrgan-x4plus", 4, 96),
]
QUALITY_MODELS = ["lanczos", "realesr-animevideov3", "realesrgan-x4plus-anime", "realesrgan-x4plus"]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def photo(edge: int) -> Image.Image:
    with Image.open(sample("astronaut.png")) as image:
        left = min(96, image.width - edge)
        return image.convert("RGB").crop((left, 0, left + edge, edge))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc: fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def speed(repeat: int) -> None:
    print(
        "| model | net | input | CPU s per output MP | wall s per output MP | input px per "
        f"CPU s | input px in {TIME_BUDGET_S} CPU s | worker peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for model, scale, edge in SPEED_CASES:
        pool = WorkerPool()
        order = Order(png(photo(edge)), model, scale, None, None, "png", None, 1 << 26)
        try:
            await pool.run(order, timeout=600)  # spawn and load the network
            [pid] = pool.pids
            cpu, wall = [], []
            for _ in range(repeat):
                started, used = time.perf_counter(), cpu_seconds(pid)
                reply = await pool.run(order, timeout=600)
                wall.append(time.perf_counter() - started)
                cpu.append(cpu_seconds(pid) - used)
        finally:
            await pool.aclose()
        out_mp = (edge * scale) ** 2 / 1e6
        core = statistics.median(cpu)
        rate = edge * edge / core
        print(
            f"| {model} | x{scale} | {edge}x{edge} | {core / out_mp:.2f} | "
            f"{statistics.median(wall) / out_mp:.2f} | {rate:,.0f} | "
            f"{rate * TIME_BUDGET_S:,.0f} | {reply.peak_rss_bytes / 2**20:.0f} MiB |"
        )


def upscale(engine: Engine, model: str, small: Image.Image) -> Image.Image:
    size = (small.width * 4, small.height * 4)
    if model == "lanczos":
        return small.resize(size, Image.Resampling.LANCZOS)
    return engine.upscale_rgb(small, model, 4)


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255**2 / np.mean(diff**2)))


def laplacian_variance(image: Image.Image) -> float:
    y = np.asarray(image.convert("L"), dtype=np.float64)
    lap = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4 * y[1:-1, 1:-1]
    return float(lap.var())


def quality(edge: int, crops: Path | None) -> None:
    original = photo(edge)
    small = original.resize((edge // 4, edge // 4), Image.Resampling.LANCZOS)
    engine = Engine(gpu=None)
    results = {m: upscale(engine, m, small) for m in QUALITY_MODELS}
    print(
        f"\n{edge}x{edge} crop of scikit-image's astronaut.png, downscaled to "
        f"{edge // 4}x{edge // 4} and upscaled 4x back\n"
    )
    print("| result | PSNR vs original (dB) | variance of the Laplacian |")
    print("|---|---|---|")
    print(f"| original | - | {laplacian_variance(original):.0f} |")
    for model, image in results.items():
        print(f"| {model} | {psnr(image, original):.2f} | {laplacian_variance(image):.0f} |")
    if crops is not None:
        side_by_side(original, results, crops)


def side_by_side(original: Image.Image, results: dict[str, Image.Image], path: Path) -> None:
    box = (160, 60, 288, 188)  # the face: 128x128 of the photograph
    panels = [("original", original), *results.items()]
    tile, label = 256, 18
    sheet = Image.new("RGB", (tile * len(panels), tile + label), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (name, image) in enumerate(panels):
        crop = image.crop(box).resize((tile, tile), Image.Resampling.NEAREST)
        sheet.paste(crop, (index * tile, label))
        draw.text((index * tile + 4, 3), name, fill="black")
    sheet.save(path, optimize=True)
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quality-only", action="store_true")
    parser.add_argument("--edge", type=int, default=512, help="quality crop edge (px)")
    parser.add_argument("--crops", type=Path, default=None)
    args = parser.parse_args()
    if not args.quality_only:
        asyncio.run(speed(args.repeat))
    quality(args.edge, args.crops)


if __name__ == "__main__":
    main()
