"""The built web client as the server serves it: caching, client routes, and the API's 404s kept.

A small stand-in build (index.html and one hashed asset) in a temporary folder is
enough here; the browser tests run the real build.
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest

from secure_link.config import Settings

from .conftest import running_server, settings_for
from .story import Server, assert_error

INDEX = "<!doctype html><title>Secure Link</title><script src=/assets/index-abc123.js></script>"
HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture(scope="module")
def web_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web_dist")
    (root / "assets").mkdir()
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-abc123.js").write_text("console.log('hi')")
    (root / ".secret").write_text("not for you")
    return root


@pytest.fixture(scope="module")
def settings(database_url: str, media_root: Path, web_root: Path) -> Settings:
    return settings_for(database_url, media_root, web_root=web_root)


async def test_index_is_revalidated_and_assets_are_cached_for_a_year(server: Server) -> None:
    async with server.client() as http:
        index = await http.get("/")
        asset = await http.get("/assets/index-abc123.js")
    assert index.status_code == 200 and index.text == INDEX
    assert index.headers["cache-control"] == "no-cache"
    assert index.headers["content-type"].startswith("text/html")
    assert asset.status_code == 200 and asset.text == "console.log('hi')"
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "javascript" in asset.headers["content-type"]


async def test_a_browser_opening_a_client_route_gets_the_page(server: Server) -> None:
    async with server.client() as http:
        page = await http.get("/chat/alice", headers=HTML)
    assert page.status_code == 200 and page.text == INDEX
    assert page.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(("path", "headers"), [
    ("/api/nowhere", HTML),                 # API paths never turn into the page
    ("/media/nowhere", HTML),
    ("/assets/missing.js", HTML),           # a missing asset is a 404, not the page
    ("/assets/.secret", {}),                # hidden files are not assets
    ("/assets/..%2Findex.html", {}),        # no climbing out of assets/
    ("/chat/alice", {"Accept": "*/*"}),     # only a browser navigation gets the page
])
async def test_what_is_not_the_client_stays_a_json_404(server: Server, path: str, headers: dict[str, str]) -> None:
    async with server.client() as http:
        assert_error(await http.get(path, headers=headers), 404, "not_found")


async def test_a_post_to_a_client_route_is_not_the_page(server: Server) -> None:
    async with server.client() as http:
        answer = await http.post("/chat/alice", headers=HTML)
    assert_error(answer, 404, "not_found")


@pytest.fixture
async def unbuilt_server(database_url: str, media_root: Path, tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(settings_for(database_url, media_root, web_root=tmp_path / "none")) as server:
        yield server


async def test_without_a_build_the_api_works_and_the_page_is_a_404(unbuilt_server: Server) -> None:
    async with unbuilt_server.client() as http:
        assert_error(await http.get("/", headers=HTML), 404, "not_found")
        assert_error(await http.get("/chat/alice", headers=HTML), 404, "not_found")
        assert (await http.get("/healthz")).status_code == 200
