"""The one translation of transport failures into the gateway's errors.

Only failures known to have happened before the vendor saw the request (no connection,
no free connection in time) are ``retryable``: routing may send the request again. A
failure mid-exchange never is, because the vendor may have processed (and billed) it.
"""

from __future__ import annotations

import ssl

import aiohttp

from app.errors import GatewayError, ProviderUnavailable, UpstreamError, UpstreamTimeout


class PoolTimeout(Exception):
    """No pooled connection to the vendor became free in time."""


class AnswerTooLarge(Exception):
    """The answer's headers or body went over the configured cap."""


def translate(exc: BaseException, vendor: str) -> GatewayError:
    """``exc``, raised by aiohttp or by ``Transport`` while calling ``vendor``."""
    if isinstance(exc, PoolTimeout):
        return ProviderUnavailable(
            f"every connection to {vendor} stayed busy; the gateway is saturated",
            provider=vendor,
            reason="saturated",
            retry_after=1,
            retryable=True,
        )
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return UpstreamError(
            f"{vendor}'s TLS certificate could not be verified (see "
            "IMAGE_GATEWAY_TRANSPORT__CA_BUNDLE for a private CA)",
            provider=vendor,
            reason="connect",
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(
            f"could not connect to {vendor} in time",
            provider=vendor,
            reason="connect",
            retryable=True,
        )
    if isinstance(exc, TimeoutError):  # the deadline, wherever the exchange was
        return UpstreamTimeout(
            f"{vendor} did not answer within the deadline", provider=vendor, reason="timeout"
        )
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ClientHttpProxyError):
        # Nothing was sent: no connection, or the proxy refused the tunnel.
        return ProviderUnavailable(
            f"could not connect to {vendor} ({_why(exc)})",
            provider=vendor,
            reason="connect",
            retryable=True,
        )
    if isinstance(exc, AnswerTooLarge):
        return UpstreamError(f"{vendor} answered {exc}", provider=vendor, reason="bad_response")
    return UpstreamError(
        f"the connection to {vendor} failed mid-response ({_why(exc)})",
        provider=vendor,
        reason="bad_response",
    )


def _why(exc: BaseException) -> str:
    """A bounded, secret-free cause: the exception's type, and aiohttp's parser message
    (it names the protocol fault, never header values or bodies)."""
    if isinstance(exc, aiohttp.ClientResponseError) and exc.message:
        return f"{type(exc).__name__}: {str(exc.message)[:80]}"
    return type(exc).__name__
