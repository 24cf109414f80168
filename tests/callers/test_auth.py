"""Caller keys on the operation endpoints: 401 / 403 / 200, the /metrics token, the warning
for an open port without keys, and the canary: a secret appears in no log line, metric,
header or error."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import metrics
from app.callers.auth import Callers
from app.callers.keys import CallerKey, digest, new_secret, write_key_file
from app.main import create_app
from app.settings import CallersSettings
from tests.conftest import FakeClock, gateway, make_settings, png_bytes

pytestmark = pytest.mark.anyio

IMAGE = base64.b64encode(png_bytes(40, 30)).decode()
UPSCALE = {"image": IMAGE, "scale": 2}


def key_file(tmp_path: Path, **scopes: dict[str, Any]) -> tuple[Path, dict[str, str]]:
    """A key file with one key per entry of ``scopes``; returns it and the secrets by id."""
    secrets = {key_id: new_secret(key_id) for key_id in scopes}
    keys = [
        CallerKey.model_validate({"id": key_id, "hash": digest(secrets[key_id]), **fields})
        for key_id, fields in scopes.items()
    ]
    path = tmp_path / "keys.json"
    write_key_file(path, keys)
    return path, secrets


async def upscale(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await client.post("/v1/upscale", json={**UPSCALE, **body}, headers=headers)


def state_in(tmp_path: Path) -> dict[str, Any]:
    """The embedded store under the test's own directory (never ./data)."""
    return {"data_dir": tmp_path / "state"}


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


async def test_no_key_401_wrong_scope_403_valid_key_200(tmp_path: Path) -> None:
    path, secrets = key_file(
        tmp_path,
        **{
            "team-a": {},
            "gen-only": {"operations": ["generate"]},
            "venice-only": {"providers": ["venice"]},
        },
    )
    async with gateway(
        make_settings(callers={"keys_file": path}, state=state_in(tmp_path))
    ) as client:
        missing = await upscale(client, {})
        wrong = await upscale(client, bearer(secrets["team-a"] + "x"))
        basic = await upscale(client, {"authorization": "Basic dXNlcjpwdw=="})
        op_scope = await upscale(client, bearer(secrets["gen-only"]))
        provider_scope = await upscale(client, bearer(secrets["venice-only"]), provider="local")
        routed_scope = await upscale(client, bearer(secrets["venice-only"]))
        ok_bearer = await upscale(client, bearer(secrets["team-a"]))
        ok_header = await upscale(client, {"x-api-key": secrets["team-a"]})
        providers = await client.get("/v1/providers")  # not an operation: no key needed
    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == 'Bearer realm="image-gateway"'
    assert (
        wrong.headers["www-authenticate"] == 'Bearer realm="image-gateway", error="invalid_token"'
    )
    for response in (op_scope, provider_scope, routed_scope):
        assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert "upscale" in op_scope.json()["detail"] and "'local'" in provider_scope.json()["detail"]
    for response in (ok_bearer, ok_header):
        assert response.status_code == 200 and response.json()["provider"] == "local"
    assert providers.status_code == 200


async def test_keys_are_off_without_a_key_file() -> None:
    async with gateway(make_settings()) as client:
        response = await upscale(client, {})
    assert response.status_code == 200


async def test_an_empty_key_file_refuses_everyone(tmp_path: Path) -> None:
    path, _ = key_file(tmp_path)
    async with gateway(
        make_settings(callers={"keys_file": path}, state=state_in(tmp_path))
    ) as client:
        response = await upscale(client, bearer(new_secret("someone")))
    assert response.status_code == 401


async def test_key_id_in_access_log_and_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, secrets = key_file(tmp_path, **{"team-log": {}})
    caplog.set_level(logging.INFO, logger="image_gateway.access")
    async with gateway(
        make_settings(callers={"keys_file": path}, state=state_in(tmp_path))
    ) as client:
        ok = await upscale(client, bearer(secrets["team-log"]))
        refused = await upscale(client, {})
    assert ok.status_code == 200 and refused.status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "image_gateway.access"]
    assert '"caller": "team-log"' in lines[0] and '"cost_usd": 0.0' in lines[0]
    assert '"caller": null' in lines[1]
    text = metrics.render()[0].decode()
    requests = 'caller="team-log",operation="upscale",status_code="200"} 1.0'
    assert "image_gateway_caller_requests_total{" + requests in text
    assert 'caller="none",operation="upscale",status_code="401"' in text
    cost = 'caller="team-log",model="lanczos",operation="upscale",provider="local"} 0.0'
    assert "image_gateway_cost_usd_total{" + cost in text


async def test_metrics_token(tmp_path: Path) -> None:
    token = "metrics-" + new_secret("m")
    async with gateway(make_settings(callers={"metrics_token": token})) as client:
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers=bearer(token[:-1]))
        right = await client.get("/metrics", headers=bearer(token))
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["code"] == "unauthorized" and "www-authenticate" in missing.headers
    assert right.status_code == 200 and b"image_gateway_requests_total" in right.content
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    async with gateway(make_settings(callers={"metrics_token_file": token_file})) as client:
        assert (await client.get("/metrics", headers=bearer(token))).status_code == 200
        assert (await client.get("/metrics")).status_code == 401


@pytest.mark.parametrize(
    ("host", "keys", "warned"),
    [("0.0.0.0", False, True), ("10.1.2.3", False, True), ("0.0.0.0", True, False),
     ("127.0.0.1", False, False), ("::1", False, False), ("localhost", False, False)],
)  # fmt: skip
def test_warning_when_listening_openly_without_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, host: str, keys: bool, warned: bool
) -> None:
    callers = {"keys_file": key_file(tmp_path, a={})[0]} if keys else {}
    caplog.set_level(logging.WARNING, logger="image_gateway")
    create_app(make_settings(host=host, callers=callers))
    warnings = [r.getMessage() for r in caplog.records if "without caller keys" in r.getMessage()]
    assert bool(warnings) is warned


async def test_a_rotated_key_file_is_picked_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, first = key_file(tmp_path, a={})
    clock = FakeClock()
    callers = Callers(CallersSettings(keys_file=path, reload_s=5), clock=clock)
    headers = httpx.Headers(bearer(first["a"]))
    assert (await callers.authenticate(headers)).id == "a"  # type: ignore[arg-type]
    _, second = key_file(tmp_path, b={})  # replaces the file: a is gone, b is new
    os_time = path.stat().st_mtime + 10
    import os

    os.utime(path, (os_time, os_time))
    assert (await callers.authenticate(headers)).id == "a"  # type: ignore[arg-type]  # not yet re-read
    clock.advance(5)
    assert (await callers.authenticate(httpx.Headers(bearer(second["b"])))).id == "b"  # type: ignore[arg-type]
    path.write_text("{broken")
    os.utime(path, (os_time + 10, os_time + 10))
    clock.advance(5)
    caplog.set_level(logging.ERROR, logger="image_gateway")
    assert (await callers.authenticate(httpx.Headers(bearer(second["b"])))).id == "b"  # type: ignore[arg-type]
    assert "previous keys stay in force" in caplog.text


async def test_canary_secret_in_no_log_metric_header_or_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, secrets = key_file(
        tmp_path,
        **{"canary-key": {"providers": ["local"]}, "canary-narrow": {"operations": ["generate"]}},
    )
    secret, narrow = secrets["canary-key"], secrets["canary-narrow"]
    caplog.set_level(logging.DEBUG)
    settings = make_settings(
        callers={"keys_file": path, "metrics_token": "canary-metrics-token"},
        state=state_in(tmp_path),
    )
    async with gateway(settings) as client:
        answers = [
            await upscale(client, bearer(secret)),
            await upscale(client, {"x-api-key": secret}),
            await upscale(client, bearer(secret), provider="venice"),
            await upscale(client, bearer(secret), scale=99),
            await upscale(client, bearer(secret + "tail")),
            await upscale(client, bearer(secret[:-3])),
            await upscale(client, {"authorization": f"Basic {secret}"}),
            await upscale(client, bearer(narrow)),
            await client.post("/v1/generate", json={"prompt": "x"}, headers=bearer(narrow)),
            await client.post("/v1/upscale?dry_run=true", json=UPSCALE, headers=bearer(secret)),
            await client.get("/metrics", headers=bearer("canary-metrics-token")),
            await client.get("/metrics", headers=bearer(secret)),
        ]
    assert [a.status_code for a in answers] == [
        200,
        200,
        403,
        422,
        401,
        401,
        401,
        403,
        501,  # no generating provider configured: provider_not_configured
        200,
        200,
        401,
    ]
    exposed = [caplog.text, metrics.render()[0].decode()]
    exposed += [a.text + str(a.headers) for a in answers[2:]]  # the images may hold any bytes
    exposed += [str(a.headers) for a in answers[:2]]
    for canary in (
        secret,
        secret.split("_", 2)[2],
        narrow.split("_", 2)[2],
        "canary-metrics-token",
    ):
        for text in exposed:
            assert canary not in text


async def test_the_openai_routes_need_a_key_too(tmp_path: Path) -> None:
    path, secrets = key_file(tmp_path, **{"team-a": {"operations": ["upscale"]}})
    async with gateway(
        make_settings(callers={"keys_file": path}, state=state_in(tmp_path))
    ) as client:
        body = {"prompt": "a fox"}
        missing = await client.post("/v1/images/generations", json=body)
        scoped = await client.post(
            "/v1/images/generations", json=body, headers=bearer(secrets["team-a"])
        )
        upscaled = await client.post(
            "/v1/images/upscale",
            files={"image": ("in.png", png_bytes(40, 30), "image/png")},
            data={"scale": "2"},
            headers=bearer(secrets["team-a"]),
        )
    assert missing.status_code == 401 and "www-authenticate" in missing.headers
    assert scoped.status_code == 403
    assert upscaled.status_code == 200, upscaled.text
    assert upscaled.headers["x-image-gateway-cost-usd"] == "0.000000"


async def test_keys_from_the_state_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from app.callers import cli
    from app.settings import StateSettings

    state = StateSettings(data_dir=tmp_path / "state")

    async def run_cli(*argv: str) -> int:  # the CLI runs its own event loop
        return await asyncio.to_thread(cli.main, ["--store", *argv], None, state)

    assert await run_cli("create", "fleet", "--operations", "upscale") == 0
    secret = capsys.readouterr().out.strip()
    assert await run_cli("list") == 0
    assert '"id": "fleet"' in capsys.readouterr().out
    settings = make_settings(
        callers={"store_keys": True, "reload_s": 0}, state={"data_dir": tmp_path / "state"}
    )
    async with gateway(settings) as client:
        ok = await upscale(client, bearer(secret))
        assert await run_cli("revoke", "fleet") == 0
        revoked = await upscale(client, bearer(secret))
    assert ok.status_code == 200 and revoked.status_code == 401
    assert secret not in (tmp_path / "state" / "state.sqlite3").read_bytes().decode("latin-1")
