"""The benchmark's images and request bodies, made deterministically (seeded noise), so
every run sends and receives the same bytes.

- upscale input: a 1200x1000 RGBA noise PNG (~4.8 MB, incompressible), sent as base64 JSON
  with scale 2; 1200x1000 = 1.2 MP is above Venice's 65,536 px input minimum and the
  2400x2000 = 4.8 MP output is under its 16,777,216 px cap (vendors.md §2.2a).
- upscale output (what the fake answers): the same noise at 2400x2000 (nearest neighbour),
  a real PNG of ~6 MB.
- generate output: a 1024x1024 webp (Venice's default size and format, §2.3), or a noise
  PNG of about ``generate_kb`` KiB when a bigger answer is wanted.
"""

from __future__ import annotations

import base64
import io
import json
import math
import random
from dataclasses import dataclass

from PIL import Image

UPSCALE_SIZE = (1200, 1000)
UPSCALE_SCALE = 2
GENERATE_PROMPT = "a lighthouse on a cliff at dusk, oil painting"
_SEED = 9


@dataclass(frozen=True)
class Payloads:
    upscale_png: bytes  # what the caller uploads
    upscaled_png: bytes  # what the fake answers
    generate_image: bytes  # the image inside the fake's generate answer
    generate_mime: str

    @property
    def upscale_b64(self) -> str:
        return base64.b64encode(self.upscale_png).decode("ascii")


def noise_rgba(width: int, height: int, seed: int = _SEED) -> Image.Image:
    raw = random.Random(seed).randbytes(width * height * 4)
    return Image.frombytes("RGBA", (width, height), raw)


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)  # noise does not compress; level 1 is fast
    return out.getvalue()


def generate_image(generate_kb: int | None) -> tuple[bytes, str]:
    """A 1024x1024 webp gradient (~2.5 KB), or a noise PNG of about ``generate_kb`` KiB."""
    if generate_kb:
        side = max(16, int(math.sqrt(generate_kb * 1024 / 4)))
        return png_bytes(noise_rgba(side, side, seed=_SEED + 1)), "image/png"
    gradient = Image.linear_gradient("L").resize((1024, 1024)).convert("RGB")
    out = io.BytesIO()
    gradient.save(out, "WEBP")
    return out.getvalue(), "image/webp"


def make_payloads(generate_kb: int | None = None) -> Payloads:
    source = noise_rgba(*UPSCALE_SIZE)
    width, height = UPSCALE_SIZE
    upscaled = source.resize(
        (width * UPSCALE_SCALE, height * UPSCALE_SCALE), Image.Resampling.NEAREST
    )
    image, mime = generate_image(generate_kb)
    return Payloads(png_bytes(source), png_bytes(upscaled), image, mime)


def generate_body(provider: str | None = "venice") -> bytes:
    """POST /v1/generate (and the fake's own /image/generate, which ignores the body)."""
    doc: dict[str, object] = {"prompt": GENERATE_PROMPT}
    if provider:
        doc["provider"] = provider
    return json.dumps(doc).encode()


def upscale_body(payloads: Payloads, provider: str | None = "venice") -> bytes:
    """POST /v1/upscale, and the same fields Venice's /image/upscale takes (§2.2a)."""
    doc: dict[str, object] = {"image": payloads.upscale_b64, "scale": UPSCALE_SCALE}
    if provider:
        doc["provider"] = provider
    return json.dumps(doc).encode()


def openai_generate_body(model: str) -> bytes:
    """POST /v1/images/generations for the LiteLLM comparison (OpenAI's image API)."""
    # No response_format: LiteLLM refuses it for a generic openai/ model (the fake answers
    # b64_json whatever is asked).
    doc = {"model": model, "prompt": GENERATE_PROMPT, "n": 1}
    return json.dumps(doc).encode()
