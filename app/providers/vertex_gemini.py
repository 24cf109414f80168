"""Gemini image models on Vertex (``generateContent``, vendors-2026 §2): the request bodies
of one job and the reading of one answer. Pure functions; ``vertex.py`` does the HTTP.

n images are n calls (``candidateCount`` > 1 is refused by these models, §2.2). Each call
gets its own body: with a seed, call i uses seed + i, so that n images are not n copies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from app.errors import UpstreamError
from app.images import MIME_TYPES, sniff_base64_header
from app.providers.base import OutputImage, Usage
from app.providers.vertex_checks import documented_size
from app.providers.vertex_limits import PROVIDER, VertexModelLimits, VertexOptions
from app.schemas import GenerateParams, OutputOptions

_INT32 = 2**31


@dataclass
class GeminiPlan:
    bodies: list[bytes]
    warnings: list[str]


def plan(limits: VertexModelLimits, params: GenerateParams, options: VertexOptions) -> GeminiPlan:
    """One JSON body per image asked for (§2.3), and what the caller should know."""
    prompt, warnings = _prompt(params, options)
    generation: dict[str, Any] = {"responseModalities": ["IMAGE"]}
    _put(generation, imageConfig=_image_config(limits, params, options) or None)
    if options.thinkingLevel is not None:
        generation["thinkingConfig"] = {"thinkingLevel": options.thinkingLevel}
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": generation,
    }
    if options.safetySettings:
        body["safetySettings"] = [s.model_dump(exclude_none=True) for s in options.safetySettings]
    _put(body, labels=options.labels)
    if params.seed is not None and params.n > 1:
        warnings.append(
            f"vertex: the {params.n} images are {params.n} calls with seeds {params.seed}.."
            f"{_seed(params.seed, params.n - 1)}"
        )
    return GeminiPlan([_encode(body, params.seed, i) for i in range(params.n)], warnings)


def _prompt(params: GenerateParams, options: VertexOptions) -> tuple[str, list[str]]:
    if params.negative_prompt is None or not options.foldNegativePrompt:
        return params.prompt, []
    folded = f"{params.prompt}\n\nAvoid: {params.negative_prompt}"
    return folded, ["vertex: negative_prompt was folded into the prompt as 'Avoid: ...'"]


def _image_config(
    limits: VertexModelLimits, params: GenerateParams, options: VertexOptions
) -> dict[str, Any]:
    ratio: str | None = params.aspect_ratio
    tier: str | None = options.imageSize
    found = documented_size(limits, params.width, params.height)
    if found is not None:
        ratio, tier = found[0], found[1] or None
    config: dict[str, Any] = {}
    _put(
        config,
        aspectRatio=ratio,
        imageSize=tier if limits.image_sizes else None,
        personGeneration=options.personGeneration,
        imageOutputOptions=_output_options(params.output),
    )
    return config


def _output_options(output: OutputOptions | None) -> dict[str, Any] | None:
    if output is None or (output.format is None and output.quality is None):
        return None
    out: dict[str, Any] = {"mimeType": MIME_TYPES[output.format or "png"]}
    _put(out, compressionQuality=output.quality)
    return out


def _seed(seed: int, offset: int) -> int:
    """seed + offset, wrapped into int32 (``GenerationConfig.seed``)."""
    return (seed + offset + _INT32) % (2 * _INT32) - _INT32


def _encode(body: dict[str, Any], seed: int | None, index: int) -> bytes:
    if seed is not None:
        body = {
            **body,
            "generationConfig": {**body["generationConfig"], "seed": _seed(seed, index)},
        }
    return json.dumps(body, separators=(",", ":")).encode()


def _put(target: dict[str, Any], **values: Any) -> None:
    target.update({key: value for key, value in values.items() if value is not None})


# --------------------------------------------------------------------------- answers


@dataclass
class Answer:
    """What one call gave: its images, or why it gave none, and its token usage."""

    images: list[OutputImage] = field(default_factory=list)
    filtered: str | None = None
    usage: Usage = field(default_factory=Usage)


def read_answer(body: Any) -> Answer:
    """One ``GenerateContentResponse`` (§2.5): the non-thought ``inlineData`` images; a
    ``promptFeedback.blockReason`` (HTTP 200) or a candidate without an image is filtered."""
    if not isinstance(body, dict):
        raise bad_response("a body that is not a JSON object")
    usage = read_usage(body.get("usageMetadata"))
    candidates = body.get("candidates") or []
    if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
        raise bad_response("candidates that are not a list of objects")
    if not candidates:
        return Answer(filtered=_blocked(body.get("promptFeedback")), usage=usage)
    images = [img for c in candidates for img in _images(c)]
    if images:
        return Answer(images=images, usage=usage)
    return Answer(filtered=_no_image(candidates[0]), usage=usage)


def _blocked(feedback: Any) -> str:
    feedback = feedback if isinstance(feedback, dict) else {}
    reason = _text(feedback.get("blockReason")) or "no candidates"
    message = _text(feedback.get("blockReasonMessage"))
    return f"prompt blocked ({reason})" + (f": {message}" if message else "")


def _no_image(candidate: dict[str, Any]) -> str:
    reason = _text(candidate.get("finishReason")) or "no image"
    message = _text(candidate.get("finishMessage"))
    return f"no image ({reason})" + (f": {message}" if message else "")


def _images(candidate: dict[str, Any]) -> list[OutputImage]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return []
    out = []
    for part in parts:
        data = part.get("inlineData") if isinstance(part, dict) else None
        if not isinstance(data, dict) or part.get("thought") is True:
            continue  # text, or an interim "thought image" (not charged, not the answer)
        mime = data.get("mimeType")
        if isinstance(mime, str) and mime.startswith("image/"):
            out.append(output_image(data.get("data"), mime))
    return out


def output_image(data: Any, mime: str) -> OutputImage:
    """The vendor's base64 passed through; format and size read from its first few KB."""
    if not isinstance(data, str) or not data:
        raise bad_response("an image part without base64 data")
    info = sniff_base64_header(data)
    if info is None:
        raise bad_response("an image that is not png, jpeg or webp base64")
    return OutputImage(
        mime_type=info.mime_type or mime, width=info.width or None, height=info.height or None,
        b64=data,
    )  # fmt: skip


def read_usage(meta: Any) -> Usage:
    """``usageMetadata`` (§2.5): IMAGE output tokens from ``candidatesTokensDetails``."""
    if not isinstance(meta, dict):
        return Usage(calls=1)
    details = meta.get("candidatesTokensDetails")
    image = sum(
        _int(d.get("tokenCount"))
        for d in (details if isinstance(details, list) else [])
        if isinstance(d, dict) and d.get("modality") == "IMAGE"
    )
    return Usage(
        calls=1,
        prompt_tokens=_int(meta.get("promptTokenCount")),
        output_tokens=_int(meta.get("candidatesTokenCount")),
        image_output_tokens=image,
        thoughts_tokens=_int(meta.get("thoughtsTokenCount")),
        total_tokens=_int(meta.get("totalTokenCount")),
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _text(value: Any) -> str:
    return value[:300] if isinstance(value, str) else ""


def bad_response(what: str) -> UpstreamError:
    return UpstreamError(f"vertex answered with {what}", provider=PROVIDER, reason="bad_response")
