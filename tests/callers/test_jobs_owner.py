"""Async jobs carry the caller's key id: a key sees only its own jobs, and the job's cost is
recorded against it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.callers.keys import CallerKey, digest, new_secret, write_key_file
from tests.conftest import gateway, make_settings, png_bytes

pytestmark = pytest.mark.anyio


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


async def final(client: httpx.AsyncClient, job_id: str, headers: dict[str, str]) -> Any:
    for _ in range(2000):  # a small local job: ask until it is final
        job = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
    raise AssertionError("the job did not finish")


async def test_a_key_sees_only_its_own_jobs(tmp_path: Path) -> None:
    secrets = {k: new_secret(k) for k in ("alice", "bob")}
    path = tmp_path / "keys.json"
    write_key_file(path, [CallerKey(id=k, hash=digest(s)) for k, s in secrets.items()])
    settings = make_settings(
        callers={"keys_file": path},
        state={"data_dir": tmp_path / "state"},
        jobs={"consumer": "test"},
    )
    body = {"image": base64.b64encode(png_bytes(32, 24)).decode(), "scale": 2}
    alice, bob = bearer(secrets["alice"]), bearer(secrets["bob"])
    async with gateway(settings) as client:
        anonymous = await client.post("/v1/upscale", json=body, headers={"prefer": "respond-async"})
        accepted = await client.post(
            "/v1/upscale", json=body, headers={"prefer": "respond-async", **alice}
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        done = await final(client, job_id, alice)
        others = await client.get(f"/v1/jobs/{job_id}", headers=bob)
        nobody = await client.get(f"/v1/jobs/{job_id}")
        result = await client.get(f"/v1/jobs/{job_id}/result", headers=alice)
        stolen = await client.get(f"/v1/jobs/{job_id}/result", headers=bob)
        usage = await client.get("/v1/usage", headers=alice)
    assert anonymous.status_code == 401
    assert done["status"] == "succeeded"
    assert others.status_code == stolen.status_code == 404  # not even its existence
    assert nobody.status_code == 401
    assert result.status_code == 200 and result.json()["cost"]["usd"] == 0.0
    [mine] = usage.json()["keys"]
    assert mine["key"] == "alice" and mine["requests"] == 1
