"""The Gemini side of the Vertex emulator: ``generateContent`` for the image models, per
model as vendors-2026 §2.2-§2.6 document it, and the §7 fault modes.

Transcribed from vendors-2026.md independently of ``app.providers.vertex_limits`` so that it
can catch mistakes there. Stricter than Google in one way: unknown fields are refused
everywhere (so a misspelt field fails a test instead of being ignored). Where the reference
has no pixel size (3.1 Flash at ``512``, the 9:21 ratio), the emulator makes one up: 512 is
half of 1K, 9:21 is 21:9 turned.
"""

from __future__ import annotations

import base64
import functools
import io
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

# fmt: off
RATIOS = ("1:1", "3:2", "2:3", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
EXTRA_RATIOS = ("1:4", "4:1", "1:8", "8:1", "9:21")
ONE_K = {"1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200),
         "4:3": (1200, 896), "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376),
         "16:9": (1376, 768), "21:9": (1584, 672), "1:4": (512, 2048), "4:1": (2048, 512),
         "1:8": (384, 3072), "8:1": (3072, 384), "9:21": (672, 1584)}
FLASH_25 = {"1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
            "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
            "16:9": (1344, 768), "21:9": (1536, 672)}
TIER_FACTOR = {"512": 0.5, "1K": 1, "2K": 2, "4K": 4}
PERSON = ("ALLOW_ALL", "ALLOW_ADULT", "ALLOW_NONE")
LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH")
CATEGORIES = ("HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_DANGEROUS_CONTENT",
              "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_SEXUALLY_EXPLICIT",
              "HARM_CATEGORY_CIVIC_INTEGRITY", "HARM_CATEGORY_JAILBREAK",
              "HARM_CATEGORY_IMAGE_HATE", "HARM_CATEGORY_IMAGE_DANGEROUS_CONTENT",
              "HARM_CATEGORY_IMAGE_HARASSMENT", "HARM_CATEGORY_IMAGE_SEXUALLY_EXPLICIT")
THRESHOLDS = ("BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH", "BLOCK_NONE",
              "OFF")
FLASH_25_LOCATIONS = ("global", "us-central1", "us-east1", "us-east4", "us-east5", "us-south1",
                      "us-west1", "us-west4", "europe-central2", "europe-north1",
                      "europe-southwest1", "europe-west1", "europe-west4", "europe-west8")
MULTIPLE_CANDIDATES = "Multiple candidates is not enabled for this model"  # GH-NCAND
RESOURCE_EXHAUSTED = (
    "Resource exhausted. Please try again later. Please refer to "
    "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details."
)  # GH-429V
MAX_INLINE_BYTES = 7 * 1024 * 1024
# fmt: on


@dataclass(frozen=True)
class GeminiSpec:
    locations: tuple[str, ...]
    ratios: tuple[str, ...]
    #: imageSize tiers; empty: the model takes none (2.5 Flash, §2.2).
    tiers: tuple[str, ...]
    thinking: bool
    max_images: int
    input_tokens: int
    image_tokens: dict[str, int]
    thought_images: bool = True

    def size(self, ratio: str, tier: str) -> tuple[int, int]:
        if not self.tiers:
            return FLASH_25[ratio]
        w, h = ONE_K[ratio]
        factor = TIER_FACTOR[tier]
        return int(w * factor), int(h * factor)


GEMINI: dict[str, GeminiSpec] = {
    "gemini-3.1-flash-image": GeminiSpec(
        ("global",), RATIOS + EXTRA_RATIOS, ("512", "1K", "2K", "4K"), True, 14, 131_072,
        {"512": 747, "1K": 1120, "2K": 1680, "4K": 2520},
    ),
    "gemini-3-pro-image": GeminiSpec(
        ("global",), RATIOS, ("1K", "2K", "4K"), False, 14, 65_536,
        {"1K": 1120, "2K": 1120, "4K": 2000},
    ),
    "gemini-2.5-flash-image": GeminiSpec(
        FLASH_25_LOCATIONS, RATIOS, (), False, 3, 32_768, {"": 1290}, thought_images=False
    ),
}  # fmt: skip

#: vendors-2026 §4: every id answers 404 NOT_FOUND.
DISCONTINUED = frozenset(
    {"imagegeneration@002", "imagegeneration@003", "imagegeneration@004", "imagegeneration@005",
     "imagegeneration@006", "imagetext@001", "imagen-3.0-capability-001",
     "imagen-3.0-capability-002", "imagen-3.0-fast-generate-001", "imagen-3.0-generate-001",
     "imagen-3.0-generate-002", "imagen-4.0-fast-generate-001", "imagen-4.0-generate-001",
     "imagen-4.0-ultra-generate-001", "gemini-2.5-flash-image-preview",
     "gemini-3-pro-image-preview", "gemini-3.1-flash-image-preview"}
)  # fmt: skip


class Invalid(Exception):
    """A 400 INVALID_ARGUMENT with this message."""


@dataclass
class GeminiKnobs:
    """What a test turns: answers without an image for the next calls, and blocked words."""

    #: finishReasons for the next calls, one per call (e.g. ["NO_IMAGE"]): no image part.
    no_image_next: list[str] = field(default_factory=list)
    #: Prompts containing any of these get HTTP 200 with promptFeedback.blockReason (§2.5).
    blocked_words: tuple[str, ...] = ("forbidden-word",)
    #: Every generateContent body received, in order (parsed).
    bodies: list[dict[str, Any]] = field(default_factory=list)


def known(values: dict[str, Any], allowed: set[str], where: str) -> None:
    for name in values:
        if name not in allowed:
            raise Invalid(
                f'Invalid JSON payload received. Unknown name "{name}" at '
                f"'{where or 'request'}': Cannot find field."
            )


def _typed(values: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = values.get(name)
    if value is not None and (
        not isinstance(value, kind) or isinstance(value, bool) != (kind is bool)
    ):
        raise Invalid(f'Invalid value at "{where}.{name}": wrong type.')
    return value


def _enum(values: dict[str, Any], name: str, allowed: tuple[str, ...], where: str) -> Any:
    value = _typed(values, name, str, where)
    if value is not None and value not in allowed:
        raise Invalid(
            f"* GenerateContentRequest.{where}.{name}: {name} must be one of {', '.join(allowed)}."
        )
    return value


def generate(knobs: GeminiKnobs, spec: GeminiSpec, body: dict[str, Any]) -> dict[str, Any]:
    """One GenerateContentRequest, checked and answered (§2.3, §2.5)."""
    known(
        body, {"contents", "generationConfig", "safetySettings", "labels", "systemInstruction"}, ""
    )
    knobs.bodies.append(body)
    prompt, images = _contents(spec, body.get("contents"))
    config = _typed(body, "generationConfig", dict, "request") or {}
    ratio, tier, mime, quality = _generation(spec, config)
    _safety(body.get("safetySettings"))
    if any(word in prompt.lower() for word in knobs.blocked_words):
        return {
            "promptFeedback": {
                "blockReason": "PROHIBITED_CONTENT",
                "blockReasonMessage": "The prompt was blocked.",
            },
            "usageMetadata": {
                "promptTokenCount": _tokens(prompt),
                "totalTokenCount": _tokens(prompt),
            },
        }
    if knobs.no_image_next:
        reason = knobs.no_image_next.pop(0)
        return {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": "No image."}]},
                    "finishReason": reason,
                }
            ],
            "usageMetadata": _usage(prompt, 0),
        }
    width, height = spec.size(ratio, tier)
    return _answer(spec, prompt, width, height, mime, quality, tier, images)


def _contents(spec: GeminiSpec, contents: Any) -> tuple[str, int]:
    if (
        not isinstance(contents, list)
        or not contents
        or not all(isinstance(c, dict) for c in contents)
    ):
        raise Invalid("* GenerateContentRequest.contents: contents is not specified")
    texts, images = [], 0
    for content in contents:
        known(content, {"role", "parts"}, "contents[]")
        for part in content.get("parts") or []:
            known(
                part,
                {"text", "inlineData", "fileData", "thought", "thoughtSignature"},
                "contents[].parts[]",
            )
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            if isinstance(part.get("inlineData"), dict):
                images += 1
                _inline(part["inlineData"])
    if images > spec.max_images:
        raise Invalid(
            f"The number of input images {images} exceeds the maximum of {spec.max_images}."
        )
    prompt = "\n".join(texts)
    if not prompt.strip() and not images:
        raise Invalid("* GenerateContentRequest.contents[0].parts: contents must not be empty")
    if _tokens(prompt) > spec.input_tokens:
        raise Invalid(
            "The input token count exceeds the maximum number of tokens allowed "
            f"{spec.input_tokens}."
        )
    return prompt, images


def _inline(data: dict[str, Any]) -> None:
    known(data, {"mimeType", "data"}, "contents[].parts[].inlineData")
    if data.get("mimeType") not in (
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/heic",
        "image/heif",
    ):
        raise Invalid("Unsupported MIME type for inline image data.")
    if len(str(data.get("data", ""))) * 3 // 4 > MAX_INLINE_BYTES:
        raise Invalid("Inline image data exceeds 7 MB.")


_GENERATION_FIELDS = {
    "responseModalities", "imageConfig", "thinkingConfig", "seed", "candidateCount",
    "temperature", "topP", "topK", "maxOutputTokens",
}  # fmt: skip


def _generation(spec: GeminiSpec, config: dict[str, Any]) -> tuple[str, str, str, int]:
    known(config, _GENERATION_FIELDS, "generation_config")
    modalities = config.get("responseModalities") or ["TEXT"]
    if not isinstance(modalities, list) or "IMAGE" not in modalities:
        raise Invalid("responseModalities must include IMAGE for an image model.")
    if (_typed(config, "candidateCount", int, "generation_config") or 1) > 1:
        raise Invalid(MULTIPLE_CANDIDATES)
    seed = _typed(config, "seed", int, "generation_config")
    if seed is not None and not -(2**31) <= seed < 2**31:
        raise Invalid("* GenerateContentRequest.generation_config.seed: seed must be an int32.")
    _thinking(spec, config.get("thinkingConfig"))
    return _image_config(spec, _typed(config, "imageConfig", dict, "generation_config") or {})


def _thinking(spec: GeminiSpec, thinking: Any) -> None:
    if thinking is None:
        return
    if not isinstance(thinking, dict):
        raise Invalid('Invalid value at "generation_config.thinking_config": wrong type.')
    known(
        thinking,
        {"thinkingLevel", "thinkingBudget", "includeThoughts"},
        "generation_config.thinking_config",
    )
    if not spec.thinking:
        raise Invalid("Thinking level is not supported for this model.")
    _enum(thinking, "thinkingLevel", LEVELS, "generation_config.thinking_config")


def _image_config(spec: GeminiSpec, image: dict[str, Any]) -> tuple[str, str, str, int]:
    where = "generation_config.image_config"
    known(
        image,
        {"aspectRatio", "imageSize", "personGeneration", "prominentPeople", "imageOutputOptions"},
        where,
    )
    ratio = _enum(image, "aspectRatio", spec.ratios, where) or "1:1"
    tier = _typed(image, "imageSize", str, where)
    if tier is not None and not spec.tiers:
        raise Invalid("imageSize is not supported for this model.")
    if tier is not None and tier not in spec.tiers:  # lowercase k included (G-IMGGEN copy)
        raise Invalid(
            f"* GenerateContentRequest.{where}.image_size: must be one of {', '.join(spec.tiers)}."
        )
    _enum(image, "personGeneration", PERSON, where)
    out = _typed(image, "imageOutputOptions", dict, where) or {}
    known(out, {"mimeType", "compressionQuality"}, f"{where}.image_output_options")
    mime = (
        _enum(out, "mimeType", ("image/png", "image/jpeg"), f"{where}.image_output_options")
        or "image/png"
    )
    quality = _typed(out, "compressionQuality", int, f"{where}.image_output_options")
    if quality is not None and not 0 <= quality <= 100:
        raise Invalid("compressionQuality must be between 0 and 100.")
    return ratio, tier or ("1K" if spec.tiers else ""), mime, 75 if quality is None else quality


def _safety(settings: Any) -> None:
    if settings is None:
        return
    if not isinstance(settings, list):
        raise Invalid('Invalid value at "safety_settings": wrong type.')
    for entry in settings:
        known(entry, {"category", "threshold", "method"}, "safety_settings[]")
        _enum(entry, "category", CATEGORIES, "safety_settings")
        _enum(entry, "threshold", THRESHOLDS, "safety_settings")


def _tokens(text: str) -> int:
    """A crude token count (words and punctuation); the real tokenizer is not public."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def _usage(prompt: str, image_tokens: int) -> dict[str, Any]:
    prompt_tokens = _tokens(prompt)
    details = [{"modality": "IMAGE", "tokenCount": image_tokens}] if image_tokens else []
    return {"promptTokenCount": prompt_tokens, "candidatesTokenCount": image_tokens + 8,
            "thoughtsTokenCount": 120, "totalTokenCount": prompt_tokens + image_tokens + 128,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
            "candidatesTokensDetails": details, "trafficType": "ON_DEMAND"}  # fmt: skip


def _answer(
    spec: GeminiSpec, prompt: str, width: int, height: int, mime: str, quality: int, tier: str,
    input_images: int,
) -> dict[str, Any]:  # fmt: skip
    parts: list[dict[str, Any]] = [{"text": "Here is the image."}]
    if spec.thought_images:  # an interim "thought image": not the answer (§2.5)
        thought = {"mimeType": "image/png", "data": image_b64(64, 64, "image/png", 75)}
        parts.append({"inlineData": thought, "thought": True})
    image = {"mimeType": mime, "data": image_b64(width, height, mime, quality)}
    parts.append({"inlineData": image, "thoughtSignature": "c2lnbmF0dXJl"})
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                        "safetyRatings": []}],
        "usageMetadata": _usage(prompt, spec.image_tokens[tier]),
        "modelVersion": "emulated", "responseId": "emulated",
    }  # fmt: skip


@functools.lru_cache(maxsize=64)
def image_b64(width: int, height: int, mime: str, quality: int) -> str:
    """A cheap real image of the given size (a flat colour compresses to almost nothing)."""
    buffer = io.BytesIO()
    image = Image.new("RGB", (width, height), (90, 140, 200))
    if mime == "image/jpeg":
        image.save(buffer, format="JPEG", quality=max(1, quality))
    else:
        image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
