"""Running the gateway: uvicorn with a drain phase before shutdown.

Stock uvicorn closes its listening socket the moment SIGTERM arrives. A gateway behind a
load balancer should instead keep the socket open, answer ``/readyz`` and new requests
with 503 so that callers and probes see it leaving, let in-flight requests finish (up to
``IMAGE_GATEWAY_SHUTDOWN_GRACE_S``), and only then close and exit 0. A second signal
skips the wait.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import logging.config
import os
import signal
import socket
import tempfile
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import multiprocess

from app import uvicorn_hooks
from app.lifecycle import Lifecycle
from app.server_limits import LimitedConfig, ServerLimits, drain_connections, probe_socket
from app.settings import Settings

log = logging.getLogger("image_gateway")


class AppFactory:
    """What uvicorn calls to build the app (in each worker process): ``create_app`` with the
    settings read once by ``serve`` and the ``Lifecycle`` that the server drains. Picklable,
    so spawned workers get their own copy of both."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lifecycle = Lifecycle()

    def __call__(self) -> FastAPI:
        from app.main import create_app  # in the worker: after PROMETHEUS_MULTIPROC_DIR is set

        return create_app(self.settings, self.lifecycle)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, grace_s: float) -> None:
        super().__init__(config)
        self.grace_s = grace_s
        limits = getattr(config, "limits", None)
        self.drain_body_s = limits.drain_body_timeout_s if limits else grace_s
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None
        factory = config.app
        self.lifecycle = factory.lifecycle if isinstance(factory, AppFactory) else None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        life = self.lifecycle
        if self._draining or life is None:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        life.begin_drain()
        drain_connections(self.server_state.connections, self.drain_body_s)
        loop = asyncio.get_event_loop()
        self._drain_task = loop.create_task(self._drain(life, sig, frame))

    async def _drain(self, life: Lifecycle, sig: int, frame: FrameType | None) -> None:
        log.info("draining: %d request(s) in flight, grace %.0fs", life.inflight, self.grace_s)
        finished = await life.wait_idle(self.grace_s)
        if not finished:
            log.warning("grace period over with %d request(s) still in flight", life.inflight)
        super().handle_exit(sig, frame)
        # A completed drain is a clean exit (0), not a death by SIGTERM (-15).
        if sig == signal.SIGTERM:
            uvicorn_hooks.forget_signal(self, sig)


#: HTTP clients log request URLs at DEBUG (urllib3, google-auth's token transport; aiohttp's
#: client); vendor URLs can carry signed query strings (Deep-Image result_url), so their
#: loggers stay at WARNING. Pillow logs each PNG chunk at DEBUG.
_QUIET_LOGGERS = ("aiohttp", "urllib3", "PIL")


def log_config(level: str) -> dict[str, Any]:
    """Plain JSON lines from the gateway's loggers on stderr; uvicorn's own access log is
    replaced by the gateway's structured one. uvicorn applies this in every process it
    starts: spawned workers (IMAGE_GATEWAY_WORKERS > 1) inherit no logging setup."""
    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["plain"] = {"format": "%(message)s"}
    config["handlers"]["plain"] = {
        "class": "logging.StreamHandler",
        "formatter": "plain",
        "stream": "ext://sys.stderr",
    }
    config["root"] = {"handlers": ["plain"], "level": level.upper()}
    for name in _QUIET_LOGGERS:
        config["loggers"][name] = {"level": "WARNING"}
    return config


def configure_logging(level: str) -> None:
    logging.config.dictConfig(log_config(level))


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    return LimitedConfig(
        AppFactory(settings),
        limits=ServerLimits(**settings.connections.model_dump()),
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=False,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        timeout_graceful_shutdown=5,
        lifespan="on",
        proxy_headers=False,
    )


def serve(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    configure_logging(settings.log_level)
    if settings.workers > 1:
        _serve_workers(settings)
        return
    config = uvicorn_config(settings)
    server = DrainingServer(config, settings.shutdown_grace_s)
    server.run(sockets=_sockets(config, settings))


def _sockets(config: uvicorn.Config, settings: Settings) -> list[socket.socket]:
    sockets = [config.bind_socket()]
    if settings.connections.probe_port is not None:
        sockets.append(probe_socket(settings.host, settings.connections.probe_port))
    return sockets


def _serve_workers(settings: Settings) -> None:
    """Several worker processes; metrics aggregated through prometheus-client's
    multiprocess directory, which must exist before any worker imports the metrics."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="image-gateway-metrics-")
    config = uvicorn_config(settings)
    uvicorn_hooks.use_worker_server(functools.partial(_draining_server, settings.shutdown_grace_s))
    multiprocess.Multiprocess(config, sockets=_sockets(config, settings)).run()


def _draining_server(grace_s: float, config: uvicorn.Config) -> uvicorn.Server:
    return DrainingServer(config, grace_s)
