"""What callers see of a job: the job resource, and a finished job's answer rendered as the
synchronous call would have answered it (JSON, raw image bytes, or the problem)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from app import codec
from app.callers.spend import COST_HEADER, usd_text
from app.errors import JobConflict, NotAcceptable
from app.jobs.records import Doc, JobRepo
from app.service import PartsResponse, _preferred, _preferred_image

_UNTYPED = "application/octet-stream"


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def resource(doc: Doc) -> dict[str, Any]:
    """The job as ``GET /v1/jobs/{id}`` shows it (never the request, the owner or hooks)."""
    out: dict[str, Any] = {
        "id": doc["id"],
        "operation": doc["operation"],
        "status": doc["status"],
        "created_at": _time(doc["created_at"]),
        "updated_at": _time(doc["updated_at"]),
        "attempts": doc["attempts"],
    }
    for name in ("provider", "model", "error"):
        if doc.get(name) is not None:
            out[name] = doc[name]
    if doc["status"] == "succeeded":  # submitted on a /bytes operation: its bytes
        out["result_url"] = f"/v1/jobs/{doc['id']}/result" + ("/bytes" if doc.get("raw") else "")
    if doc.get("callback_url"):
        out["webhook"] = {"deliveries": doc.get("deliveries", [])}
    return out


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status, headers=headers, media_type="application/json")


def accepted(doc: Doc, extra: dict[str, str]) -> Response:
    """202 with the job and where to poll it."""
    headers = {"location": f"/v1/jobs/{doc['id']}", "retry-after": "1", **extra}
    return json_response(resource(doc), 202, headers)


async def final_answer(
    repo: JobRepo, doc: Doc, accept: str | None, extra: dict[str, str], raw: bool = False
) -> Response:
    """A finished job's answer, as the synchronous call would have given it; ``raw``: as a
    ``/bytes`` operation gives it (the image, whatever the Accept header prefers)."""
    if doc["status"] == "failed":
        return _problem(doc, extra)
    if doc["status"] != "succeeded":
        raise JobConflict(f"job {doc['id']} is {doc['status']}; it has no result")
    result = doc["result"]
    headers = {**_result_headers(doc), **extra}
    wanted = _raw_type(accept, result["images"]) if raw else _preferred(accept)
    if wanted is not None:
        return await _image_answer(repo, doc, wanted, headers)
    images = [await _stored(repo, doc, i) for i in range(len(result["images"]))]
    return _json_answer(doc, images, headers)


def _result_headers(doc: Doc) -> dict[str, str]:
    result = doc["result"]
    headers = {
        "x-image-gateway-provider": doc["provider"],
        "x-image-gateway-model": doc["model"],
        "x-image-gateway-attempts": result.get("attempt_labels", ""),
        "x-image-gateway-job": doc["id"],
    }
    if "cost" in result:
        headers[COST_HEADER] = usd_text(result["cost"]["usd"])
    return headers


async def _stored(repo: JobRepo, doc: Doc, index: int) -> bytes:
    data = await repo.image(doc["id"], index)
    if data is None:
        raise JobConflict(f"the result of job {doc['id']} has expired")
    return data


def _raw_type(accept: str | None, metas: list[dict[str, Any]]) -> str:
    """The media type a /bytes operation answers this result with (as it negotiates)."""
    current = metas[0]["mime_type"].removeprefix("image/") if len(metas) == 1 else None
    return _preferred_image(accept, current)


async def _image_answer(repo: JobRepo, doc: Doc, wanted: str, headers: dict[str, str]) -> Response:
    metas = doc["result"]["images"]
    if len(metas) != 1:
        raise NotAcceptable("raw image bytes can carry one image; ask for application/json")
    meta = metas[0]
    if wanted not in ("image/*", _UNTYPED, meta["mime_type"]):
        raise NotAcceptable(f"the result is {meta['mime_type']}, not {wanted}")
    if doc["result"]["warnings"]:
        headers["x-image-gateway-warnings"] = json.dumps(doc["result"]["warnings"])
    if meta.get("width") and meta.get("height"):
        headers["x-image-width"], headers["x-image-height"] = (
            str(meta["width"]),
            str(meta["height"]),
        )
    data = await _stored(repo, doc, 0)
    media_type = _UNTYPED if wanted == _UNTYPED else meta["mime_type"]
    return Response(content=data, media_type=media_type, headers=headers)


def _json_answer(doc: Doc, images: list[bytes], headers: dict[str, str]) -> Response:
    result = doc["result"]
    head = {"id": doc["id"], "provider": doc["provider"], "model": doc["model"]}
    parts = [json.dumps(head, separators=(",", ":"))[:-1].encode(), b',"images":[']
    for index, (data, meta) in enumerate(zip(images, result["images"], strict=True)):
        parts += [b',{"data":"' if index else b'{"data":"', codec.encode(data), b'",']
        parts.append(json.dumps(meta, separators=(",", ":"))[1:].encode())
    tail = {"warnings": result["warnings"], "timing": result["timing"]}
    if "cost" in result:
        tail["cost"] = result["cost"]
    parts += [b"],", json.dumps(tail, separators=(",", ":"))[1:].encode()]
    return PartsResponse(parts, media_type="application/json", headers=headers)


def _problem(doc: Doc, extra: dict[str, str]) -> Response:
    problem = doc["error"]
    headers = dict(extra)
    retry_after = doc.get("retry_after")
    if retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    if doc.get("result", {}).get("attempt_labels"):
        headers["x-image-gateway-attempts"] = doc["result"]["attempt_labels"]
    content = json.dumps(problem, separators=(",", ":")).encode()
    return Response(
        content, problem["status"], headers=headers, media_type="application/problem+json"
    )
