"""What each step of the 4.8 MB upscale passthrough costs, in isolation (CPU ms per call and
the size of the copy it makes), following the gateway's code path today (see
docs/performance.md). Run: ``.venv/bin/python bench/micro_upscale.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payloads as pl


def cost(fn: Callable[[], Any], repeat: int = 15) -> tuple[float, int]:
    """Median CPU ms of ``fn`` and the size of what it returns."""
    times, size = [], 0
    for _ in range(repeat):
        start = time.process_time()
        out = fn()
        times.append((time.process_time() - start) * 1000)
        size = len(out) if hasattr(out, "__len__") else 0
    times.sort()
    return times[len(times) // 2], size


def steps(p: pl.Payloads) -> list[tuple[str, Callable[[], Any]]]:
    body = pl.upscale_body(p)  # what the caller sends
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    doc = json.loads(body)
    b64: str = doc["image"]
    upstream = json.dumps({"scale": 2}, separators=(",", ":"))[1:]
    answer = p.upscaled_png
    answer_chunks = [answer[i : i + 65536] for i in range(0, len(answer), 65536)]
    out_b64 = base64.b64encode(answer).decode("ascii")
    out_doc = {
        "id": "x",
        "provider": "venice",
        "images": [{"data": out_b64, "mime_type": "image/png"}],
    }
    out_json = json.dumps(out_doc, separators=(",", ":"))
    return [
        (
            "request body: b''.join(64 KiB chunks) (Starlette Request.body)",
            lambda: b"".join(chunks),
        ),
        ("json.loads(body) (intake: bytes->str, then the image str)", lambda: json.loads(body)),
        (
            "a2b_base64(strict) (intake: decode the whole image)",
            lambda: binascii.a2b_base64(b64, strict_mode=True),
        ),
        (
            "a2b_base64 of the first 64 KiB only (header sniff)",
            lambda: base64.b64decode(b64[:65536]),
        ),
        ("b64.encode('ascii') (venice: str->bytes)", lambda: b64.encode("ascii")),
        (
            'b\'{"image":"\' + enc + ... (venice: 2 concatenations)',
            lambda: b'{"image":"' + b64.encode("ascii") + b'",' + upstream.encode(),
        ),
        ("h11: b''.join([head, body]) (httpcore send)", lambda: b"".join([b"x" * 200, body])),
        ("upstream answer: b''.join(64 KiB chunks) (httpx aread)", lambda: b"".join(answer_chunks)),
        (
            "base64.b64encode(answer).decode() (service: JSON answer)",
            lambda: base64.b64encode(answer).decode("ascii"),
        ),
        (
            "json.dumps(doc with 8 MB str) (service)",
            lambda: json.dumps(out_doc, separators=(",", ":")),
        ),
        ("str.encode() of the answer (service)", lambda: out_json.encode()),
        ("memoryview slice of the body (no copy)", lambda: memoryview(body)[10:-20]),
        (
            "body.find(b'\"image\"') (locate the image without parsing)",
            lambda: [body.find(b'"image"')],
        ),
    ]


def main() -> int:
    p = pl.make_payloads()
    print("| step | CPU ms | bytes produced |\n|---|---:|---:|")
    for name, fn in steps(p):
        ms, size = cost(fn)
        print(
            f"| {name} | {ms:.2f} | {size / 1e6:.2f} MB |"
            if size > 1000
            else f"| {name} | {ms:.3f} | - |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
