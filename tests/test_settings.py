"""Settings: every DESIGN §3 variable, nesting, comma lists, secret files, fail-fast."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings


def from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    """Settings as the process would read them, from a controlled environment only."""
    for key in list(__import__("os").environ):
        if key.startswith("IMAGE_GATEWAY_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return Settings()


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = from_env(monkeypatch, tmp_path)
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.max_body_bytes == 36 * 1024 * 1024
    assert settings.venice.base_url == "https://api.venice.ai/api/v1"
    assert settings.deepimage.base_url == "https://deep-image.ai"
    assert settings.local.enabled is True
    assert settings.enabled_providers() == ["local"]
    assert settings.vertex.endpoint == "https://us-central1-aiplatform.googleapis.com"


def test_every_design_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = from_env(
        monkeypatch,
        tmp_path,
        IMAGE_GATEWAY_HOST="0.0.0.0",
        IMAGE_GATEWAY_PORT="9000",
        IMAGE_GATEWAY_MAX_BODY_BYTES="1000",
        IMAGE_GATEWAY_ROUTING__UPSCALE="venice, local",
        IMAGE_GATEWAY_ROUTING__GENERATE="deepimage",
        IMAGE_GATEWAY_VERTEX__PROJECT="proj",
        IMAGE_GATEWAY_VERTEX__LOCATION="europe-west4",
        IMAGE_GATEWAY_VERTEX__UPSCALE_MODEL="imagen-4.0-upscale-preview",
        IMAGE_GATEWAY_VERTEX__GENERATE_MODEL="imagen-4.0-generate-001",
        IMAGE_GATEWAY_VENICE__API_KEY="vk",
        IMAGE_GATEWAY_VENICE__BASE_URL="http://127.0.0.1:1/api/v1",
        IMAGE_GATEWAY_VENICE__GENERATE_MODEL="flux",
        IMAGE_GATEWAY_VENICE__UPSCALE_SCHEMA="2026",
        IMAGE_GATEWAY_DEEPIMAGE__API_KEY="dk",
        IMAGE_GATEWAY_DEEPIMAGE__BASE_URL="http://127.0.0.1:2",
        IMAGE_GATEWAY_LOCAL__ENABLED="false",
        IMAGE_GATEWAY_REQUEST_TIMEOUT_S="30",
        IMAGE_GATEWAY_SHUTDOWN_GRACE_S="40",
        IMAGE_GATEWAY_RETRY__MAX_ATTEMPTS="2",
    )
    assert (settings.host, settings.port, settings.max_body_bytes) == ("0.0.0.0", 9000, 1000)
    assert settings.routing.upscale == ["venice", "local"]
    assert settings.routing.generate == ["deepimage"]
    assert settings.vertex.endpoint == "https://europe-west4-aiplatform.googleapis.com"
    assert settings.vertex.upscale_model == "imagen-4.0-upscale-preview"
    assert settings.vertex.generate_model == "imagen-4.0-generate-001"
    assert (
        settings.venice.api_key is not None and settings.venice.api_key.get_secret_value() == "vk"
    )
    assert (settings.venice.generate_model, settings.venice.upscale_schema) == ("flux", "2026")
    assert settings.deepimage.base_url == "http://127.0.0.1:2"
    assert (settings.request_timeout_s, settings.shutdown_grace_s, settings.retry.max_attempts) == (
        30,
        40,
        2,
    )
    assert settings.enabled_providers() == ["vertex", "venice", "deepimage"]
    assert "vk" not in repr(settings) and "dk" not in repr(settings)


def test_secret_from_a_mounted_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "venice-key"
    secret.write_text("from-file\n")
    settings = from_env(monkeypatch, tmp_path, IMAGE_GATEWAY_VENICE__API_KEY_FILE=str(secret))
    assert settings.venice.api_key is not None
    assert settings.venice.api_key.get_secret_value() == "from-file"
    assert settings.venice.enabled


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("IMAGE_GATEWAY_PORT=9999\n")
    assert from_env(monkeypatch, tmp_path).port == 9999


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"IMAGE_GATEWAY_ROUTING__UPSCALE": "venice,dalle"}, "dalle"),
        ({"IMAGE_GATEWAY_PORT": "http"}, "port"),
        ({"IMAGE_GATEWAY_VENICE__UPSCALE_SCHEMA": "2024"}, "upscale_schema"),
        ({"IMAGE_GATEWAY_DEEPIMAGE__API_KEY_FILE": "/nonexistent/key"}, "cannot read secret file"),
        ({"IMAGE_GATEWAY_OPENAI__MODEL_ALIASES": "gpt-image-1"}, "name=target"),
        ({"IMAGE_GATEWAY_OPENAI__MODEL_ALIASES": "a=,b=x"}, "must not be empty"),
        ({"IMAGE_GATEWAY_OPENAI__MODEL_ALIASES": "a=b,b=venice-sd35"}, "not another alias"),
    ],
)
def test_impossible_config_fails_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], names: str
) -> None:
    with pytest.raises(ValidationError, match=names):
        from_env(monkeypatch, tmp_path, **env)


@pytest.mark.parametrize(
    "value",
    [
        "gpt-image-1=venice/venice-sd35, dall-e-3 = imagen-3.0-generate-002",
        '{"gpt-image-1": "venice/venice-sd35", "dall-e-3": "imagen-3.0-generate-002"}',
    ],
)
def test_openai_model_aliases_as_pairs_or_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    settings = from_env(monkeypatch, tmp_path, IMAGE_GATEWAY_OPENAI__MODEL_ALIASES=value)
    assert settings.openai.model_aliases == {
        "gpt-image-1": "venice/venice-sd35",
        "dall-e-3": "imagen-3.0-generate-002",
    }
