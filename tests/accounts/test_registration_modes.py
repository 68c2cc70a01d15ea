"""Who may register (contract v1.2): open, by invite, or closed; invites made, listed, revoked, used.

Alice is on a small group's server that takes new people by invite only. She invites
Bob with a link; Bob registers with its code, and the code is spent. Codes are checked
before any phrase is hashed, throttled like registrations, used up atomically, and a
refused registration spends nothing.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from secure_link.config import Settings

from ..conftest import running_server, settings_for
from ..story import PHRASE, Person, Server, assert_error, sample, scrape


@pytest.fixture(scope="module")
async def gated(settings: Settings) -> AsyncIterator[Server]:
    """The module's database served in invite mode (people registered on `server`, open, are members);
    its hashing line holds a crowd of twenty registrations at once (503 `busy` is not the story here)."""
    async with running_server(settings.replace(registration="invite", bcrypt_queue=64)) as server:
        yield server


async def invite(by: Person, **terms: Any) -> dict[str, Any]:
    answer = await by.api("POST", "/api/invites/", json=terms)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def attempt(server: Server, name: str, **extra: Any) -> httpx.Response:
    body = {"username": Person(server, name).username, "phrase": PHRASE, **extra}
    async with server.client() as http:
        return await http.post("/api/register/", json=body)


async def live_codes(person: Person) -> list[str]:
    return [item["code"] for item in (await person.api("GET", "/api/invites/")).json()["invites"]]


async def test_each_mode_says_what_it_is_and_whom_it_lets_in(database_url: str, media_root: Path) -> None:
    base = settings_for(database_url, media_root)
    for mode in ("open", "invite", "closed"):
        async with running_server(base.replace(registration=mode)) as server:
            async with server.client() as http:
                assert (await http.get("/api/registration/")).json() == {"mode": mode}
                assert (await http.get("/api/registration")).json() == {"mode": mode}
            answer = await attempt(server, "walkin", invite="not-a-code-at-all")
            if mode == "open":
                assert answer.status_code == 201, answer.text  # the code is ignored
            elif mode == "invite":
                assert_error(answer, 403, "invite_invalid", "invite")
                assert_error(await attempt(server, "walkin"), 403, "invite_required", "invite")
            else:
                assert_error(answer, 403, "registration_closed")
            assert_error(await attempt(server, "x", username="x"), 422, "invalid_input", "username")  # fields first


async def test_an_invite_link_lets_one_person_in_then_is_spent(server: Server, gated: Server) -> None:
    alice = (await server.person("alice").register()).on(gated)
    made = await invite(alice)
    assert set(made) == {"code", "url", "uses_left", "expires_at", "created_at"}
    assert len(made["code"]) == 32 and base64.urlsafe_b64decode(made["code"])  # 192 bits, URL-safe
    assert made["url"] == f"http://{gated.address}/?invite={made['code']}" and made["uses_left"] == 1
    week = datetime.datetime.fromisoformat(made["expires_at"]) - datetime.datetime.fromisoformat(made["created_at"])
    assert abs(week - datetime.timedelta(days=7)) < datetime.timedelta(seconds=5)
    assert await live_codes(alice) == [made["code"]]
    bob = await gated.person("bob").register(invite=made["code"])
    assert bob.user["username"].startswith("bob_")
    assert await live_codes(alice) == []  # used up: no longer live, no longer listed
    assert_error(await attempt(gated, "carol", invite=made["code"]), 403, "invite_invalid", "invite")


async def test_of_twenty_registrations_with_a_one_use_code_exactly_one_gets_in(server: Server, gated: Server) -> None:
    alice = (await server.person("alice").register()).on(gated)
    code = (await invite(alice))["code"]
    answers = await asyncio.gather(*(attempt(gated, f"crowd{n}", invite=code) for n in range(20)))
    assert sorted(answer.status_code for answer in answers) == [201] + [403] * 19
    for answer in answers:
        if answer.status_code == 403:
            assert_error(answer, 403, "invite_invalid")


async def test_a_refused_registration_spends_no_use(server: Server, gated: Server) -> None:
    alice = (await server.person("alice").register()).on(gated)
    code = (await invite(alice, uses=2))["code"]
    assert_error(await attempt(gated, "dave", invite=code, phrase="too short"), 422, "invalid_input", "phrase")
    async with gated.client() as http:  # a name already taken: 409, and the use given back
        taken = await http.post("/api/register/", json={"username": alice.username, "phrase": PHRASE, "invite": code})
    assert_error(taken, 409, "username_taken", "username")
    listed = (await alice.api("GET", "/api/invites/")).json()["invites"]
    assert [item["uses_left"] for item in listed] == [2]


async def test_revoked_expired_forged_and_unknown_codes_get_one_answer(server: Server, gated: Server,
                                                                      db: asyncpg.Connection) -> None:
    alice = (await server.person("alice").register()).on(gated)
    revoked, expired, live = [(await invite(alice))["code"] for _ in range(3)]
    assert (await alice.api("DELETE", f"/api/invites/{revoked}/")).status_code == 200
    await db.execute("UPDATE invites SET expires_at = now() - interval '1 second' WHERE nonce = $1",
                     base64.urlsafe_b64decode(expired)[:16])
    raw = base64.urlsafe_b64decode(live)
    forged = base64.urlsafe_b64encode(raw[:16] + bytes(8)).decode()  # the right row, a tag made up
    for code in (revoked, expired, forged, "A" * 32, "😀", "x" * 200):
        assert_error(await attempt(gated, "eve", invite=code), 403, "invite_invalid", "invite")
    assert (await attempt(gated, "frank", invite=live)).status_code == 201


async def test_invites_are_limited_per_user_and_revoked_only_by_their_maker(server: Server, gated: Server) -> None:
    alice, bob = [(await server.person(name).register()).on(gated) for name in ("alice", "bob")]
    codes = [(await invite(alice))["code"] for _ in range(5)]
    assert_error(await alice.api("POST", "/api/invites/", json={}), 409, "invite_limit")
    assert await live_codes(alice) == list(reversed(codes))  # newest first
    assert (await alice.api("GET", "/api/invites/")).json()["limit"] == 5  # the client says why it is full
    assert_error(await bob.api("DELETE", f"/api/invites/{codes[0]}/"), 404, "not_found")  # not his
    assert_error(await alice.api("DELETE", "/api/invites/nothing-like-a-code/"), 404, "not_found")
    revoked = await alice.api("DELETE", f"/api/invites/{codes[0]}")
    assert revoked.status_code == 200 and revoked.json()["revoked"]["code"] == codes[0]
    assert_error(await alice.api("DELETE", f"/api/invites/{codes[0]}/"), 404, "not_found")  # revoked already
    assert (await alice.api("POST", "/api/invites", json={"uses": 3, "expires_in": 3600})).status_code == 201


async def test_with_no_invites_per_user_only_the_operator_invites(database_url: str, media_root: Path,
                                                                 server: Server) -> None:
    alice = await server.person("alice").register()
    settings = settings_for(database_url, media_root, registration="invite", invites_per_user=0)
    async with running_server(settings) as closed_circle:
        assert_error(await alice.on(closed_circle).api("POST", "/api/invites/", json={}), 403, "invites_disabled")


@pytest.mark.parametrize(("terms", "field"), [
    ({"uses": 0}, "uses"), ({"uses": 101}, "uses"), ({"uses": "1"}, "uses"), ({"uses": True}, "uses"),
    ({"uses": 1.5}, "uses"), ({"expires_in": 59}, "expires_in"), ({"expires_in": 2_592_001}, "expires_in"),
    ({"expires_in": None}, "expires_in"), ({"uses": -1, "expires_in": 0}, "expires_in"),
])
async def test_invite_terms_out_of_range_are_refused_by_field(server: Server, terms: dict[str, Any],
                                                              field: str) -> None:
    alice = await server.person("alice").register()
    assert_error(await alice.api("POST", "/api/invites/", json=terms), 422, "invalid_input", field)


async def test_invites_need_a_session_and_a_json_object(server: Server) -> None:
    async with server.client() as http:
        assert_error(await http.post("/api/invites/", json={}), 401, "unauthenticated")
        assert_error(await http.get("/api/invites/"), 401, "unauthenticated")
    alice = await server.person("alice").register()
    assert_error(await alice.api("POST", "/api/invites/", content=b"[1]", headers={"Content-Type": "application/json"}),
                 422, "invalid_input")
    assert_error(await alice.api("POST", "/api/invites/", content=b"{", headers={"Content-Type": "application/json"}),
                 400, "bad_json")


async def test_guessing_codes_is_throttled_like_registration(database_url: str, media_root: Path) -> None:
    settings = settings_for(database_url, media_root, registration="invite", register_rate_per_min=3)
    async with running_server(settings) as server:
        for n in range(3):
            assert_error(await attempt(server, f"guess{n}", invite=f"{n:032d}"), 403, "invite_invalid")
        limited = await attempt(server, "guess3", invite="3" * 32)
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        metrics = await scrape(server)
        assert sample(metrics, "secure_link_registrations_refused_total", '{reason="invite_invalid"}') == 3
        assert sample(metrics, "secure_link_registrations_refused_total", '{reason="rate_limited"}') == 1


async def test_the_database_holds_no_usable_code(server: Server, db: asyncpg.Connection) -> None:
    """A dump holds each invite's random part, never a code: the tag needs the pepper."""
    alice = await server.person("alice").register()
    code = (await invite(alice))["code"]
    stored = await db.fetch("SELECT nonce FROM invites")
    assert all(len(row["nonce"]) == 16 and row["nonce"] != base64.urlsafe_b64decode(code) for row in stored)
    assert base64.urlsafe_b64decode(code)[:16] in [row["nonce"] for row in stored]
