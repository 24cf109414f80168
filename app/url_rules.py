"""Which caller-supplied URLs the gateway forwards to a vendor (e.g. Venice
``style_references``): https only, and never a literal loopback, private, link-local or
otherwise internal address or an internal host name, unless
``IMAGE_GATEWAY_CALLER_URLS__ALLOW_PRIVATE`` says so (a self-hosted vendor on the LAN).
Host names are not resolved here: the vendor fetches the URL, and what this blocks is a
caller steering it at a metadata service or an internal address by literal.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_NUMERIC = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*")
_INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


def url_problem(value: str, allow_private: bool = False) -> str | None:
    """Why ``value`` may not be forwarded, or None. Values that are not URLs (base64, a
    ``data:`` URI) are not this rule's business."""
    if "://" not in value[:16]:
        return None
    try:
        parts = urlsplit(value)
        host = (parts.hostname or "").rstrip(".").lower()
    except ValueError:
        return "the URL cannot be parsed"
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        return "only https URLs are forwarded"
    if not host:
        return "the URL has no host"
    if not allow_private and _internal(host):
        return f"the host {host} is internal (loopback, private or link-local)"
    return None


def _internal(host: str) -> bool:
    if host == "localhost" or host.endswith(_INTERNAL_SUFFIXES):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        # A single-label name resolves only inside a network; numeric forms that are not
        # dotted quads (0x7f.1, 2130706433) are how a literal address hides.
        return "." not in host or _NUMERIC.fullmatch(host) is not None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global
