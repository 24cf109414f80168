"""What the observability tests share: the Debian binaries they need, the dashboard's
queries, a fake vendor that fails and echoes what it was sent, a real Prometheus server,
and a mix of requests whose answers (successes, caller errors, upstream failures) the tests
count on the client side."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.emulators.common import EmulatorServer, EmulatorState, Message, Receive, Scope, Send
from tests.observability.promql import label_values_metric
from tests.process import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules_test.yml"
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "image-gateway.json"

#: Vendor providers that exist in this tree (the failing vendor stands in for each).
VENDORS = tuple(
    p for p in ("venice", "deepimage") if importlib.util.find_spec(f"app.providers.{p}")
)


def require_tool(name: str) -> str:
    """The path of a Debian binary (``apt-get install prometheus``). Missing, it skips the
    test on a developer's machine and fails it in CI, where ``make test`` installs it."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is not None:
        return path
    message = f"{name} is not installed (apt-get install -y prometheus; `make system-deps`)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool")
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


# ----------------------------------------------------------------------- dashboard


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def dashboard_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from dashboard_panels(panel.get("panels", []))


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every variable query."""
    out = []
    for panel in dashboard_panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            out.append((f"{panel['title']} / {target['refId']}", target["expr"]))
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            selector = label_values_metric(variable["query"]["query"])
            assert selector is not None, variable
            out.append((f"variable {variable['name']}", selector))
    return out


# ----------------------------------------------------------------------- vendor


class FakeVendor:
    """One server standing in for every vendor. In ``fail`` mode it answers every request
    500, echoing the request's headers (the API key) and body (the image) in its error, the
    way real vendors sometimes do, and reports rate-limit headroom. In ``signed`` mode it
    completes a Deep-Image job at once with a ``result_url`` signed like an S3 link
    (vendors.md §3.2), and serves the result. A gateway that copies vendor errors or URLs
    into its answers or logs leaks them: the tests look for that."""

    def __init__(self, url_secret: str = "none") -> None:
        self.mode = "fail"
        self.url_secret = url_secret
        self.result = png_with_text("the result")
        self.server = EmulatorServer(self._app, EmulatorState())
        self.url = self.server.url
        self.state = self.server.state

    def __enter__(self) -> FakeVendor:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_all(receive)
        if self.mode == "signed" and scope["path"] == "/rest_api/process_result":
            signed = f"{self.url}/results/job-1.png?X-Amz-Signature={self.url_secret}"
            payload = {"status": "complete", "job": "job-1", "result_url": signed}
            await _respond(send, 200, json.dumps(payload).encode(), "application/json")
        elif self.mode == "signed" and scope["path"].startswith("/results/"):
            await _respond(send, 200, self.result, "image/png")
        else:
            await _respond(send, 500, _echo(scope, body), "application/json")


def _echo(scope: Scope, body: bytes) -> bytes:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    echo = f"request {scope['path']} with headers {headers} and body {body[:4096]!r}"
    doc = {"error": echo, "message": echo, "status": "failed", "details": {"echo": echo}}
    return json.dumps(doc).encode()


async def _respond(send: Send, status: int, payload: bytes, content_type: str) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(payload)).encode()),
        (b"x-ratelimit-remaining-requests", b"7"),
        (b"x-ratelimit-limit-requests", b"20"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _read_all(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    more = True
    while more:
        message: Message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def vendor_env(
    vendor_url: str, keys: dict[str, str], venice_url: str | None = None
) -> dict[str, str]:
    """Settings that enable each available vendor against ``vendor_url`` with ``keys``
    (Venice against ``venice_url`` when given: the Venice emulator), the local provider
    first for upscales, and instant retries (two attempts)."""
    env = {
        "IMAGE_GATEWAY_ROUTING__UPSCALE": ",".join(("local", *VENDORS)),
        "IMAGE_GATEWAY_RETRY__MAX_ATTEMPTS": "2",
        "IMAGE_GATEWAY_RETRY__BASE_DELAY_S": "0",
    }
    if VENDORS:
        env["IMAGE_GATEWAY_ROUTING__GENERATE"] = ",".join(VENDORS)
    if "venice" in VENDORS:
        env["IMAGE_GATEWAY_VENICE__API_KEY"] = keys["venice"]
        env["IMAGE_GATEWAY_VENICE__BASE_URL"] = (venice_url or vendor_url) + "/api/v1"
    if "deepimage" in VENDORS:
        env["IMAGE_GATEWAY_DEEPIMAGE__API_KEY"] = keys["deepimage"]
        env["IMAGE_GATEWAY_DEEPIMAGE__BASE_URL"] = vendor_url
    return env


# ----------------------------------------------------------------------- requests


def png_with_text(text: str, width: int = 256, height: int = 256) -> bytes:
    """A real PNG carrying ``text`` in a tEXt chunk (a stand-in for private metadata); 256 px
    square, the smallest Venice upscales (vendors.md §2)."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    info = PngInfo()
    info.add_text("Comment", text)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@dataclass
class Exchange:
    """One request the client sent and what it got back."""

    request_id: str
    name: str
    status: int
    code: str
    body: bytes
    headers: httpx.Headers


@dataclass
class Planned:
    """One request of the mix: its name, ``httpx`` arguments, and the fake vendor's mode."""

    name: str
    kwargs: dict[str, Any]
    vendor_mode: str = "fail"


def request_mix(image: bytes) -> list[Planned]:
    """Local successes (JSON, raw bytes, multipart), caller errors (400, 415, 422 from the
    schema and from the provider's limits), a generate, and per vendor an upstream failure
    and one that falls back to ``local``; with Deep-Image also a success through a signed
    result URL."""
    b64 = base64.b64encode(image).decode()
    gif = base64.b64encode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").decode()
    up = "/v1/upscale"
    mix = [
        Planned("local json", {"url": up, "json": {"image": b64, "scale": 2}}),
        Planned(
            "local raw bytes",
            {"url": up, "json": {"image": b64, "scale": 2}, "headers": {"accept": "image/png"}},
        ),
        Planned(
            "local multipart",
            {"url": up, "files": {"image": ("in.png", image, "image/png")}, "data": {"scale": "2"}},
        ),
        Planned(
            "bad json",
            {"url": up, "content": b'{"image": ', "headers": {"content-type": "application/json"}},
        ),
        Planned("gif", {"url": up, "json": {"image": gif, "scale": 2}}),
        Planned("scale 9", {"url": up, "json": {"image": b64, "scale": 9}}),
        Planned(
            "refused by local", {"url": up, "json": {"image": b64, "scale": 1, "provider": "local"}}
        ),
        Planned("generate", {"url": "/v1/generate", "json": {"prompt": "a lighthouse at dusk"}}),
    ]
    for vendor in VENDORS:
        explicit = {"image": b64, "scale": 2, "provider": vendor}
        mix.append(Planned(f"{vendor} fails", {"url": up, "json": explicit}))
        mix.append(
            Planned(f"{vendor} falls back", {"url": up, "json": {**explicit, "fallback": True}})
        )
    if "deepimage" in VENDORS:
        explicit = {"image": b64, "scale": 2, "provider": "deepimage"}
        mix.append(Planned("deepimage signed result", {"url": up, "json": explicit}, "signed"))
    if "venice" in VENDORS:  # a success when Venice is the emulator, a failure otherwise
        explicit = {"image": b64, "scale": 2, "provider": "venice"}
        mix.append(Planned("venice upscale", {"url": up, "json": explicit}))
    return mix


def send_mix(
    client: httpx.Client, image: bytes, prefix: str, vendor: FakeVendor | None
) -> list[Exchange]:
    """Sends ``request_mix`` once, in order, each request with its own ``X-Request-ID``."""
    exchanges = []
    for index, planned in enumerate(request_mix(image)):
        if vendor is not None:
            vendor.mode = planned.vendor_mode
        request_id = f"{prefix}-{index}"
        kwargs = dict(planned.kwargs)
        headers = {**kwargs.pop("headers", {}), "x-request-id": request_id}
        response = client.post(**kwargs, headers=headers)
        code = response.json()["code"] if response.status_code >= 400 else "ok"
        exchanges.append(
            Exchange(
                request_id,
                planned.name,
                response.status_code,
                code,
                response.content,
                response.headers,
            )
        )
    return exchanges


def statuses(exchanges: list[Exchange]) -> dict[str, int]:
    return dict(Counter(str(e.status) for e in exchanges))


# ----------------------------------------------------------------------- polling


def poll(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Calls ``condition`` until it returns something truthy, for at most ``timeout`` s.
    (Polling a condition with a deadline, not sleeping for a guessed time.)"""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


# ----------------------------------------------------------------------- prometheus


class PrometheusServer:
    """Debian's ``prometheus`` on 127.0.0.1 with a temporary data directory."""

    def __init__(self, workdir: Path, config: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(config)
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        binary = require_tool("prometheus")
        command = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        poll(self._ready, 20, f"prometheus to be ready ({self.log_path})")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {self.log_path.read_text()}")
        try:
            return httpx.get(self.url + "/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(self.url + "/api/v1/" + path, params=params, timeout=5)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def values_by(self, expr: str, label: str) -> dict[str, float]:
        return {s["metric"].get(label, ""): float(s["value"][1]) for s in self.query(expr)}

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def finite(value: str) -> bool:
    return math.isfinite(float(value))
