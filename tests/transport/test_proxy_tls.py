"""Through a real forward proxy (Debian's tinyproxy, started by the test on 127.0.0.1), and
TLS with a private CA: what a corporate egress looks like to the gateway."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from app.domain import Deadline
from app.errors import ProviderUnavailable, UpstreamError
from app.settings import explicit_settings
from app.transport import ProxyRules, Transport
from tests.process import free_port
from tests.transport.certs import Certs, make_certs
from tests.transport.rawserver import Exchange, RawServer, answer, raw_server

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("tinyproxy")
    if binary is None:
        pytest.fail("tinyproxy is not installed (Makefile APT_PACKAGES installs it)")
    port = free_port()
    config = tmp_path_factory.mktemp("tinyproxy") / "tinyproxy.conf"
    # No ConnectPort line: CONNECT is allowed to any port (the TLS origin's is random).
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 30\nMaxClients 20\n"
        "LogLevel Warning\nUser nobody\nGroup nogroup\n"
    )
    process = subprocess.Popen([binary, "-d", "-c", str(config)], stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if process.poll() is not None:
            pytest.fail(f"tinyproxy exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)  # the process is still starting; poll again
    pytest.fail("tinyproxy did not listen")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


async def ok(exchange: Exchange) -> None:
    await exchange.write(answer(body=b"through"))


@asynccontextmanager
async def transport(url: str, **settings: Any) -> AsyncIterator[Transport]:
    client = Transport("vendor", url, explicit_settings(transport=settings).transport)
    try:
        yield client
    finally:
        await client.aclose()


def via(server: RawServer) -> list[bool]:
    return [b"via:" in head.lower() and b"tinyproxy" in head.lower() for head in server.heads]


async def test_http_goes_through_http_proxy(proxy_url: str) -> None:
    async with (
        raw_server(ok) as server,
        transport(server.url, env_proxies={"http_proxy": proxy_url}) as client,
    ):
        response = await client.send("POST", "/v1/x", Deadline(10), body=b"{}")
    assert (response.status_code, response.content) == (200, b"through")
    assert via(server) == [True]


@pytest.mark.parametrize(
    "settings",
    [
        {"no_proxy": "127.0.0.1"},  # NO_PROXY names the host
        {"no_proxy": "example.com,127.0.0.1:{port}"},  # ... or the host and port
        {"use_env_proxy": False},  # the setting that ignores the variables
    ],
)
async def test_no_proxy_and_the_setting_bypass_the_proxy(
    proxy_url: str, settings: dict[str, Any]
) -> None:
    async with raw_server(ok) as server:
        env = {"http_proxy": proxy_url}
        if "no_proxy" in settings:
            env["no_proxy"] = settings["no_proxy"].format(port=server.port)
        use = settings.get("use_env_proxy", True)
        async with transport(server.url, env_proxies=env, use_env_proxy=use) as client:
            assert (await client.send("GET", "/x", Deadline(10))).status_code == 200
    assert via(server) == [False]


async def test_https_tunnels_through_connect_and_trusts_the_ca_bundle(
    proxy_url: str, certs: Certs
) -> None:
    async with raw_server(ok, tls=certs.server_context) as server:
        url = f"https://127.0.0.1:{server.port}"
        env = {"https_proxy": proxy_url}
        async with transport(url, env_proxies=env, ca_bundle=certs.ca_file) as client:
            response = await client.send("POST", "/v1/x", Deadline(10), body=b"{}")
    assert (response.status_code, response.content) == (200, b"through")
    assert via(server) == [False]  # a tunnel: the proxy never saw inside the TLS stream


async def test_the_proxy_is_really_in_the_path(certs: Certs) -> None:
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    async with raw_server(ok, tls=certs.server_context) as server:
        url = f"https://127.0.0.1:{server.port}"
        env = {"https_proxy": dead_proxy}
        async with transport(url, env_proxies=env, ca_bundle=certs.ca_file) as client:
            with pytest.raises(ProviderUnavailable) as caught:
                await client.send("POST", "/v1/x", Deadline(10), body=b"{}")
    assert caught.value.reason == "connect" and server.heads == []


async def test_tls_is_verified_an_unknown_ca_is_refused(certs: Certs) -> None:
    async with (
        raw_server(ok, tls=certs.server_context) as server,
        transport(f"https://127.0.0.1:{server.port}") as client,  # certifi's CAs only
    ):
        with pytest.raises(UpstreamError) as caught:
            await client.send("POST", "/v1/x", Deadline(10), body=b"{}")
    assert "certificate could not be verified" in caught.value.detail
    assert server.heads == []  # nothing was sent to an unverified peer


def test_proxy_rules_read_the_standard_variables() -> None:
    rules = ProxyRules.from_environment(
        {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "NO_PROXY": ".corp"}
    )
    assert rules.proxy_for(URL("https://api.venice.ai/x")) == "http://lower:2"  # lower first
    assert rules.proxy_for(URL("http://api.venice.ai/x")) is None  # no HTTP_PROXY
    assert rules.proxy_for(URL("https://vendor.corp/x")) is None
    assert rules.proxy_for(URL("https://a.vendor.corp/x")) is None


def test_the_proxy_variables_are_read_by_settings_and_nowhere_else(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from app.settings import Settings

    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("HTTPS_PROXY", "http://egress:3128")
    monkeypatch.setenv("no_proxy", "internal")
    assert Settings().transport.env_proxies == {
        "https_proxy": "http://egress:3128",
        "no_proxy": "internal",
    }
    assert explicit_settings().transport.env_proxies == {}  # tests never see the environment
