"""A fake Deep-Image.ai REST API, faithful to vendors.md §3 (notes for an emulator: §3.9).

- ``x-api-key`` is required on ``/rest_api/*``: missing gives 403, an unknown key 404
  "No user found for provided token" (§3.7, the vendor's odd statuses).
- ``POST /rest_api/process_result`` (sync window) and ``POST /rest_api/process`` (always
  async) take JSON, or multipart with an ``image`` file part and a ``parameters`` JSON part
  (§3.1). ``url`` may be ``"base64,<data>"`` (the literal prefix, §3.3); the emulator
  fetches no remote URLs, so any other ``url`` is an "Unidentified image".
- Jobs move through ``received`` -> ``in_progress`` -> ``complete`` driven by an explicit
  per-job step counter (``JobPlan.polls``: status polls before completion), so nothing
  here sleeps. ``polls=0`` means the job finished within the ~25 s sync window (§3.2).
- ``result_url`` points at ``/images/<date>/<job>.<ext>`` on this emulator (or on
  ``state.result_base``), served as a plain GET: a real image of the target size.
- Failure modes: credits (400 NOT_ENOUGH_CREDITS), bad or missing key, concurrency 429
  TOO_MANY_REQUESTS, 500 ``status: failed`` at submission or mid-way, the over-limit 400,
  unknown or mistyped fields (400; the wording of that one is UNCONFIRMED).

Run alone: ``python -m tests.emulators.deepimage --port 9003`` (key: ``DEFAULT_API_KEY``).
"""

from __future__ import annotations

import binascii
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators.common import ASGIApp, EmulatorState, serve_forever

DEFAULT_API_KEY = "deepimage-emulator-key"
FORMATS = {"png": "png", "jpeg": "jpg", "jpg": "jpg", "webp": "webp"}
MIME = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
PILLOW_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
FAILED_MESSAGE = (
    "We have encountered some technical issues while processing the image. "
    "No credits were lost. Please try again."
)

# §3.3 / §3.5 (DI-OAS, DI-GEN, S004): the fields and enums the vendor documents.
TOP_LEVEL = frozenset({
    "url", "width", "height", "min_length", "fit", "padding", "generative_upscale",
    "upscale_strength", "upscale_parameters", "enhancements", "denoise_parameters",
    "deblur_parameters", "light_parameters", "color_parameters", "white_balance_parameters",
    "background", "preset", "output_format", "quality", "max_file_size", "dpi", "print_size",
    "print_reorientation", "safe", "nsfw_parameters", "target", "webhooks", "caption",
})  # fmt: skip
GENERATE_FIELDS = frozenset({
    "description", "model_type", "sample_num", "adapter_type", "face_id",
    "controlnet_conditioning_scale", "item_area_percentage", "negative_prompt",
    "additional_prompt", "color",
})  # fmt: skip
MODEL_TYPES = frozenset({
    "gemini-3-pro-image-preview", "see-dream-4.5", "qwen", "flux2-klein9b", "z-image-turbo",
    "realistic", "fantasy", "premium", "google-gemini-image-flash",
})  # fmt: skip
ADAPTER_TYPES = frozenset({"generate_background", "face", "control", "control2", "upscale",
                           "inpainting"})  # fmt: skip
ENHANCEMENTS = frozenset({"denoise", "deblur", "clean", "face_enhance", "light", "color",
                          "white_balance", "exposure_correction"})  # fmt: skip
LIGHT_TYPES = frozenset({"contrast", "hdr_light", "hdr_light_advanced"})


class Refusal(Exception):
    """An error answer: ``{"message": ..., "code"?: ...}`` with an HTTP status (§3.7)."""

    def __init__(self, status: int, message: str, code: str | None = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code

    def response(self) -> JSONResponse:
        body = {"message": self.message} | ({"code": self.code} if self.code else {})
        return JSONResponse(body, status_code=self.status)


@dataclass
class JobPlan:
    """How new jobs behave. ``polls``: status polls a job needs before it is complete (0:
    done within process_result's sync window). ``fail_on_poll``: that poll answers 500
    ``status: failed`` (0: the submission itself)."""

    polls: int = 0
    fail_on_poll: int | None = None


@dataclass
class EmulatedJob:
    id: str
    payload: dict[str, Any]  # as received, with the base64 ``url`` data left out
    upload: str  # "multipart", "base64" or "none" (text-to-image)
    input_size: tuple[int, int] | None
    width: int
    height: int
    ext: str
    plan: JobPlan
    polls: int = 0
    status: str = "received"
    deleted: bool = False


class DeepImageState(EmulatorState):
    """What a test steers (keys, job plan, credits, limits) and sees (jobs, requests)."""

    def __init__(self, api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)) -> None:
        super().__init__()
        self._default_keys = api_keys
        self.reset()

    def reset(self) -> None:
        """Back to a fresh vendor (so one running server can serve many tests)."""
        self.requests.clear()
        self.clear_faults()
        self.api_keys = set(self._default_keys)
        self.plan = JobPlan()
        #: Credits left; ``None`` is unlimited. One per job, refunded when it fails (§3.7).
        self.credits: int | None = None
        #: §3.8: the plan's limit on images in processing at once.
        self.max_active_jobs = 8
        #: The server's "cannot be upscaled above {max_width} x {max_height}" limit (§3.7).
        self.max_output = (8192, 8192)
        #: Where ``result_url`` points, e.g. another server standing in for S3 (§3.2).
        self.result_base: str | None = None
        self.jobs: dict[str, EmulatedJob] = {}

    def active_jobs(self) -> int:
        return sum(1 for job in self.jobs.values() if job.status in ("received", "in_progress"))

    def polls_of(self, job_id: str) -> int:
        return len(self.requests_to(f"/rest_api/result/{job_id}"))


# --------------------------------------------------------------------------- validation


def _check_type(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if isinstance(value, bool) and kind is not bool:
        raise Refusal(400, f"{name} has an invalid type")
    if not isinstance(value, kind):
        raise Refusal(400, f"{name} has an invalid type")


def _check_number(name: str, value: Any, low: float, high: float, kind: Any = int) -> None:
    _check_type(name, value, kind)
    if not low <= value <= high:
        raise Refusal(400, f"{name} must be between {low} and {high}")


def _check_enum(name: str, value: Any, allowed: frozenset[str]) -> None:
    if value not in allowed:
        raise Refusal(400, f"{name} must be one of {sorted(allowed)}")


def _check_keys(name: str, value: Any, allowed: frozenset[str]) -> None:
    _check_type(name, value, dict)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise Refusal(400, f"Unknown parameter {name}.{unknown[0]}")


def validate(payload: dict[str, Any]) -> None:
    """The documented field rules (§3.3-§3.5); unknown fields are refused."""
    unknown = sorted(set(payload) - TOP_LEVEL)
    if unknown:
        raise Refusal(400, f"Unknown parameter {unknown[0]}")
    checks: dict[str, Callable[[Any], None]] = {
        "generative_upscale": lambda v: _check_type("generative_upscale", v, bool),
        "upscale_strength": lambda v: _check_number("upscale_strength", v, 1, 9),
        "quality": lambda v: _check_number("quality", v, 0, 100),
        "output_format": lambda v: _check_enum("output_format", v, frozenset(FORMATS)),
        "enhancements": _check_enhancements,
        "upscale_parameters": lambda v: _check_version("upscale_parameters", v, {"v1", "text_x4"}),
        "denoise_parameters": lambda v: _check_version("denoise_parameters", v, {"v1", "v2"}),
        "deblur_parameters": lambda v: _check_version("deblur_parameters", v, {"v1", "v2"}),
        "light_parameters": lambda v: _check_light("light_parameters", v),
        "color_parameters": lambda v: _check_light("color_parameters", v),
        "white_balance_parameters": lambda v: _check_light("white_balance_parameters", v),
        "background": _check_background,
        "dpi": lambda v: _check_number("dpi", v, 1, 100000),
    }
    for name, check in checks.items():
        if name in payload:
            check(payload[name])


def _check_enhancements(value: Any) -> None:
    _check_type("enhancements", value, list)
    for item in value:
        _check_enum("enhancements", item, ENHANCEMENTS)


def _check_version(name: str, value: Any, allowed: set[str]) -> None:
    _check_keys(name, value, frozenset({"type"}))
    _check_enum(f"{name}.type", value.get("type", "v1"), frozenset(allowed))


def _check_light(name: str, value: Any) -> None:
    _check_keys(name, value, frozenset({"type", "level"}))
    if "type" in value:
        _check_enum(f"{name}.type", value["type"], LIGHT_TYPES)
    if "level" in value:
        _check_number(f"{name}.level", value["level"], 0, 1, (int, float))


def _check_background(value: Any) -> None:
    _check_keys("background", value, frozenset({"remove", "color", "replace", "generate"}))
    generate = value.get("generate")
    if generate is None:
        return
    _check_keys("background.generate", generate, GENERATE_FIELDS)
    for text in ("description", "negative_prompt", "additional_prompt", "color"):
        if text in generate:
            _check_type(f"background.generate.{text}", generate[text], str)
    if "model_type" in generate:
        _check_enum("background.generate.model_type", generate["model_type"], MODEL_TYPES)
    if "adapter_type" in generate:
        _check_enum("background.generate.adapter_type", generate["adapter_type"], ADAPTER_TYPES)
    if "sample_num" in generate:
        _check_type("background.generate.sample_num", generate["sample_num"], int)


# --------------------------------------------------------------------------- submissions


async def _read_submission(request: Request) -> tuple[dict[str, Any], bytes | None, str]:
    """The payload, the image bytes (if any) and how the image arrived."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        payload = _parse_json(form.get("parameters") or "{}")
        image = form.get("image")
        if image is not None and not isinstance(image, UploadFile):
            raise Refusal(400, "File or image url is required", None)
        data = await image.read() if image is not None else None
        return payload, data, "multipart" if data is not None else "none"
    if not ctype.startswith("application/json"):
        raise Refusal(400, "Unsupported content type")
    payload = _parse_json(await request.body())
    url = payload.pop("url", None)
    if url is None:
        return payload, None, "none"
    return payload, _decode_url(url), "base64"


def _parse_json(raw: Any) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except (TypeError, ValueError):
        raise Refusal(400, "Invalid JSON") from None
    if not isinstance(payload, dict):
        raise Refusal(400, "Invalid JSON")
    return payload


def _decode_url(url: Any) -> bytes:
    """§3.3: base64 is sent as ``"base64,<data>"``; remote URLs are not fetched here."""
    if not isinstance(url, str) or not url.startswith("base64,"):
        raise Refusal(400, "Unidentified image")
    try:
        return binascii.a2b_base64(url[len("base64,") :], strict_mode=True)
    except (binascii.Error, ValueError):
        raise Refusal(400, "Unidentified image") from None


def _open_image(data: bytes) -> tuple[tuple[int, int], str]:
    """The input's size and its file extension, from the header."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size, FORMATS.get((image.format or "").lower(), "png")
    except (UnidentifiedImageError, OSError):
        raise Refusal(400, "Unidentified image") from None


def _dimension(value: Any, base: int | None, name: str) -> int | None:
    """An int in px or ``"NNN%"`` of the input (§3.3)."""
    if value is None:
        return None
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit() and base:
        return max(1, round(base * int(value[:-1]) / 100))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Refusal(400, f"{name} has an invalid value")
    return value


def target_size(payload: dict[str, Any], source: tuple[int, int] | None) -> tuple[int, int]:
    """One side keeps the aspect ratio; both give that canvas; none keeps the input size."""
    in_w, in_h = source or (None, None)
    width = _dimension(payload.get("width"), in_w, "width")
    height = _dimension(payload.get("height"), in_h, "height")
    if width and height:
        return width, height
    if in_w is None or in_h is None:
        raise Refusal(400, "width and height are required to generate an image")
    if width:
        return width, max(1, round(in_h * width / in_w))
    if height:
        return max(1, round(in_w * height / in_h)), height
    return in_w, in_h


class DeepImageEmulator:
    def __init__(self, state: DeepImageState) -> None:
        self.state = state

    def _authorize(self, request: Request) -> None:
        key = request.headers.get("x-api-key")
        if not key:
            raise Refusal(403, "No x-api-key header is provided", None)
        if key not in self.state.api_keys:
            raise Refusal(404, "No user found for provided token", None)

    async def process_result(self, request: Request) -> Response:
        return await self._submit(request, sync=True)

    async def process(self, request: Request) -> Response:
        return await self._submit(request, sync=False)

    async def _submit(self, request: Request, *, sync: bool) -> Response:
        try:
            self._authorize(request)
            job = self._create_job(*await _read_submission(request))
        except Refusal as refusal:
            return refusal.response()
        return self._status_answer(job, request, sync=sync)

    def _create_job(self, payload: dict[str, Any], data: bytes | None, upload: str) -> EmulatedJob:
        validate(payload)
        generate = (payload.get("background") or {}).get("generate") or {}
        if generate and not generate.get("description"):
            raise Refusal(400, "background.generate.description is required")
        if data is None and generate.get("adapter_type", "generate_background") == "upscale":
            raise Refusal(400, "File or image url is required", None)
        if data is None and not generate:
            raise Refusal(400, "File or image url is required", None)
        source, ext = _open_image(data) if data is not None else (None, "jpg")
        width, height = target_size(payload, source)
        self._check_limits(width, height)
        state = self.state
        ext = FORMATS.get(payload.get("output_format", ""), ext)  # default: as the input
        job = EmulatedJob(uuid.uuid4().hex, payload, upload, source, width, height, ext, state.plan)
        if state.credits is not None:
            state.credits -= 1
        state.jobs[job.id] = job
        return job

    def _check_limits(self, width: int, height: int) -> None:
        state = self.state
        max_w, max_h = state.max_output
        if width > max_w or height > max_h:
            message = f"Image cannot be upscaled above {max_w} x {max_h} pixels limit."
            raise Refusal(400, message)
        if state.credits is not None and state.credits <= 0:
            message = "You dont have enough credits to perform those actions"
            raise Refusal(400, message, "NOT_ENOUGH_CREDITS")
        active = state.active_jobs()
        if active >= state.max_active_jobs:
            raise Refusal(
                429,
                f"Image cannot be processed right now. Your rate limit is "
                f"{state.max_active_jobs} and you are currently processing {active} images.",
                "TOO_MANY_REQUESTS",
            )

    def _status_answer(self, job: EmulatedJob, request: Request, *, sync: bool) -> Response:
        """The submission's answer: complete within the sync window, otherwise the job id."""
        if job.plan.fail_on_poll == 0:
            return self._fail(job)
        if sync and job.plan.polls == 0:
            return self._complete(job, request)
        job.status = "in_progress" if sync else "received"
        return JSONResponse({"status": job.status, "job": job.id})

    def _complete(self, job: EmulatedJob, request: Request) -> Response:
        job.status = "complete"
        base = self.state.result_base or str(request.base_url).rstrip("/")
        url = f"{base}/images/{date.today().isoformat()}/{job.id}.{job.ext}"
        return JSONResponse({"status": "complete", "job": job.id, "result_url": url})

    def _fail(self, job: EmulatedJob) -> Response:
        job.status = "failed"
        if self.state.credits is not None:  # "No credits were lost"
            self.state.credits += 1
        return _failed(job)

    async def result(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except Refusal as refusal:
            return refusal.response()
        job = self.state.jobs.get(request.path_params["job"])
        if job is None:
            return JSONResponse({"message": "Job not found"}, status_code=404)
        if job.deleted:
            return JSONResponse({"message": "Image deleted", "status": "complete"}, 404)
        return self._advance(job, request)

    def _advance(self, job: EmulatedJob, request: Request) -> Response:
        """One status poll moves the job one step (received -> in_progress -> complete)."""
        job.polls += 1
        if job.status == "failed":
            return _failed(job)
        if job.status != "complete" and job.plan.fail_on_poll == job.polls:
            return self._fail(job)
        if job.status == "complete" or job.polls >= max(job.plan.polls, 1):
            return self._complete(job, request)
        job.status = "in_progress"
        return JSONResponse({"status": "in_progress", "job": job.id})

    async def image(self, request: Request) -> Response:
        """``result_url``: a plain GET (believed public, §3.2) of a real image."""
        job_id, _, ext = request.path_params["name"].partition(".")
        job = self.state.jobs.get(job_id)
        if job is None or job.status != "complete" or job.deleted or ext != job.ext:
            return JSONResponse({"message": "Not found"}, status_code=404)
        return Response(render(job), media_type=MIME[job.ext])

    async def me(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except Refusal as refusal:
            return refusal.response()
        return JSONResponse({"username": "emulator", "credits": self.state.credits})


def _failed(job: EmulatedJob) -> Response:
    body = {"message": FAILED_MESSAGE, "status": "failed", "job": job.id}
    return JSONResponse(body, status_code=500)


def render(job: EmulatedJob) -> bytes:
    """A real image of the job's target size: one flat colour, so it is cheap to encode."""
    shade = (job.payload.get("upscale_strength") or 5) * 25
    image = Image.new("RGB", (job.width, job.height), (shade, 120, 200))
    buffer = io.BytesIO()
    image.save(buffer, format=PILLOW_FORMAT[job.ext])
    return buffer.getvalue()


def create_app(state: DeepImageState | None = None) -> ASGIApp:
    emulator = DeepImageEmulator(state if state is not None else DeepImageState())
    return Starlette(
        routes=[
            Route("/rest_api/process_result", emulator.process_result, methods=["POST"]),
            Route("/rest_api/process", emulator.process, methods=["POST"]),
            Route("/rest_api/result/{job}", emulator.result, methods=["GET"]),
            Route("/rest_api/me", emulator.me, methods=["GET"]),
            Route("/images/{day}/{name}", emulator.image, methods=["GET"]),
        ]
    )


def _factory(state: EmulatorState) -> ASGIApp:
    return create_app(state if isinstance(state, DeepImageState) else DeepImageState())


if __name__ == "__main__":
    serve_forever(_factory, "Deep-Image.ai emulator (vendors.md §3)")
