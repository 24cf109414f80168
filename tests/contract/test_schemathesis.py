"""Schemathesis against the live gateway: every check (negative_data_rejection,
positive_data_acceptance, unsupported_method, response headers and schemas, ...), all
phases, a fixed seed and a bounded example count. Zero failures; each deliberate
deviation is set and explained in tests/contract/schemathesis.toml."""

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.callers.keys import CallerKey, digest, new_secret, write_key_file
from tests.contract.conftest import running_gateway
from tests.contract.toolchains import SPEC

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261130
EXAMPLES = 30


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """With caller keys on, so ignored_auth has something to check: schemathesis sends the
    key, and requests without it must be refused (401)."""
    secret = new_secret("schemathesis")
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    write_key_file(path, [CallerKey.model_validate({"id": "schemathesis", "hash": digest(secret)})])
    with running_gateway(IMAGE_GATEWAY_CALLERS__KEYS_FILE=str(path)) as url:
        yield url, secret


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_failure(keyed_gateway: tuple[str, str], tmp_path: Path) -> None:
    url, secret = keyed_gateway
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        str(SPEC),
        "--url",
        url,
        "--header",
        f"Authorization: Bearer {secret}",
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES),
        "--workers",
        "1",
        "--generation-with-security-parameters",
        "false",  # the key above, not generated ones
        "--generation-database",
        "none",
        "--no-color",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=540, check=False
    )
    summary = done.stdout[-3000:]
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-2000:]
    # Every generated case passed every check (a warning, e.g. an operation that mostly
    # rejects generated images, is not a failure).
    counts = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert counts and counts[1] == counts[2], summary
    assert "failure" not in summary.splitlines()[-1], summary
