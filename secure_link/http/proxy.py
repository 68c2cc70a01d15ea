"""Who is asking and from where, honouring proxy headers only from trusted proxies.

uvicorn runs with proxy_headers off (cli.py): it would otherwise trust
X-Forwarded-For from 127.0.0.1, letting a local client spoof its address.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import HTTPConnection

from secure_link.config import Settings


def _trusted(address: str, settings: Settings) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.trusted_proxies)


def client_address(connection: HTTPConnection, settings: Settings) -> str:
    """The peer's address, or the nearest untrusted hop of X-Forwarded-For behind a trusted proxy."""
    peer = connection.client.host if connection.client else ""
    if not _trusted(peer, settings):
        return peer
    hops = [h.strip() for h in connection.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, settings):
            return hop
    return hops[0] if hops else peer


def request_scheme(connection: HTTPConnection, settings: Settings) -> str:
    """http or https as the browser saw it (ws/wss map onto these)."""
    peer = connection.client.host if connection.client else ""
    forwarded = connection.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if forwarded in ("http", "https") and _trusted(peer, settings):
        return forwarded
    return "https" if connection.url.scheme in ("https", "wss") else "http"


def own_origin(connection: HTTPConnection, settings: Settings) -> str:
    """The server's own origin: PUBLIC_URL when set, else scheme://Host."""
    if settings.public_url:
        return settings.public_url
    host = connection.headers.get("host", "")
    return f"{request_scheme(connection, settings)}://{host}".lower()


def origin_allowed(connection: HTTPConnection, settings: Settings) -> bool:
    """Whether the page behind a browser request is ours or one CORS_ORIGINS allows.

    Browsers send `Origin` on every WebSocket handshake and every POST, PATCH
    and DELETE, forms included; a request without it comes from a non-browser
    client, which no other site can drive, unless `Sec-Fetch-Site` says otherwise.
    """
    origin = connection.headers.get("origin")
    if origin is None:
        return connection.headers.get("sec-fetch-site", "none") in ("same-origin", "none")
    origin = origin.rstrip("/").lower()
    return origin in settings.cors_origins or origin == own_origin(connection, settings)


def is_secure(connection: HTTPConnection, settings: Settings) -> bool:
    """Whether cookies must carry Secure."""
    if settings.public_url:
        return settings.public_url.startswith("https://")
    return request_scheme(connection, settings) == "https"
