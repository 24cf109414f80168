"""Which proxy a vendor URL goes through: ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``.

The values are read with the settings (``app.settings``, the standard variables, lower
case first as curl does) and can be ignored with ``IMAGE_GATEWAY_TRANSPORT__USE_ENV_PROXY
=false``. ``NO_PROXY`` takes host names, domain suffixes (``.example.com`` or
``example.com``), ``host:port`` and ``*``, as urllib reads it.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

from app.settings import TransportSettings


@dataclass(frozen=True)
class ProxyRules:
    http: str | None = None
    https: str | None = None
    no_proxy: str | None = None

    @classmethod
    def from_settings(cls, settings: TransportSettings) -> ProxyRules:
        if not settings.use_env_proxy:
            return cls()
        return cls.from_environment(settings.env_proxies)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ProxyRules:
        def pick(name: str) -> str | None:
            value = environ.get(name.lower()) or environ.get(name.upper())
            return value.strip() or None if value else None

        return cls(pick("http_proxy"), pick("https_proxy"), pick("no_proxy"))

    def proxy_for(self, url: URL) -> str | None:
        proxy = self.https if url.scheme == "https" else self.http
        if proxy is None or not url.host:
            return None
        if self.no_proxy and urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
            f"{url.host}:{url.port}" if url.port else url.host, {"no": self.no_proxy}
        ):
            return None
        return proxy

    def as_requests_proxies(self) -> dict[str, str]:
        """The same rules for ``requests`` (google-auth's token transport)."""
        found = {"http": self.http, "https": self.https, "no_proxy": self.no_proxy}
        return {key: value for key, value in found.items() if value}
