"""The built web client as the server serves it: caching, client routes, and the API's 404s kept.

A small stand-in build (index.html and one hashed asset) in a temporary folder is
enough here; the browser tests run the real build.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from collections.abc import AsyncIterator

import httpx
import pytest

from secure_link.config import PROJECT_ROOT, Settings

from ..conftest import running_server, settings_for
from ..story import Server, assert_error

INDEX = "<!doctype html><title>Secure Link</title><script src=/assets/index-abc123.js></script>"
HTML = {"Accept": "text/html,application/xhtml+xml"}
SCRIPT = "console.log('hi');\n" * 200
BROTLI = b"stands for the brotli copy"  # served byte for byte; Chromium decodes the real one (test_browser*)
BUNDLE_LIMIT = 100 * 1024  # the ceiling for the client's JavaScript and CSS, gzipped


@pytest.fixture(scope="module")
def web_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("web_dist")
    (root / "assets").mkdir()
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-abc123.js").write_text(SCRIPT)
    (root / "assets" / "index-abc123.js.gz").write_bytes(gzip.compress(SCRIPT.encode()))
    (root / "assets" / "index-abc123.js.br").write_bytes(BROTLI)
    (root / "assets" / "small-def456.css").write_text("p{}")  # too small to gain: no compressed copy
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
    assert asset.status_code == 200 and asset.text == SCRIPT
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


async def raw_get(server: Server, path: str, accept_encoding: str | None) -> tuple[httpx.Response, bytes]:
    """The answer and its bytes as sent (httpx would otherwise decode them)."""
    async with server.client() as http:
        request = http.build_request("GET", path)
        del request.headers["accept-encoding"]  # httpx's own default
        if accept_encoding is not None:
            request.headers["accept-encoding"] = accept_encoding
        answer = await http.send(request, stream=True)
        try:
            return answer, b"".join([chunk async for chunk in answer.aiter_raw()])
        finally:
            await answer.aclose()


@pytest.mark.parametrize(("accept_encoding", "coding"), [
    ("gzip, deflate, br, zstd", "br"),   # Chromium's: brotli, the smaller
    ("gzip, deflate", "gzip"),
    ("br;q=0, gzip;q=0.5", "gzip"),      # refused by quality 0
    ("*", "br"),
    ("*, br;q=0", "gzip"),
    ("GZIP", "gzip"),                    # codings are case-insensitive
    ("identity", None),
    ("", None),
    (None, None),                        # no header: only the identity may be assumed
    ("gzip;q=oops", None),               # a quality that is no number accepts nothing
])
async def test_assets_go_compressed_as_the_browser_accepts(server: Server, accept_encoding: str | None,
                                                           coding: str | None) -> None:
    answer, body = await raw_get(server, "/assets/index-abc123.js", accept_encoding)
    assert answer.status_code == 200
    assert "Accept-Encoding" in answer.headers["vary"].split(", ")  # caches keep one copy per coding
    assert "javascript" in answer.headers["content-type"]
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert answer.headers.get("content-encoding") == coding
    assert int(answer.headers["content-length"]) == len(body)
    expected = {"br": BROTLI, "gzip": gzip.compress(SCRIPT.encode()), None: SCRIPT.encode()}[coding]
    assert body == expected if coding != "gzip" else gzip.decompress(body) == SCRIPT.encode()


async def test_an_asset_without_a_compressed_copy_goes_as_it_is(server: Server) -> None:
    answer, body = await raw_get(server, "/assets/small-def456.css", "gzip, br")
    assert answer.status_code == 200 and body == b"p{}"
    assert "content-encoding" not in answer.headers and answer.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/assets/index-abc123.js.gz", "/assets/index-abc123.js.br"])
async def test_a_compressed_copy_is_not_an_asset_of_its_own(server: Server, path: str) -> None:
    """Served by its own name it would go without its Content-Encoding: a download of noise."""
    async with server.client() as http:
        assert_error(await http.get(path), 404, "not_found")


async def test_api_answers_are_never_compressed(server: Server) -> None:
    """BREACH: an answer holding a secret beside text a page can inject leaks the secret
    through its compressed length. The app compresses nothing it computes."""
    for path in ("/api/openapi.json", "/api/user-profile/", "/"):
        answer, _ = await raw_get(server, path, "gzip, deflate, br")
        assert "content-encoding" not in answer.headers, path


def test_the_built_client_stays_within_its_budget() -> None:
    """The real build (make web): every asset has its compressed copies, and the JavaScript and
    CSS together stay under 100 KiB gzipped."""
    assets = PROJECT_ROOT / "secure_link" / "web_dist" / "assets"
    if not assets.is_dir():
        pytest.skip("the web client is not built: make web")
    code = [path for path in assets.iterdir() if path.suffix in (".js", ".css")]
    assert code and all(path.with_name(path.name + ".gz").is_file() for path in code if path.stat().st_size >= 1024)
    gzipped = sum(len(gzip.compress(path.read_bytes(), 9)) for path in code)
    assert gzipped <= BUNDLE_LIMIT, f"{gzipped} bytes gzipped"


@pytest.fixture
async def unbuilt_server(database_url: str, media_root: Path, tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(settings_for(database_url, media_root, web_root=tmp_path / "none")) as server:
        yield server


async def test_without_a_build_the_api_works_and_the_page_is_a_404(unbuilt_server: Server) -> None:
    async with unbuilt_server.client() as http:
        assert_error(await http.get("/", headers=HTML), 404, "not_found")
        assert_error(await http.get("/chat/alice", headers=HTML), 404, "not_found")
        assert (await http.get("/healthz")).status_code == 200
