"""All configuration, read and validated in one place (DESIGN §3).

Environment variables use the prefix ``IMAGE_GATEWAY_`` and ``__`` for nesting, e.g.
``IMAGE_GATEWAY_VENICE__API_KEY``. Secrets are ``SecretStr`` and can also be read from a
file (``..._API_KEY_FILE``), which is how Kubernetes secret volumes are mounted.
A provider is enabled when its credentials are present. Impossible configurations fail at
start-up with a message that names the variable, never at the first request.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

PROVIDER_IDS = ("vertex", "venice", "deepimage", "local")

ProviderList = Annotated[list[str], NoDecode]
#: The ``local`` provider's models (app/esrgan/models.py has the Real-ESRGAN ones' limits).
LocalModelName = Literal[
    "lanczos", "realesr-animevideov3", "realesrgan-x4plus", "realesrgan-x4plus-anime"
]


def _read_secret_file(path: Path | None, current: SecretStr | None) -> SecretStr | None:
    if path is None or current is not None:
        return current
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    return SecretStr(value) if value else None


ModelAliases = dict[str, str]


class GeminiModelSettings(BaseModel):
    """A Gemini image model added by configuration (``IMAGE_GATEWAY_VERTEX__EXTRA_MODELS``, a
    JSON list): its id, the built-in model whose limits it starts from, and what differs."""

    model_config = {"extra": "forbid"}

    model: str = Field(min_length=1)
    like: str = "gemini-3.1-flash-image"
    status: Literal["ga", "preview", "deprecated"] | None = None
    #: The day the model was deprecated (the ``Deprecation`` header) and the day it stops.
    deprecated: date | None = None
    sunset: date | None = None
    replacement: str | None = None
    locations: list[str] | None = None
    aspect_ratios: list[str] | None = None
    image_sizes: list[str] | None = None
    thinking_levels: list[str] | None = None
    max_input_images: int | None = Field(default=None, ge=0)
    prompt_max_tokens: int | None = Field(default=None, gt=0)


class VertexSettings(BaseModel):
    project: str | None = None
    location: str = "us-central1"
    #: Defaults to the regional endpoint derived from ``location`` (vendors.md §1.1).
    base_url: str | None = None
    #: The host of ``location=global`` (no region prefix, vendors-2026 §2.1), used for
    #: models served only there (``gemini-3.1-flash-image``).
    global_base_url: str | None = None
    upscale_model: str = "imagen-4.0-upscale-preview"
    generate_model: str = "gemini-3.1-flash-image"
    extra_models: list[GeminiModelSettings] = Field(default_factory=list)
    model_aliases: ModelAliases = Field(default_factory=dict)
    #: A service-account key file; when absent, Application Default Credentials are used
    #: (which also honour ``GOOGLE_APPLICATION_CREDENTIALS``).
    credentials_file: Path | None = None
    timeout_s: float = Field(default=120.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.project)

    @property
    def endpoint(self) -> str:
        return self.endpoint_for(self.location)

    def endpoint_for(self, location: str) -> str:
        """The host of ``location``: regional with a prefix, ``global`` without one."""
        if location == "global":
            override = self.global_base_url or self.base_url
            return override.rstrip("/") if override else "https://aiplatform.googleapis.com"
        if self.base_url:
            return self.base_url.rstrip("/")
        return f"https://{location}-aiplatform.googleapis.com"


class VeniceSettings(BaseModel):
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    base_url: str = "https://api.venice.ai/api/v1"
    generate_model: str = "venice-sd35"
    model_aliases: ModelAliases = Field(default_factory=dict)
    #: How long the key's limits from ``GET /api_keys/rate_limits`` are trusted.
    rate_limits_ttl_s: float = Field(default=300.0, gt=0)
    #: ``2025`` is the seed-era upscale schema (the contract); ``2026`` is the schema Venice
    #: moved to on 2026-07-09 (vendors.md §2.2b).
    upscale_schema: Literal["2025", "2026"] = "2025"
    #: How long the model list and style list from Venice are trusted.
    catalog_ttl_s: float = Field(default=600.0, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _load_key_file(self) -> VeniceSettings:
        self.api_key = _read_secret_file(self.api_key_file, self.api_key)
        return self

    @property
    def enabled(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())


class DeepImageSettings(BaseModel):
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    base_url: str = "https://deep-image.ai"
    model_aliases: ModelAliases = Field(default_factory=dict)
    #: Largest result download accepted from ``result_url``.
    max_result_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    #: Hosts (shell patterns) a ``result_url`` may point at, over https, besides the API's
    #: own host: deep-image.ai and its S3 result store (vendors.md §3.2). A self-hosted or
    #: proxied Deep-Image adds its hosts here.
    result_hosts: ProviderList = Field(
        default_factory=lambda: [
            "deep-image.ai",
            "*.deep-image.ai",
            "neuroapi-store.s3.amazonaws.com",
            "neuroapi-store.s3.*.amazonaws.com",
            "neuroapi-store.s3-*.amazonaws.com",
        ]
    )

    @field_validator("result_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    timeout_s: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _load_key_file(self) -> DeepImageSettings:
        self.api_key = _read_secret_file(self.api_key_file, self.api_key)
        return self

    @property
    def enabled(self) -> bool:
        return self.api_key is not None and bool(self.api_key.get_secret_value())


class LocalSettings(BaseModel):
    enabled: bool = True
    #: Upscales that may run at once (each is CPU-bound and holds decoded pixels).
    max_concurrency: int = Field(default=2, ge=1, le=64)
    #: How long a request may wait for a free slot before it gets 503.
    queue_timeout_s: float = Field(default=5.0, ge=0)
    #: Memory that local jobs may hold at once, by their estimated peak (pixels x bytes
    #: per pixel x copies). The container needs this plus the process baseline.
    memory_budget_mb: int = Field(default=640, ge=16)
    #: Largest encoded answer one local job may build (the JSON answer is 4/3 of it).
    max_answer_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    #: Real-ESRGAN (the ``esrgan`` extra): a Vulkan device index for the models; unset runs
    #: them on the CPU. A software device (lavapipe) is refused at start-up.
    gpu: int | None = Field(default=None, ge=0)
    #: Address-space cap of each Real-ESRGAN worker process (0: none). realesrgan-x4plus
    #: needs ~1.3 GB; a job that would grow past the cap fails alone with 503.
    worker_memory_mb: int = Field(default=3072, ge=0)
    #: An idle Real-ESRGAN worker (and the memory of its loaded networks) is stopped after
    #: this many seconds without a job; the next job starts a new one (~0.5 s).
    worker_idle_s: float = Field(default=300.0, ge=0)
    #: When ``local`` serves an upscale as a fallback (another provider failed or refused
    #: first), run this model instead of Lanczos, with a warning. Unset: Lanczos.
    fallback_model: LocalModelName | None = None


class TransportSettings(BaseModel):
    """The vendor HTTP client (``app.transport``), shared by every vendor."""

    #: Wait for a free pooled connection; then 503 (saturated), retryable elsewhere.
    pool_timeout_s: float = Field(default=5.0, gt=0)
    #: Cap on opening a connection (TCP, proxy CONNECT and TLS). Well below the request
    #: deadline, so an unreachable vendor leaves time to fall back to another.
    connect_timeout_s: float = Field(default=5.0, gt=0)
    #: Connections per vendor (a vendor call holds one for seconds).
    max_connections: int = Field(default=256, ge=1)
    keepalive_s: float = Field(default=30.0, gt=0)
    #: Largest answer body read from a vendor (Deep-Image downloads have their own cap).
    max_response_bytes: int = Field(default=128 * 1024 * 1024, gt=0)
    #: Largest status or header line, and most header lines, in a vendor's answer.
    max_header_line_bytes: int = Field(default=16 * 1024, ge=1024)
    max_headers: int = Field(default=128, ge=8)
    #: A PEM bundle of CA certificates to trust instead of the default (certifi's); TLS
    #: verification itself cannot be turned off.
    ca_bundle: Path | None = None
    #: Route vendor calls through ``HTTPS_PROXY``/``HTTP_PROXY`` except ``NO_PROXY`` hosts.
    use_env_proxy: bool = True
    #: The standard proxy variables as the process saw them (filled in by ``Settings``;
    #: lower-case names).
    env_proxies: dict[str, str] = Field(default_factory=dict)

    @field_validator("ca_bundle")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"IMAGE_GATEWAY_TRANSPORT__CA_BUNDLE: no such file {value}")
        return value


class _StandardProxyVariables(PydanticBaseSettingsSource):
    """``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY`` (either case): not prefixed, as every
    HTTP client reads them. Lowest priority; ``use_env_proxy=false`` ignores them."""

    _NAMES = ("http_proxy", "https_proxy", "no_proxy")

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {}
        for name in self._NAMES:
            value = os.environ.get(name) or os.environ.get(name.upper())
            if value:
                found[name] = value
        return {"transport": {"env_proxies": found}} if found else {}


class RoutingSettings(BaseModel):
    """Ordered provider ids per operation; comma-separated in the environment."""

    upscale: ProviderList = Field(
        default_factory=lambda: ["vertex", "venice", "deepimage", "local"]
    )
    generate: ProviderList = Field(default_factory=lambda: ["vertex", "venice", "deepimage"])

    @field_validator("upscale", "generate", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("upscale", "generate")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in PROVIDER_IDS]
        if unknown:
            raise ValueError(f"unknown provider id(s) {unknown}; known: {list(PROVIDER_IDS)}")
        return value


class RetrySettings(BaseModel):
    max_attempts: int = Field(default=3, ge=1, le=10)
    base_delay_s: float = Field(default=0.2, ge=0)
    max_delay_s: float = Field(default=5.0, ge=0)


class CircuitSettings(BaseModel):
    window_s: float = Field(default=30.0, gt=0)
    min_requests: int = Field(default=10, ge=1)
    failure_ratio: float = Field(default=0.5, gt=0, le=1)
    cooldown_s: float = Field(default=15.0, gt=0)


class BulkheadSettings(BaseModel):
    max_inflight: int = Field(default=64, ge=1)
    max_wait_s: float = Field(default=0.5, ge=0)


class StateSettings(BaseModel):
    """Where jobs, idempotency keys and results live (``app.state``)."""

    #: ``redis://host:6379/0`` (or ``rediss://``, ``unix://``): the store shared by several
    #: replicas. Empty: the embedded SQLite store under ``data_dir``.
    url: str | None = None
    #: The SQLite file and the result files (one replica; mount a volume in Kubernetes).
    data_dir: Path = Path("data")
    #: Prefix of every Redis key, so that several gateways can share one Redis.
    prefix: str = "image-gateway:"

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("state.url must be a redis://, rediss:// or unix:// URL")
        return value or None


def _parse_aliases(value: Any) -> Any:
    """``name=target`` pairs, comma-separated (or a JSON object), into a dict."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        return json.loads(text)
    pairs = [part.strip() for part in text.split(",") if part.strip()]
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise ValueError(f"expected name=target pairs, got {bad}")
    return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


class OpenAISettings(BaseModel):
    """The OpenAI-compatible routes (``/v1/images/...``, ``/v1/models``)."""

    #: Model names callers may send (e.g. ``gpt-image-1``) mapped to a gateway model,
    #: ``model`` or ``provider/model``: ``gpt-image-1=venice/venice-sd35,dall-e-3=...``.
    model_aliases: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    #: ``response_format: url``: how long the images stay fetchable (OpenAI: 60 minutes).
    result_url_ttl_s: float = Field(default=3600.0, gt=0)
    #: The URL callers reach the gateway at, for result URLs, when a proxy or ingress sits
    #: in front (``https://images.example.com``); default: the request's own Host.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")

    @field_validator("model_aliases", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _parse_aliases(value)

    @field_validator("model_aliases")
    @classmethod
    def _well_formed(cls, value: dict[str, str]) -> dict[str, str]:
        empty = [k for k, v in value.items() if not k.strip() or not v.strip()]
        if empty:
            raise ValueError(f"alias names and targets must not be empty: {empty}")
        looping = [k for k, v in value.items() if v in value]
        if looping:
            raise ValueError(f"an alias must name a gateway model, not another alias: {looping}")
        return value


class CallersSettings(BaseModel):
    """Caller keys (issue 17). Off when no key source is configured: the loopback sidecar
    case needs none."""

    #: A JSON key file (``image-gateway keys create`` writes it; a Kubernetes secret mounts it).
    keys_file: Path | None = None
    #: How often the key file is checked for changes (a rotated secret mount).
    reload_s: float = Field(default=5.0, ge=0)
    #: Keys also from the state store (``image-gateway keys --store create``), shared by
    #: every replica that uses the same store.
    store_keys: bool = False
    #: How long usage records are kept (``GET /v1/usage``).
    usage_retention_days: float = Field(default=90.0, gt=0)
    #: A bearer token that ``GET /metrics`` then requires (the standalone case).
    metrics_token: SecretStr | None = None
    metrics_token_file: Path | None = None

    @model_validator(mode="after")
    def _load_token_file(self) -> CallersSettings:
        self.metrics_token = _read_secret_file(self.metrics_token_file, self.metrics_token)
        return self


class PricingSettings(BaseModel):
    """The price table's operator overrides (negotiated prices): a JSON file of entries
    that replace the built-in ones with the same provider, model and operation."""

    file: Path | None = None


class CallerUrlSettings(BaseModel):
    """URLs a caller hands to a vendor (Venice ``style_references``): ``app/url_rules.py``."""

    #: Forward http and internal (loopback, private, link-local) URLs too: only for a
    #: self-hosted vendor that must fetch from the LAN.
    allow_private: bool = False


class ConnectionSettings(BaseModel):
    """Limits the HTTP server enforces before a request reaches the app
    (``app/server_limits.py``)."""

    #: Request line and headers together; beyond it 431.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    #: The headers must arrive within this of the connection or the previous answer.
    header_timeout_s: float = Field(default=10.0, gt=0)
    #: The body must arrive within this of the headers (a 36 MB upload at ~1 MB/s).
    body_timeout_s: float = Field(default=60.0, gt=0)
    #: Open connections at most; lowered to stay below the file-descriptor limit.
    max_connections: int = Field(default=4096, ge=1)
    #: On SIGTERM, how long a body still arriving may take before it is cut.
    drain_body_timeout_s: float = Field(default=5.0, ge=0)
    #: A second port answering only /healthz, /readyz and /metrics, outside the connection
    #: cap and with its own accept queue: point the Kubernetes probes at it.
    probe_port: int | None = Field(default=None, ge=1, le=65535)


class JobsSettings(BaseModel):
    """Asynchronous jobs, Idempotency-Key and webhooks (``app.jobs``)."""

    #: How long finished jobs, their results and idempotency keys are kept.
    result_ttl_s: float = Field(default=86400.0, gt=0)
    #: Jobs waiting to run, across replicas; beyond it a submission gets 503 + Retry-After.
    max_queued: int = Field(default=1000, ge=1)
    #: Jobs one process runs at once (the per-provider bulkheads still apply inside).
    max_running: int = Field(default=16, ge=1)
    #: The deadline of an asynchronous job (a synchronous call keeps REQUEST_TIMEOUT_S).
    timeout_s: float = Field(default=900.0, gt=0)
    #: A replica that has not heartbeaten its running jobs for this long is presumed dead,
    #: and another replica takes them over.
    lease_s: float = Field(default=30.0, gt=0)
    #: This process's name in the shared queue; the same name after a restart lets it pick
    #: its own jobs up at once. Default: the host name (unique per pod or container).
    consumer: str | None = None
    #: Standard Webhooks secret (``whsec_`` + base64, or any text); required for callbacks.
    webhook_secret: SecretStr | None = None
    webhook_secret_file: Path | None = None
    #: Callback URL prefixes allowed (``https://hooks.internal/``); none: no callbacks.
    webhook_allow: ProviderList = Field(default_factory=list)
    #: How long failed deliveries are retried (with backoff), and the cap on one attempt.
    webhook_retry_for_s: float = Field(default=600.0, ge=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("webhook_allow", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _load_secret(self) -> JobsSettings:
        self.webhook_secret = _read_secret_file(self.webhook_secret_file, self.webhook_secret)
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IMAGE_GATEWAY_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    #: 36 MB: a 25 MB image as base64 inside JSON, plus room for the other fields.
    max_body_bytes: int = Field(default=36 * 1024 * 1024, gt=0)
    #: The whole-request deadline (retries and polling included); ``X-Request-Timeout``
    #: may lower it per request, never raise it.
    request_timeout_s: float = Field(default=120.0, gt=0)
    shutdown_grace_s: float = Field(default=150.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: Log one JSON line per request.
    access_log: bool = True

    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    circuit: CircuitSettings = Field(default_factory=CircuitSettings)
    bulkhead: BulkheadSettings = Field(default_factory=BulkheadSettings)
    vertex: VertexSettings = Field(default_factory=VertexSettings)
    venice: VeniceSettings = Field(default_factory=VeniceSettings)
    deepimage: DeepImageSettings = Field(default_factory=DeepImageSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    transport: TransportSettings = Field(default_factory=TransportSettings)
    connections: ConnectionSettings = Field(default_factory=ConnectionSettings)
    caller_urls: CallerUrlSettings = Field(default_factory=CallerUrlSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    callers: CallersSettings = Field(default_factory=CallersSettings)
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    jobs: JobsSettings = Field(default_factory=JobsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        proxies = _StandardProxyVariables(settings_cls)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings, proxies)

    def enabled_providers(self) -> list[str]:
        enabled = {
            "vertex": self.vertex.enabled,
            "venice": self.venice.enabled,
            "deepimage": self.deepimage.enabled,
            "local": self.local.enabled,
        }
        return [p for p in PROVIDER_IDS if enabled[p]]


class _ExplicitSettings(Settings):
    """Settings from the given values only: no environment, no .env file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def explicit_settings(**values: Any) -> Settings:
    """Settings built from ``values`` alone (tests, the OpenAPI export): never the process
    environment. Nested sections as dicts, e.g. ``venice={"api_key": "k"}``."""
    return _ExplicitSettings(**values)
