"""The built web client (`npm run build` in web/ writes secure_link/web_dist/), served at `/`.

Vite writes index.html and content-hashed files under assets/; the hashes let
assets be cached for a year, while index.html is revalidated on every load so a
new build is picked up at once. Without a build these routes answer the usual
404 in the error shape, and the API works as before.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from .errors import AppError

INDEX_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
ASSET_HEADERS = {"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"}
NOT_CLIENT_ROUTES = ("/api/", "/media/", "/ws/", "/assets/")  # their 404s stay JSON


def _root(request: Request) -> Path:
    return request.state.services.settings.web_root


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
    """A hashed asset; the name may not climb out of assets/ (the route allows no `/`)."""
    name = request.path_params["name"]
    path = _root(request) / "assets" / name
    if name.startswith(".") or not path.is_file():
        raise _not_found()
    return FileResponse(path, headers=ASSET_HEADERS)


def serves_client_route(request: Request) -> bool:
    """Whether a 404 should become index.html: a browser navigating to a client
    route (GET, asks for HTML, not under NOT_CLIENT_ROUTES) while a build exists."""
    path = request.url.path
    return (request.method == "GET" and "text/html" in request.headers.get("accept", "")
            and not path.startswith(NOT_CLIENT_ROUTES) and (_root(request) / "index.html").is_file())
