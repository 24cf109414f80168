"""The one vendor HTTP boundary (DESIGN §4b), on aiohttp's client.

Every vendor call (JSON, multipart, GET, a streamed download) goes through a
``Transport``: one pooled aiohttp session per vendor for the app's lifetime, timeouts for
pool wait, connect and the whole exchange bounded by the request's deadline, proxies from
``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (or not), TLS always verified, answers capped
in size while they stream in, never a request sent twice, and every failure translated
once into a ``GatewayError`` (``app.transport.errors``).
"""

from app.transport.bodies import Body, Multipart, splice_json
from app.transport.client import Transport
from app.transport.proxy import ProxyRules
from app.transport.response import (
    VendorResponse,
    json_or_none,
    parse_json,
    retry_after_seconds,
)

__all__ = [
    "Body",
    "Multipart",
    "ProxyRules",
    "Transport",
    "VendorResponse",
    "json_or_none",
    "parse_json",
    "retry_after_seconds",
    "splice_json",
]
