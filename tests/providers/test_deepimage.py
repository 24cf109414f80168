"""The deepimage provider over real HTTP against the Deep-Image emulator (vendors.md §3):
the sync window and polling, generative and prompt-guided upscale, text-to-image, both
upload forms, every mapped error, the deadline, the result download, and the gateway end
to end. Poll waits run on a fake clock, so no test waits for real backoff."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from app.domain import CallContext, Deadline, GenerateJob, InputImage, UpscaleJob
from app.errors import (
    GatewayError,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    ValidationFailed,
)
from app.images import sniff
from app.providers import deepimage as deepimage_module
from app.providers.deepimage import DeepImageProvider, default_poll_delays
from app.providers.deepimage_limits import (
    GENERATE_MODELS,
    STRENGTH_BANDS,
    generate_size,
    strength_for_creativity,
)
from app.schemas import GenerateParams, UpscaleParams
from app.server import configure_logging
from tests.conftest import FakeClock, gateway, make_settings, png_bytes
from tests.emulators.common import EmulatorServer, EmulatorState, Fault
from tests.emulators.deepimage import DEFAULT_API_KEY, DeepImageState, JobPlan, create_app

pytestmark = pytest.mark.anyio

KEY = DEFAULT_API_KEY
PNG = png_bytes(32, 24)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    state = DeepImageState()
    with EmulatorServer(create_app(state), state) as running:
        yield running


@pytest.fixture
def state(server: EmulatorServer) -> DeepImageState:
    assert isinstance(server.state, DeepImageState)
    server.state.reset()
    return server.state


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def settings_for(url: str, key: str = KEY, **deepimage: Any) -> Any:
    return make_settings(deepimage={"api_key": key, "base_url": url, **deepimage})


@pytest.fixture
async def provider(
    server: EmulatorServer, state: DeepImageState, clock: FakeClock
) -> AsyncIterator[DeepImageProvider]:
    async with started(settings_for(server.url), clock) as running:
        yield running


class started:
    """A started provider whose poll sleeps run on ``clock``."""

    def __init__(self, settings: Any, clock: FakeClock) -> None:
        self.provider = DeepImageProvider(settings)
        self.provider.sleep = clock.sleep

    async def __aenter__(self) -> DeepImageProvider:
        await self.provider.start()
        return self.provider

    async def __aexit__(self, *exc: object) -> None:
        await self.provider.aclose()


def ctx(clock: FakeClock, seconds: float = 60.0) -> CallContext:
    return CallContext(request_id="test", deadline=Deadline(seconds, clock=clock))


def upscale(data: bytes = PNG, **params: Any) -> UpscaleJob:
    text = base64.b64encode(data).decode()
    return UpscaleJob(UpscaleParams(**params), InputImage(data, sniff(data), text))


def generate(**params: Any) -> GenerateJob:
    return GenerateJob(GenerateParams(**params))


async def run(provider: DeepImageProvider, job: Any, clock: FakeClock, seconds: float = 60) -> Any:
    return await provider.execute(provider.prepare(job), ctx(clock, seconds))


async def failure(provider: DeepImageProvider, job: Any, clock: FakeClock) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await run(provider, job, clock)
    error = caught.value
    assert KEY not in error.detail and "127.0.0.1" not in error.detail
    assert "/rest_api/" not in error.detail and "/images/" not in error.detail
    return error


def only_job(state: DeepImageState) -> Any:
    [job] = state.jobs.values()
    return job


def pixels(data: bytes) -> tuple[int, int, str | None]:
    image = Image.open(io.BytesIO(data))
    return image.width, image.height, image.format


# --------------------------------------------------------------------------- sync window, polling


async def test_fast_job_is_answered_within_the_sync_window(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    result = await run(provider, upscale(scale=2), clock)
    [image] = result.images
    assert (image.width, image.height, image.mime_type) == (64, 48, "image/png")
    assert pixels(image.as_bytes()) == (64, 48, "PNG")
    assert [r.path.split("/")[1] for r in state.requests] == ["rest_api", "images"]
    assert state.requests[0].path == "/rest_api/process_result"
    assert state.requests[0].headers["x-api-key"] == KEY
    assert clock.sleeps == [] and result.model == "v1" and result.warnings == []
    assert only_job(state).payload == {"width": 64, "generative_upscale": False}


async def test_slow_job_is_answered_by_polling(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    state.plan = JobPlan(polls=4)
    result = await run(provider, upscale(width=96), clock)
    job = only_job(state)
    assert state.polls_of(job.id) == 4 and job.status == "complete"
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert all(r.headers["x-api-key"] == KEY for r in state.requests_to("/rest_api/"))
    assert (result.images[0].width, result.images[0].height) == (96, 72)


def test_default_backoff_doubles_up_to_five_seconds() -> None:
    assert list(itertools.islice(default_poll_delays(), 7)) == [0.5, 1, 2, 4, 5, 5, 5]


# --------------------------------------------------------------------------- generative upscale


@pytest.mark.parametrize(
    ("creativity", "strength", "band"),
    [
        (1.0, 1, "strong"),
        (0.8, 3, "strong"),
        (0.6, 4, "medium"),
        (0.5, 5, "medium"),
        (0.4, 6, "medium"),
        (0.3, 7, "off"),
        (0.0, 9, "off"),
    ],
)
async def test_creativity_maps_onto_each_strength_band(
    provider: DeepImageProvider,
    state: DeepImageState,
    clock: FakeClock,
    creativity: float,
    strength: int,
    band: str,
) -> None:
    await run(provider, upscale(scale=2, creativity=creativity), clock)
    payload = only_job(state).payload
    assert payload["generative_upscale"] is True
    assert payload["upscale_strength"] == strength
    assert strength in STRENGTH_BANDS[band]


def test_creativity_mapping_covers_the_dial_monotonically() -> None:
    values = [strength_for_creativity(step / 64) for step in range(65)]
    assert sorted(set(values)) == list(range(1, 10))
    assert values == sorted(values, reverse=True)  # more creativity, lower strength (§3.4)


async def test_options_strength_wins_over_creativity(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    options = {"deepimage": {"upscale_strength": 8}}
    await run(provider, upscale(creativity=1.0, options=options), clock)
    assert only_job(state).payload["upscale_strength"] == 8


async def test_prompt_guided_upscale(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    job = upscale(width=64, prompt="small cottage, cows, sunset", creativity=0.6)
    result = await run(provider, job, clock)
    assert only_job(state).payload == {
        "width": 64,
        "generative_upscale": True,
        "upscale_strength": 4,
        "background": {
            "generate": {"adapter_type": "upscale", "description": "small cottage, cows, sunset"}
        },
    }
    assert (result.images[0].width, result.images[0].height) == (64, 48)


async def test_vendor_options_model_and_output_are_sent(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    options = {
        "deepimage": {
            "generative_upscale": True,
            "enhancements": ["denoise", "light"],
            "denoise_parameters": {"type": "v2"},
            "light_parameters": {"type": "hdr_light", "level": 0.5},
        }
    }
    job = upscale(
        height=72, model="text_x4", options=options, output={"format": "webp", "quality": 70}
    )
    result = await run(provider, job, clock)
    assert only_job(state).payload == {
        "height": 72,
        "generative_upscale": True,
        "upscale_parameters": {"type": "text_x4"},
        "output_format": "webp",
        "quality": 70,
        "enhancements": ["denoise", "light"],
        "denoise_parameters": {"type": "v2"},
        "light_parameters": {"type": "hdr_light", "level": 0.5},
    }
    [image] = result.images
    assert (image.mime_type, image.width, image.height, result.model) == (
        "image/webp",
        96,
        72,
        "text_x4",
    )


async def test_beyond_four_x_is_allowed_with_a_bicubic_warning(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    four = await run(provider, upscale(scale=4), clock)
    six = await run(provider, upscale(scale=6), clock)
    assert four.warnings == []
    assert len(six.warnings) == 1 and "bicubic" in six.warnings[0] and "4x" in six.warnings[0]
    assert (six.images[0].width, six.images[0].height) == (192, 144)


# --------------------------------------------------------------------------- uploads


async def test_small_image_goes_inline_as_base64_url(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    await run(provider, upscale(scale=2), clock)
    submit = state.requests[0]
    assert submit.headers["content-type"] == "application/json"
    body = submit.json()
    assert body["url"] == "base64," + base64.b64encode(PNG).decode()
    assert only_job(state).upload == "base64"


async def test_large_image_goes_as_multipart(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    provider.inline_max_bytes = 0
    jpeg = png_bytes(40, 20, fmt="JPEG")
    result = await run(provider, upscale(jpeg, width=80), clock)
    submit = state.requests[0]
    assert submit.headers["content-type"].startswith("multipart/form-data")
    assert b'name="parameters"' in submit.body and b'name="image"' in submit.body
    job = only_job(state)
    assert (job.upload, job.input_size) == ("multipart", (40, 20))
    assert job.payload == {"width": 80, "generative_upscale": False}
    assert (result.images[0].mime_type, result.images[0].height) == ("image/jpeg", 40)


# --------------------------------------------------------------------------- text-to-image


async def test_text_to_image(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    job = generate(
        prompt="a red fox in snow",
        negative_prompt="blurry",
        seed=42,
        model="fantasy",
        width=96,
        height=64,
        output={"format": "png"},
    )
    result = await run(provider, job, clock)
    emulated = only_job(state)
    assert emulated.upload == "none" and "url" not in state.requests[0].json()
    assert emulated.payload == {
        "width": 96,
        "height": 64,
        "background": {
            "generate": {
                "description": "a red fox in snow",
                "model_type": "fantasy",
                "negative_prompt": "blurry",
                "sample_num": 42,
            }
        },
        "output_format": "png",
    }
    [image] = result.images
    assert (image.width, image.height, image.mime_type, result.model) == (
        96,
        64,
        "image/png",
        "fantasy",
    )


async def test_text_to_image_polls_too(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    state.plan = JobPlan(polls=2)
    result = await run(provider, generate(prompt="a lighthouse", aspect_ratio="16:9"), clock)
    assert (result.images[0].width, result.images[0].height) == (1024, 576)
    assert result.images[0].mime_type == "image/jpeg" and result.model == "realistic"
    assert state.polls_of(only_job(state).id) == 2


@pytest.mark.parametrize(
    ("fields", "size"),
    [
        ({}, (1024, 1024)),
        ({"aspect_ratio": "16:9"}, (1024, 576)),
        ({"aspect_ratio": "9:16"}, (576, 1024)),
        ({"aspect_ratio": "3:2"}, (1024, 680)),
        ({"width": 300}, (300, 300)),
        ({"width": 300, "height": 200}, (300, 200)),
    ],
)
def test_generate_size(fields: dict[str, Any], size: tuple[int, int]) -> None:
    assert generate_size(GenerateParams(prompt="x", **fields)) == size


# --------------------------------------------------------------------------- validation (no call)


#: Requests the table refuses before any call (the dry-run suite replays them too).
REFUSED_BEFORE_ANY_CALL: list[tuple[Any, tuple[Any, ...]]] = [
    (lambda: generate(prompt="two cats", n=2), ("n",)),
    (lambda: generate(prompt="x", model="dall-e"), ("model",)),
    (lambda: upscale(model="realistic"), ("model",)),
    (lambda: upscale(width=20), ("width",)),
    (lambda: upscale(options={"deepimage": {"upscale_strength": 10}}),
     ("options", "deepimage", "upscale_strength")),
    (lambda: upscale(options={"deepimage": {"strength": 5}}),
     ("options", "deepimage", "strength")),
    (lambda: upscale(options={"deepimage": {"enhancements": ["sharpen"]}}),
     ("options", "deepimage", "enhancements", 0)),
    (lambda: upscale(creativity=0.5, options={"deepimage": {"generative_upscale": False}}),
     ("creativity",)),
    (lambda: upscale(prompt="cows", options={"deepimage": {"generative_upscale": False}}),
     ("prompt",)),
]  # fmt: skip


@pytest.mark.parametrize(("job", "loc"), REFUSED_BEFORE_ANY_CALL)
def test_refused_before_any_call(
    server: EmulatorServer, state: DeepImageState, job: Any, loc: tuple[Any, ...]
) -> None:
    provider = DeepImageProvider(settings_for(server.url))
    with pytest.raises(ValidationFailed) as caught:
        provider.prepare(job())
    assert caught.value.status == 422 and caught.value.provider == "deepimage"
    assert [e.loc for e in caught.value.errors] == [loc]
    assert all(e.limit and e.limit.startswith("deepimage: ") for e in caught.value.errors)
    assert state.requests == []


def test_limits_and_options_are_data(server: EmulatorServer) -> None:
    catalog = DeepImageProvider(settings_for(server.url)).catalog()
    upscale_models = [m.model for m in catalog.models if "upscale" in m.operations]
    generate_models = [m.model for m in catalog.models if "generate" in m.operations]
    assert upscale_models == ["v1", "text_x4"]
    assert generate_models == list(GENERATE_MODELS)
    assert catalog.default_models == {"generate": "realistic", "upscale": "v1"}
    assert all(m.n is not None and m.n.max == 1 for m in catalog.models if m.model == "realistic")
    schema = catalog.options_schema or {}
    strength = schema["properties"]["upscale_strength"]["anyOf"][0]
    assert (strength["minimum"], strength["maximum"]) == (1, 9)
    assert schema["additionalProperties"] is False


# --------------------------------------------------------------------------- vendor errors


async def test_no_credits_is_502_naming_exhausted_credits(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    state.credits = 0
    error = await failure(provider, upscale(), clock)
    assert isinstance(error, UpstreamError) and error.status == 502
    assert "credits are exhausted" in error.detail and not error.retryable


@pytest.mark.parametrize(("key", "status"), [("", 403), ("not-a-real-key-42", 404)])
async def test_refused_credentials_are_502(
    server: EmulatorServer, state: DeepImageState, clock: FakeClock, key: str, status: int
) -> None:
    async with started(settings_for(server.url, key=key), clock) as provider:
        error = await failure(provider, upscale(), clock)
    assert isinstance(error, UpstreamError) and error.status == 502
    assert f"credentials were refused (HTTP {status})" in error.detail
    assert key == "" or key not in error.detail
    assert state.requests[0].headers.get("x-api-key", "") == key


async def test_concurrency_limit_is_429_and_retryable(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    state.max_active_jobs, state.plan = 0, JobPlan()
    error = await failure(provider, upscale(), clock)
    assert isinstance(error, RateLimited) and error.status == 429
    assert error.retryable and error.retry_after is None and error.reason == "rate_limited"


async def test_429_retry_after_is_passed_on(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    body = {"message": "API rate limit has been reached", "code": "TOO_MANY_REQUESTS"}
    state.add_fault(Fault(kind="status", status=429, body=body, headers={"retry-after": "7"}))
    error = await failure(provider, upscale(), clock)
    assert isinstance(error, RateLimited) and error.retry_after == 7


async def test_over_limit_is_422(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    state.max_output = (100, 100)
    error = await failure(provider, upscale(scale=4), clock)
    assert isinstance(error, ValidationFailed) and error.status == 422
    [field] = error.errors
    assert field.loc == ("scale",)
    assert field.limit == "deepimage: Image cannot be upscaled above 100 x 100 pixels limit."


async def test_failed_submission_is_502_and_retryable(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    state.plan = JobPlan(fail_on_poll=0)
    error = await failure(provider, upscale(), clock)
    assert isinstance(error, UpstreamError) and error.status == 502
    assert error.retryable and error.reason == "server_error"  # "No credits were lost"


async def test_job_failing_mid_way_is_502(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    state.plan = JobPlan(polls=5, fail_on_poll=2)
    error = await failure(provider, upscale(), clock)
    assert isinstance(error, UpstreamError) and "failed to process" in error.detail
    assert state.polls_of(only_job(state).id) == 2


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (Fault(kind="status", status=404, body={"message": "Job not found"}, path="/result/"),
         "no longer knows the job"),
        (Fault(kind="status", status=400, body={"message": "Unidentified image",
                                                 "code": "BAD_REQUEST"}),
         "rejected the request (HTTP 400: Unidentified image)"),
        (Fault(kind="status", status=403,
               body={"message": "No more requests are available. Next requests available 2030"}),
         "no requests left"),
        (Fault(kind="status", status=401, body={"message": "Email has not been confirmed"}),
         "credentials were refused (HTTP 401)"),
        (Fault(kind="malformed"), "not JSON"),
        (Fault(kind="status", status=200, body={"status": "queued?", "job": "j"}),
         "unexpected job status"),
        (Fault(kind="status", status=200, body={"status": "complete", "job": "j"}),
         "without a result_url"),
        (Fault(kind="status", status=502, body="<html>bad gateway</html>"), "HTTP 502"),
        (Fault(kind="reset"), "failed mid-response"),
    ],
)  # fmt: skip
async def test_other_vendor_answers_are_502(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock, fault: Fault, words: str
) -> None:
    state.plan = JobPlan(polls=1)
    state.add_fault(fault)
    error = await failure(provider, upscale(), clock)
    assert error.status == 502 and words in error.detail


async def test_vendor_messages_are_redacted(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    message = f"key {KEY} refused for https://deep-image.ai/rest_api/result/abc?x={KEY}"
    state.add_fault(Fault(kind="status", status=400, body={"message": message}))
    error = await failure(provider, upscale(), clock)
    assert error.detail == "deepimage rejected the request (HTTP 400: key *** refused for <url>)"


async def test_unreachable_vendor_is_503_and_retryable(
    state: DeepImageState, clock: FakeClock
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago refuses connections
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with started(settings_for(url), clock) as provider:
        error = await failure(provider, upscale(), clock)
    assert isinstance(error, ProviderUnavailable) and error.retryable


# --------------------------------------------------------------------------- the deadline


async def test_deadline_expiring_mid_poll_is_504_and_leaves_the_job_alone(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    state.plan = JobPlan(polls=1000)
    tasks_before = asyncio.all_tasks()
    with pytest.raises(UpstreamTimeout) as caught:
        await run(provider, upscale(), clock, seconds=5.0)
    error = caught.value
    assert (error.status, error.reason, error.retryable) == (504, "timeout", False)
    assert KEY not in error.detail and "/rest_api/" not in error.detail
    job = only_job(state)
    assert clock.sleeps == [0.5, 1.0, 2.0, 1.5]  # the last wait ends at the deadline
    assert state.polls_of(job.id) == 3  # ... and no poll follows it
    assert asyncio.all_tasks() == tasks_before  # polling ran inline: nothing left running
    state.plan = JobPlan()
    await run(provider, upscale(), clock)  # the client still works; the old job stays alone
    assert state.polls_of(job.id) == 3 and job.status == "in_progress"


async def test_submission_that_outlives_the_deadline_is_504(
    provider: DeepImageProvider, state: DeepImageState
) -> None:
    state.add_fault(Fault(kind="hang"))
    deadline = CallContext(request_id="t", deadline=Deadline(0.2))
    with pytest.raises(UpstreamTimeout) as caught:
        await provider.execute(provider.prepare(upscale()), deadline)
    assert caught.value.status == 504 and caught.value.reason == "timeout"


async def test_expired_deadline_sends_nothing(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    with pytest.raises(UpstreamTimeout):
        await run(provider, upscale(), clock, seconds=0)
    assert state.requests == []


# --------------------------------------------------------------------------- result download


@pytest.fixture
def storage(state: DeepImageState) -> Iterator[tuple[EmulatorServer, DeepImageState]]:
    """A second host standing in for S3: it serves the vendor's result files (§3.2)."""
    files = DeepImageState()
    files.jobs = state.jobs
    with EmulatorServer(create_app(files), files) as running:
        state.result_base = running.url
        yield running, files


async def test_result_on_another_host_gets_no_api_key(
    provider: DeepImageProvider,
    state: DeepImageState,
    clock: FakeClock,
    storage: tuple[EmulatorServer, DeepImageState],
) -> None:
    _, files = storage
    result = await run(provider, upscale(scale=2), clock)
    [download] = files.requests
    assert download.path.startswith("/images/") and "x-api-key" not in download.headers
    assert state.requests_to("/images/") == []
    assert pixels(result.images[0].as_bytes())[:2] == (64, 48)


async def test_a_signed_result_url_stays_out_of_the_logs(
    provider: DeepImageProvider,
    server: EmulatorServer,
    state: DeepImageState,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    signed = f"{server.url}/images/2025-01-01/job.png?X-Amz-Signature=secret-signature-31337"
    body = {"status": "complete", "job": "job", "result_url": signed}
    state.add_fault(Fault(kind="status", status=200, body=body, path="/rest_api/"))
    state.add_fault(Fault(kind="status", status=200, body=PNG, path="/images/"))
    configure_logging("debug")  # what the server does, even at its most verbose
    with caplog.at_level(logging.DEBUG):
        result = await run(provider, upscale(), clock)
    assert state.requests[-1].query == "X-Amz-Signature=secret-signature-31337"  # sent intact
    assert result.images[0].width == 32
    lines = [record.getMessage() for record in caplog.records]
    assert not any("secret-signature" in line for line in lines)


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://127.0.0.1/a.png", "//no-scheme/a.png", "http://"]
)
async def test_result_location_must_be_http(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock, location: str
) -> None:
    body = {"status": "complete", "job": "j", "result_url": location}
    state.add_fault(Fault(kind="status", status=200, body=body))
    error = await failure(provider, upscale(), clock)
    assert "http(s)" in error.detail or "not a URL" in error.detail
    assert location not in error.detail and len(state.requests) == 1


async def test_result_over_the_size_cap_is_refused(
    server: EmulatorServer, state: DeepImageState, clock: FakeClock
) -> None:
    async with started(settings_for(server.url, max_result_bytes=64), clock) as provider:
        error = await failure(provider, upscale(), clock)
    assert "over 64 bytes" in error.detail and error.reason == "bad_response"


async def test_streamed_result_is_capped_while_reading(
    server: EmulatorServer, state: DeepImageState, clock: FakeClock
) -> None:
    async def chunked(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):  # no Content-Length: only the running count can stop it
                yield b"\x89PNG" + b"x" * 65_532

        return StreamingResponse(chunks(), media_type="image/png")

    app = Starlette(routes=[Route("/images/{day}/{name}", chunked)])
    settings = settings_for(server.url, max_result_bytes=200_000)
    with EmulatorServer(app, EmulatorState()) as files:
        state.result_base = files.url
        async with started(settings, clock) as provider:
            error = await failure(provider, upscale(), clock)
    assert len(files.state.requests) == 1
    assert "over 200000 bytes" in error.detail and error.reason == "bad_response"


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (Fault(kind="status", status=404, body="<Error>NoSuchKey</Error>", path="/images/"),
         "HTTP 404 to the result download"),
        (Fault(kind="status", status=200, body=b"GIF89a not a png", path="/images/"),
         "not a png, jpeg or webp"),
        (Fault(kind="truncate", body=PNG, path="/images/"), "failed mid-response"),
    ],
)  # fmt: skip
async def test_bad_result_downloads_are_502(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock, fault: Fault, words: str
) -> None:
    state.add_fault(fault)
    error = await failure(provider, upscale(), clock)
    assert error.status == 502 and words in error.detail and not error.retryable


async def test_unexpected_result_format_is_a_warning(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    state.add_fault(Fault(kind="status", status=200, body=png_bytes(8, 8), path="/images/"))
    result = await run(provider, upscale(output={"format": "jpeg"}), clock)
    assert result.warnings == ["deepimage returned png instead of jpeg"]
    assert result.images[0].mime_type == "image/png"


# --------------------------------------------------------------------------- end to end


def gateway_settings(url: str, key: str = KEY) -> Any:
    return make_settings(
        deepimage={"api_key": key, "base_url": url},
        routing={"upscale": ["deepimage"], "generate": ["deepimage"]},
        retry={"max_attempts": 1},
    )


@pytest.fixture
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real sleeps in the gateway, but tiny ones."""
    monkeypatch.setattr(deepimage_module, "default_poll_delays", lambda: itertools.repeat(0.005))


async def test_gateway_upscale(
    server: EmulatorServer, state: DeepImageState, quick_polls: None
) -> None:
    state.plan = JobPlan(polls=2)
    body = {
        "image": base64.b64encode(PNG).decode(),
        "scale": 2,
        "prompt": "crisp brick texture",
        "options": {"deepimage": {"upscale_strength": 2}},
    }
    async with gateway(gateway_settings(server.url)) as client:
        response = await client.post("/v1/upscale", json=body)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert (doc["provider"], doc["model"]) == ("deepimage", "v1")
    [image] = doc["images"]
    assert (image["width"], image["height"], image["mime_type"]) == (64, 48, "image/png")
    assert pixels(base64.b64decode(image["data"])) == (64, 48, "PNG")
    payload = only_job(state).payload
    assert payload["upscale_strength"] == 2 and payload["background"]["generate"]["description"]


async def test_gateway_generate_raw_bytes(server: EmulatorServer, state: DeepImageState) -> None:
    body = {"prompt": "a paper boat", "width": 80, "height": 48, "seed": 7}
    async with gateway(gateway_settings(server.url)) as client:
        response = await client.post("/v1/generate", json=body, headers={"accept": "image/webp"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["x-image-gateway-provider"] == "deepimage"
    assert pixels(response.content) == (80, 48, "WEBP")
    assert only_job(state).payload["output_format"] == "webp"


async def test_gateway_refuses_n_above_one(server: EmulatorServer, state: DeepImageState) -> None:
    async with gateway(gateway_settings(server.url)) as client:
        response = await client.post("/v1/generate", json={"prompt": "cats", "n": 2})
    assert response.status_code == 422
    assert response.json()["errors"][0]["limit"] == "deepimage: n must be >= 1 and <= 1"
    assert state.requests == []


async def test_gateway_bad_key_is_502_without_the_key(
    server: EmulatorServer, state: DeepImageState
) -> None:
    secret = "sk-live-do-not-leak-0123"
    async with gateway(gateway_settings(server.url, key=secret)) as client:
        response = await client.post("/v1/upscale", json={"image": base64.b64encode(PNG).decode()})
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert (
        response.json()["code"] == "upstream_error" and "credentials" in response.json()["detail"]
    )
    assert secret not in response.text and server.url not in response.text


async def test_gateway_no_credits_is_502(server: EmulatorServer, state: DeepImageState) -> None:
    state.credits = 0
    async with gateway(gateway_settings(server.url)) as client:
        response = await client.post("/v1/generate", json={"prompt": "a boat"})
    assert response.status_code == 502 and "credits" in response.json()["detail"]


async def test_gateway_deadline_mid_poll_is_504(
    server: EmulatorServer, state: DeepImageState, quick_polls: None
) -> None:
    state.plan = JobPlan(polls=10**6)
    async with gateway(gateway_settings(server.url)) as client:
        tasks_before = asyncio.all_tasks()
        response = await client.post(
            "/v1/generate", json={"prompt": "a slow boat"}, headers={"x-request-timeout": "0.3"}
        )
        assert asyncio.all_tasks() == tasks_before
        polls = state.polls_of(only_job(state).id)
        assert (await client.get("/healthz")).status_code == 200
    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"
    assert polls > 0 and state.polls_of(only_job(state).id) == polls
    assert only_job(state).status == "in_progress"


# ------------------------------------------------------------- durable jobs (app.jobs)


async def test_the_job_hash_is_handed_over_before_the_first_poll(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    state.plan = JobPlan(polls=2)
    seen: list[tuple[str, str, int]] = []

    async def on_vendor_job(pid: str, handle: str) -> None:
        seen.append((pid, handle, state.polls_of(handle)))

    context = CallContext(
        request_id="t", deadline=Deadline(60, clock=clock), on_vendor_job=on_vendor_job
    )
    await provider.execute(provider.prepare(upscale(scale=2)), context)
    (job,) = state.jobs.values()
    assert seen == [("deepimage", job.id, 0)]


async def test_resume_polls_the_stored_job_and_never_submits(
    provider: DeepImageProvider, state: DeepImageState, clock: FakeClock
) -> None:
    state.plan = JobPlan(polls=3)
    first = CallContext(request_id="t", deadline=Deadline(0.6, clock=clock))
    with pytest.raises(GatewayError):  # the first run stops (here: its deadline) mid-poll
        await provider.execute(provider.prepare(upscale(scale=2)), first)
    (job,) = state.jobs.values()
    submissions = len(state.requests_to("/rest_api/process"))
    resumed = CallContext(
        request_id="t", deadline=Deadline(60, clock=clock), resume={"deepimage": job.id}
    )
    result = await provider.execute(provider.prepare(upscale(scale=2)), resumed)
    assert (result.images[0].width, result.images[0].height) == (64, 48)
    assert len(state.requests_to("/rest_api/process")) == submissions == 1
    assert len(state.jobs) == 1
