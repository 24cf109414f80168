"""The clients people generate from openapi/openapi.json, as generated (no patch), each
running its example program (clients/<lang>/) against a live gateway: multipart upscale,
JSON base64 upscale, raw PNG bytes, generate through Venice, a 422's code through the
typed problem model, and the provider list. The Java one uses Java's default HttpClient,
which offers ``Upgrade: h2c`` on every plain-http request."""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import png_bytes
from tests.contract import toolchains

EXPECTED = [
    "multipart local 80 60",
    "json local 80 60",
    "bytes True 80 60",
    "generate venice 1 image/webp",
    "problem 422 validation_failed",
    "providers local,venice",
]


@pytest.fixture(scope="module")
def commands() -> dict[str, list[str]]:
    """All four generated and built at once (the generators and compilers are separate
    processes, so they overlap)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        built = {n: pool.submit(toolchains.build, lang) for n, lang in toolchains.LANGUAGES.items()}
        return {name: future.result() for name, future in built.items()}


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clients") / "picture.png"
    path.write_bytes(png_bytes(40, 30))
    return path


@pytest.mark.timeout(900)
@pytest.mark.parametrize("language", sorted(toolchains.LANGUAGES))
def test_generated_client_makes_the_six_calls(
    language: str, commands: dict[str, list[str]], live_gateway: str, picture: Path
) -> None:
    command = [*commands[language], live_gateway, str(picture)]
    out = toolchains.run(
        command, cwd=Path(command[0]).parent if os.sep in command[0] else Path.cwd()
    )
    assert out.splitlines() == EXPECTED
