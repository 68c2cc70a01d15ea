"""The built web client (`npm run build` in web/ writes secure_link/web_dist/), served at `/`.

Vite writes index.html and content-hashed files under assets/; the hashes let
assets be cached for a year, while index.html is revalidated on every load so a
new build is picked up at once. Without a build these routes answer the usual
404 in the error shape, and the API works as before.

The build also writes each asset compressed beside it (`.br`, `.gz`); the copy
the browser accepts is sent with `Content-Encoding`, chosen once at build time
rather than compressed per request. Only these static files are: compressing an
API answer that mixes secrets with what a page can inject is BREACH.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from secure_link.errors import AppError

INDEX_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
ASSET_HEADERS = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
NOT_CLIENT_ROUTES = ("/api/", "/media/", "/ws/", "/assets/")  # their 404s stay JSON
PRECOMPRESSED = (("br", ".br"), ("gzip", ".gz"))  # in order of preference: brotli is smaller


def _root(request: Request) -> Path:
    root: Path = request.state.services.settings.web_root
    return root


def _not_found() -> AppError:
    return AppError(404, "not_found", "Nothing here.")


def index_response(root: Path) -> Response:
    """index.html, revalidated on every load (it names the current hashed assets)."""
    index = root / "index.html"
    if not index.is_file():
        raise _not_found()
    return FileResponse(index, media_type="text/html", headers=INDEX_HEADERS)


async def index(request: Request) -> Response:
    """The client's page at `/`."""
    return index_response(_root(request))


async def asset(request: Request) -> Response:
    """A hashed asset, compressed when the build made a copy the browser accepts; the name
    may not climb out of assets/ (the route allows no `/`), nor name a compressed copy itself."""
    name = request.path_params["name"]
    path = _root(request) / "assets" / name
    if name.startswith(".") or name.endswith((".br", ".gz")) or not path.is_file():
        raise _not_found()
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {**ASSET_HEADERS, "Vary": "Accept-Encoding"}
    accepted = accepted_encodings(request.headers.get("accept-encoding", ""))
    for coding, suffix in PRECOMPRESSED:
        compressed = path.with_name(name + suffix)
        if coding in accepted and compressed.is_file():
            return FileResponse(compressed, media_type=media_type, headers={**headers, "Content-Encoding": coding})
    return FileResponse(path, media_type=media_type, headers=headers)


def accepted_encodings(header: str) -> set[str]:
    """The content codings an `Accept-Encoding` header allows (q > 0); `*` allows any not named."""
    allowed: set[str] = set()
    refused: set[str] = set()
    for item in header.lower().split(","):
        coding, _, params = item.strip().partition(";")
        quality = params.strip().removeprefix("q=") if params.strip().startswith("q=") else "1"
        try:
            acceptable = float(quality) > 0
        except ValueError:
            acceptable = False
        (allowed if acceptable else refused).add(coding.strip())
    if "*" in allowed:
        allowed |= {coding for coding, _ in PRECOMPRESSED} - refused
    return allowed - refused


def serves_client_route(request: Request) -> bool:
    """Whether a 404 should become index.html: a browser navigating to a client
    route (GET, asks for HTML, not under NOT_CLIENT_ROUTES) while a build exists."""
    path = request.url.path
    return (request.method == "GET" and "text/html" in request.headers.get("accept", "")
            and not path.startswith(NOT_CLIENT_ROUTES) and (_root(request) / "index.html").is_file())
