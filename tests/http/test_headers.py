"""What each answer tells the browser: never frame me, never sniff me, keep no copy of me.

A page on another port of the same site framed the logged-in client under a
decoy and got its *Log out* clicked, which erases both sides of every
conversation; and API answers and media stayed in the browser's disk cache
after they were deleted for everyone. Every answer now carries the headers,
whatever made it: the client's page, an asset, the API, an error, a file.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from secure_link.config import Settings

from ..conftest import settings_for
from ..story import PNG, Person, Server, upload

INDEX = "<!doctype html><title>Secure Link</title><script type=module src=/assets/index-abc123.js></script>"


@pytest.fixture(scope="module")
def web_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in build; tests/browser/test_browser.py runs the real one under the same headers."""
    root = tmp_path_factory.mktemp("web_dist")
    (root / "assets").mkdir()
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-abc123.js").write_text("console.log('hi')")
    return root


@pytest.fixture(scope="module")
def settings(database_url: str, media_root: Path, web_root: Path) -> Settings:
    return settings_for(database_url, media_root, web_root=web_root)


def policy(response: httpx.Response) -> dict[str, str]:
    """The Content-Security-Policy as {directive: sources}."""
    directives = (part.strip().split(maxsplit=1) for part in response.headers["content-security-policy"].split(";"))
    return {parts[0]: (parts[1] if len(parts) > 1 else "") for parts in directives if parts}


async def every_kind_of_answer(server: Server, alice: Person) -> dict[str, httpx.Response]:
    """One answer of each kind the server gives, for Alice (logged in) or anyone."""
    image = await upload(alice, PNG, "dot.png")
    async with server.client() as anyone:
        return {
            "the client's page": await anyone.get("/"),
            "a client route": await anyone.get("/chat/bob", headers={"Accept": "text/html"}),
            "an asset": await anyone.get("/assets/index-abc123.js"),
            "an API answer": await alice.api("GET", "/api/conversations/"),
            "an API refusal": await anyone.get("/api/conversations/"),
            "an unknown path": await anyone.get("/api/nowhere"),
            "a wrong method": await anyone.put("/api/login/"),
            "a probe": await anyone.get("/healthz"),
            "a file": await alice.api("GET", image["url"]),
            "a thumbnail": await alice.api("GET", image["thumbnail_url"]),
            "a file nobody may see": await anyone.get(image["url"]),
        }


async def test_no_answer_may_be_framed_sniffed_or_leak_a_referrer(server: Server) -> None:
    alice = await server.person("alice").register()
    for kind, answer in (await every_kind_of_answer(server, alice)).items():
        assert answer.headers["x-frame-options"] == "DENY", kind
        assert policy(answer)["frame-ancestors"] == "'none'", kind
        assert answer.headers["x-content-type-options"] == "nosniff", kind
        assert answer.headers["referrer-policy"] == "no-referrer", kind
        assert answer.headers.get_list("content-security-policy") == [answer.headers["content-security-policy"]], kind


async def test_the_page_runs_only_its_own_files(server: Server) -> None:
    """A strict policy on the page: scripts and styles from this origin only, nothing inline, no
    plugins, no <base>; images also from blob: and data: (previews, the empty favicon); the
    socket is same-origin (connect-src 'self'). tests/browser/test_browser.py shows the real build runs so."""
    async with server.client() as http:
        page = policy(await http.get("/"))
    assert page["default-src"] == "'self'"
    assert page["script-src"] == "'self'" and page["style-src"] == "'self'"
    assert page["connect-src"] == "'self'" and page["img-src"] == "'self' blob: data:"
    assert page["object-src"] == "'none'" and page["base-uri"] == "'none'"


async def test_files_keep_their_own_sandboxing_policy(server: Server) -> None:
    """A file opened in a tab runs nothing: its own policy, not the page's, framed by nobody."""
    alice = await server.person("alice").register()
    file = await upload(alice, b"plain notes\n", "notes.txt")
    served = policy(await alice.api("GET", file["url"]))
    assert served == {"default-src": "'none'", "frame-ancestors": "'none'", "sandbox": ""}


async def test_nothing_but_the_page_and_its_assets_may_be_cached(server: Server) -> None:
    """Messages and files must not outlive their deletion in a browser's disk cache: no-store on
    every API answer and file. index.html is revalidated (a new build is seen at once) and the
    hashed assets are kept for a year, as before."""
    alice = await server.person("alice").register()
    for kind, answer in (await every_kind_of_answer(server, alice)).items():
        expected = {"the client's page": "no-cache", "a client route": "no-cache",
                    "an asset": "public, max-age=31536000, immutable"}.get(kind, "no-store")
        assert answer.headers.get_list("cache-control") == [expected], kind


async def test_history_is_never_stored_in_a_cache(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "gone soon"})
    history = await bob.api("GET", "/api/messages/", params={"with": alice.username})
    assert history.status_code == 200 and history.headers["cache-control"] == "no-store"


async def test_without_a_cache_ranges_and_etags_still_work(server: Server) -> None:
    """no-store keeps no copy, so a browser no longer revalidates; the ETag still serves If-Range
    (a download resumed) and a client that keeps its own copy (304), and ranges are unchanged."""
    alice = await server.person("alice").register()
    image = await upload(alice, PNG, "dot.png")
    whole = await alice.api("GET", image["url"])
    etag = whole.headers["etag"]
    unchanged = await alice.api("GET", image["url"], headers={"If-None-Match": etag})
    resumed = await alice.api("GET", image["url"], headers={"Range": "bytes=4-", "If-Range": etag})
    stale = await alice.api("GET", image["url"], headers={"Range": "bytes=4-", "If-Range": '"another"'})
    assert unchanged.status_code == 304 and unchanged.headers["cache-control"] == "no-store"
    assert resumed.status_code == 206 and resumed.content == whole.content[4:]
    assert resumed.headers["cache-control"] == "no-store"
    assert stale.status_code == 200 and stale.content == whole.content


async def test_logout_tells_the_browser_to_forget_what_it_kept(server: Server) -> None:
    """Logout erases the conversations for both sides; the browser is told to drop its cache
    and storage too (Clear-Site-Data; the cookie goes as before). Logging in clears nothing."""
    alice = await server.person("alice").register()
    async with server.client() as http:
        login = await http.post("/api/login/", json={"username": alice.username, "phrase": alice.phrase})
    logout = await alice.api("POST", "/api/logout/")
    assert logout.status_code == 200
    assert logout.headers["clear-site-data"] == '"cache", "storage"'
    assert 'session=""' in logout.headers["set-cookie"]
    assert "clear-site-data" not in login.headers
