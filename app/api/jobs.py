"""GET /v1/jobs/{id}, GET /v1/jobs/{id}/result, DELETE /v1/jobs/{id}: thin, over
``app.jobs.service``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

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
            # JSON only in the contract: generators cannot type a JSON-or-bytes answer (the
            # raw image for Accept: image/* stays, undeclared, as on /v1/upscale).
            "description": "The ImageResponse JSON (or, undeclared, the raw image for "
            "Accept: image/*)",
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
