"""GET /v1/jobs/{id}, GET /v1/jobs/{id}/result (JSON) and /result/bytes (the image),
DELETE /v1/jobs/{id}: thin, over ``app.jobs.service``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api.contract import RAW_HEADERS, RAW_MEDIA_TYPES, problem_response
from app.jobs import answers, store_errors
from app.schemas import JobResource

router = APIRouter(tags=["jobs"])

_PROBLEM = {
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
}
_404: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "Unknown job, another caller's job, or expired (job_not_found)",
        **_PROBLEM,
    }
}


@router.get(
    "/v1/jobs/{job_id}",
    operation_id="getJob",
    summary="A job's status",
    response_model=JobResource,
    responses=_404,
)
async def get_job(request: Request, job_id: str) -> Response:
    with store_errors():
        _, doc = await request.app.state.jobs.find(request, job_id)
    return answers.json_response(answers.resource(doc))


@router.get(
    "/v1/jobs/{job_id}/result",
    operation_id="getJobResult",
    summary="A finished job's answer, exactly as the synchronous call would have answered",
    responses={
        200: {
            # JSON only here: generators cannot type a JSON-or-bytes answer. The image has
            # its own operation (/result/bytes); Accept: image/* here stays, undeclared.
            "description": "The ImageResponse JSON (the image's bytes: /result/bytes)",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ImageResponse"}},
            },
        },
        **_404,
        409: {"description": "Not finished yet, or canceled (job_conflict)", **_PROBLEM},
        "4XX": {"description": "The job failed: its problem, as the call would have answered"},
        "5XX": {"description": "The job failed: its problem, as the call would have answered"},
    },
)
async def get_job_result(request: Request, job_id: str) -> Response:
    with store_errors():
        repo, doc = await request.app.state.jobs.find(request, job_id)
        return await answers.final_answer(repo, doc, request.headers.get("accept"), {})


_BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    "/v1/jobs/{job_id}/result/bytes",
    operation_id="getJobResultBytes",
    summary="A finished job's image, as the /bytes operations answer it",
    response_class=Response,
    responses={
        200: {
            "description": "The image's bytes (one image: a job with n > 1 is 406). "
            "Content-Type is the image's type, or application/octet-stream when that is the "
            "only type the Accept header allows",
            "headers": RAW_HEADERS,
            "content": {media: _BINARY for media in RAW_MEDIA_TYPES},
        },
        **_404,
        406: problem_response(
            406,
            "not_acceptable",
            "The job has more than one image, or the Accept header refuses the image's type",
        ),
        409: {"description": "Not finished yet, or canceled (job_conflict)", **_PROBLEM},
        "4XX": {"description": "The job failed: its problem, as the call would have answered"},
        "5XX": {"description": "The job failed: its problem, as the call would have answered"},
    },
)
async def get_job_result_bytes(request: Request, job_id: str) -> Response:
    with store_errors():
        repo, doc = await request.app.state.jobs.find(request, job_id)
        accept = request.headers.get("accept")
        return await answers.final_answer(repo, doc, accept, {}, raw=True)


@router.delete(
    "/v1/jobs/{job_id}",
    operation_id="cancelJob",
    summary="Cancel a queued or running job",
    response_model=JobResource,
    responses={**_404, 409: {"description": "Already finished (job_conflict)", **_PROBLEM}},
)
async def cancel_job(request: Request, job_id: str) -> Response:
    with store_errors():
        doc = await request.app.state.jobs.cancel(request, job_id)
    return answers.json_response(answers.resource(doc))
