"""Your phrase and leaving (contract v1.2).

Alice fears her phrase is known: she changes it, and every other session of hers
ends at once, its sockets closed on every worker, while this one stays. Later she
leaves: everything a logout erases goes for every session, then her account,
avatar, uploads, sessions, invites and blocks; her name is never registered again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator

import asyncpg
import pytest

from secure_link.config import Settings

from ..conftest import running_server, settings_for
from ..story import PHRASE, Server, assert_error, image_bytes, upload

NEW_PHRASE = "a brand new secret phrase"


@pytest.fixture(scope="module")
async def other(settings: Settings) -> AsyncIterator[Server]:
    """A second worker on the module's database."""
    async with running_server(settings) as server:
        yield server


async def test_a_new_phrase_ends_every_other_session_at_once_on_every_worker(server: Server, other: Server) -> None:
    alice = await server.person("alice").register()
    laptop, phone = await alice.login(), await alice.login()
    here = await alice.connect()
    laptop_tab = await alice.connect(token=laptop)
    phone_tab = await alice.on(other).connect(token=phone)
    changed = await alice.api("POST", "/api/change-phrase/", json={"phrase": PHRASE, "new_phrase": NEW_PHRASE})
    assert changed.status_code == 200 and changed.json()["user"]["username"] == alice.username
    assert await asyncio.gather(laptop_tab.closed_with(timeout=1.0), phone_tab.closed_with(timeout=1.0)) == [4401, 4401]
    await here.send({"type": "ping"})
    assert (await here.expect("pong")) == {"type": "pong"}  # this one stays
    assert_error(await alice.api("GET", "/api/user-profile/", token=laptop), 401, "unauthenticated")
    async with server.client() as http:
        old = await http.post("/api/login/", json={"username": alice.username, "phrase": PHRASE})
        new = await http.post("/api/login/", json={"username": alice.username, "phrase": NEW_PHRASE})
    assert_error(old, 401, "invalid_credentials")
    assert new.status_code == 200


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({"phrase": "wrong horse battery staple", "new_phrase": NEW_PHRASE}, 401, "invalid_credentials", None),
    ({"phrase": PHRASE, "new_phrase": "short"}, 422, "invalid_input", "new_phrase"),
    ({"phrase": PHRASE, "new_phrase": "only two"}, 422, "invalid_input", "new_phrase"),
    ({"phrase": PHRASE}, 422, "invalid_input", "new_phrase"),
    ({"new_phrase": NEW_PHRASE}, 422, "invalid_input", "phrase"),
    ({"phrase": 7, "new_phrase": NEW_PHRASE}, 422, "invalid_input", "phrase"),
    ([PHRASE, NEW_PHRASE], 422, "invalid_input", None),
])
async def test_a_phrase_change_refused_changes_nothing(server: Server, body: Any, status: int, code: str,
                                                       field: str | None) -> None:
    alice = await server.person("alice").register()
    other_session = await alice.login()
    assert_error(await alice.api("POST", "/api/change-phrase/", json=body), status, code, field)
    assert (await alice.api("GET", "/api/user-profile/", token=other_session)).status_code == 200
    assert await alice.login()  # the old phrase still works


async def test_a_new_phrase_may_not_hold_the_username(server: Server) -> None:
    alice = await server.person("alice").register()
    answer = await alice.api("POST", "/api/change-phrase/",
                             json={"phrase": PHRASE, "new_phrase": f"my name is {alice.username} ok"})
    assert_error(answer, 422, "invalid_input", "new_phrase")
    assert "username" in answer.json()["error"]["fields"]["new_phrase"]


async def test_wrong_phrases_are_counted_by_the_login_throttle(database_url: str, media_root: Path) -> None:
    async with running_server(settings_for(database_url, media_root, login_failures_per_15_min=2)) as server:
        alice = await server.person("alice").register()
        for _ in range(2):
            wrong = {"phrase": "not my phrase at all", "new_phrase": NEW_PHRASE}
            assert_error(await alice.api("POST", "/api/change-phrase/", json=wrong), 401, "invalid_credentials")
        assert_error(await alice.api("POST", "/api/delete-account/", json={"phrase": PHRASE}), 429, "rate_limited")
        async with server.client() as http:  # the same budget a login spends
            assert_error(await http.post("/api/login/", json={"username": alice.username, "phrase": PHRASE}),
                         429, "rate_limited")


async def files_of(db: asyncpg.Connection, media_root: Path, user_id: int) -> list[Path]:
    rows = await db.fetch("SELECT path, thumbnail_path FROM files WHERE owner_id = $1", user_id)
    return [media_root / path for row in rows for path in (row["path"], row["thumbnail_path"]) if path]


async def test_leaving_erases_everything_of_the_account_and_retires_its_name(
        server: Server, other: Server, db: asyncpg.Connection, media_root: Path) -> None:
    alice, bob, carol = [await server.person(name).register() for name in ("alice", "bob", "carol")]
    avatar = await upload(alice, image_bytes(), "me.png", purpose="avatar")
    await upload(alice, b"never sent\n", "draft.txt")
    photo = await upload(alice, image_bytes(), "photo.png")
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hi", "attachment": photo["id"]})
    await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "hello"})
    await alice.api("POST", "/api/invites/", json={})
    await alice.api("PUT", f"/api/blocks/{carol.username}/")
    await carol.api("PUT", f"/api/blocks/{alice.username}/")
    on_disk = await files_of(db, media_root, alice.user["id"])
    assert len(on_disk) >= 4 and all(path.exists() for path in on_disk)
    phone = await alice.login()
    tabs = [await alice.connect(), await alice.on(other).connect(token=phone)]
    bob_tab = await bob.connect()

    wrong = await alice.api("POST", "/api/delete-account/", json={"phrase": "not it at all, no"})
    assert_error(wrong, 401, "invalid_credentials")
    assert wrong.json()["error"]["message"] == "That is not your current phrase."  # not "unknown username"
    left = await alice.api("POST", "/api/delete-account/", json={"phrase": PHRASE})
    assert left.status_code == 200 and left.json() == {"deleted": {"messages": 2, "files": 1}}
    assert left.headers["clear-site-data"] == '"cache", "storage"'
    assert await asyncio.gather(*(tab.closed_with(timeout=1.0) for tab in tabs)) == [4401, 4401]
    assert (await bob_tab.expect("cleared", skip=("presence", "chat"))) == {"type": "cleared", "with": alice.username}
    assert not any(path.exists() for path in on_disk)
    assert (await bob.api("GET", avatar["url"])).status_code == 404
    for token in (alice.token, phone):
        assert_error(await alice.api("GET", "/api/user-profile/", token=token), 401, "unauthenticated")
    assert_error(await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "?"}),
                 404, "unknown_user")
    for left_behind in ("sessions WHERE user_id", "invites WHERE created_by", "blocks WHERE blocker_id",
                        "blocks WHERE blocked_id", "files WHERE owner_id", "users WHERE id"):
        assert await db.fetchval(f"SELECT count(*) FROM {left_behind} = $1", alice.user["id"]) == 0, left_behind
    retired = [row["tag"] for row in await db.fetch("SELECT tag FROM retired_usernames")]
    assert retired and alice.username.encode() not in b"".join(retired)  # a keyed hash, not the name
    async with server.client() as http:
        for name in (alice.username, alice.username.upper()):
            again = await http.post("/api/register/", json={"username": name, "phrase": PHRASE})
            assert_error(again, 409, "username_taken", "username")


async def test_a_send_to_a_deleted_account_through_a_worker_that_knew_it_is_unknown_user(server: Server) -> None:
    """The writer caches usernames (they never change); a deleted account's name is retired, its
    id gone: the next send through that worker is 404 `unknown_user`, not a failed batch."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    assert (await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "1"})).status_code == 201
    assert (await alice.api("POST", "/api/delete-account/", json={"phrase": PHRASE})).status_code == 200
    bob_tab = await bob.connect()
    await bob_tab.send({"type": "chat", "to": alice.username, "message": "2", "client_id": "after"})
    refused = await bob_tab.expect("error", skip=("presence",))
    assert refused["code"] == "unknown_user" and refused["client_id"] == "after"
    assert_error(await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "3"}),
                 404, "unknown_user")


async def test_leaving_needs_the_phrase_in_a_json_object(server: Server) -> None:
    alice = await server.person("alice").register()
    assert_error(await alice.api("POST", "/api/delete-account/", json={}), 422, "invalid_input", "phrase")
    assert_error(await alice.api("POST", "/api/delete-account/", content=b"{",
                                 headers={"Content-Type": "application/json"}), 400, "bad_json")
    assert_error(await alice.api("POST", "/api/delete-account/", content=b"phrase",
                                 headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    async with server.client() as http:
        assert_error(await http.post("/api/delete-account/", json={"phrase": PHRASE}), 401, "unauthenticated")
    assert (await alice.api("GET", "/api/user-profile/")).status_code == 200  # still here


async def test_a_cookie_from_another_sites_page_cannot_change_a_phrase_or_leave(server: Server) -> None:
    alice = await server.person("alice").register()
    async with server.client(cookies={"session": alice.token or ""}) as http:
        for path, body in (("/api/change-phrase/", {"phrase": PHRASE, "new_phrase": NEW_PHRASE}),
                           ("/api/delete-account/", {"phrase": PHRASE})):
            answer = await http.post(path, json=body, headers={"Origin": "https://evil.example"})
            assert_error(answer, 403, "origin_refused")
    assert (await alice.api("GET", "/api/user-profile/")).status_code == 200
