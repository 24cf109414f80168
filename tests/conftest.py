"""Shared fixtures. Tests never read the process environment: settings are built from
explicit values only (``make_settings``), and every server binds 127.0.0.1 on a free port."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from PIL import Image

from app.settings import Settings, explicit_settings


def make_settings(**values: Any) -> Settings:
    """Settings for a test; nested sections as dicts, e.g. ``venice={"api_key": "k"}``."""
    return explicit_settings(**values)


@asynccontextmanager
async def gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process (lifespan included) behind an httpx client."""
    from app.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


def png_bytes(width: int = 64, height: int = 48, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    """A small real image with some structure (gradients), encoded by Pillow."""
    gradient = Image.linear_gradient("L")
    channels = [gradient.resize((width, height)), gradient.rotate(90).resize((width, height))]
    channels.append(Image.new("L", (width, height), 128))
    image = Image.merge("RGB", channels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


class FakeClock:
    """A monotonic clock that moves only when code under test sleeps on it: inject
    ``clock`` as the clock and ``clock.sleep`` as the sleep, and time is driven, not waited."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # still a scheduling point, like a real sleep


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """One real redis-server for the session; tests isolate themselves by key prefix."""
    from tests.redis_server import RedisServer

    with RedisServer() as server:
        yield server
