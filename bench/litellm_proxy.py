"""The optional LiteLLM proxy for the side-by-side comparison.

Installed in its own venv, never in the project's (``bench/.litellm-venv``, see
bench/README.md), and pointed at the fake's OpenAI-compatible ``/v1/images/generations``
through a generic ``openai/`` model, so that LiteLLM does the same job as the gateway: one
JSON image call forwarded to an upstream and its answer passed back. It runs offline
(``LITELLM_LOCAL_MODEL_COST_MAP``), without a database, with a master key (it refuses to
start without one).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from procs import Service

LITELLM_MODEL = "bench-image"
MASTER_KEY = "sk-bench-0123456789abcdef0123456789abcdef"
AUTHORIZATION = f"Bearer {MASTER_KEY}"


def find_litellm(given: str | None, bench: Path) -> Path | None:
    """``--litellm PATH``, else bench/.litellm-venv/bin/litellm; None when neither exists."""
    if given:
        path = Path(given)
        if not path.exists():
            raise SystemExit(f"--litellm {given}: no such file")
        return path
    local = bench / ".litellm-venv" / "bin" / "litellm"
    return local if local.exists() else None


def config(fake_url: str) -> str:
    return (
        "model_list:\n"
        f"  - model_name: {LITELLM_MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{LITELLM_MODEL}\n"
        f"      api_base: {fake_url}/v1\n"
        "      api_key: bench-upstream-key\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )


def litellm_service(binary: Path, port: int, fake_url: str, workers: int, work: Path) -> Service:
    path = work / "litellm.yaml"
    path.write_text(config(fake_url))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "OPENAI_"))}
    env.update(
        LITELLM_MASTER_KEY=MASTER_KEY,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_TELEMETRY="False",
        PATH=f"{binary.parent}:{env.get('PATH', '')}",
    )
    command = [str(binary), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        command += ["--num_workers", str(workers)]
    assert shutil.which(str(binary)) is not None or binary.exists()
    return Service("litellm", command, env, work, work / "litellm.log")
