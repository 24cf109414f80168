"""The canonical form of a request: what a job stores to run it later (on any replica), and
what an Idempotency-Key's fingerprint is taken over. Parameters are the fields the caller
set (after content negotiation), as sorted JSON; the image is its decoded bytes, so the
same picture sent as JSON base64 or as a multipart file has the same fingerprint."""

from __future__ import annotations

import hashlib
import json

from app import images
from app.domain import GenerateJob, InputImage, Job, Operation, UpscaleJob
from app.schemas import GenerateParams, UpscaleParams


def serialize(job: Job) -> tuple[bytes, bytes | None]:
    params = job.params.model_dump(mode="json", exclude_unset=True)
    doc = {"operation": job.operation.value, "params": params}
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    image = job.image.data if isinstance(job, UpscaleJob) else None
    return body, image


def fingerprint(body: bytes, image: bytes | None) -> str:
    digest = hashlib.sha256(body)
    digest.update(b"\x00image:")
    if image is not None:
        digest.update(hashlib.sha256(image).digest())
    return digest.hexdigest()


def restore(body: bytes, image: bytes | None) -> Job:
    doc = json.loads(body)
    if doc["operation"] == Operation.UPSCALE.value:
        if image is None:
            raise ValueError("an upscale job without its image")
        params = UpscaleParams.model_validate(doc["params"])
        return UpscaleJob(params=params, image=InputImage(image, images.sniff(image)))
    return GenerateJob(params=GenerateParams.model_validate(doc["params"]))
