"""Accounts: Alice registers, logs in, reads her profile, manages sessions, logs out.

Every refusal is checked for its status, its error shape, and that nothing
was stored.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime
from http.cookies import SimpleCookie

import asyncpg
import pytest

from secure_link.wire import rfc3339

from ..story import PHRASE, Server, assert_error


async def user_count(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM users")


async def test_alice_registers_and_is_logged_in(server: Server, db: asyncpg.Connection) -> None:
    name = f"Alice_{uuid.uuid4().hex[:6]}"
    async with server.client() as http:
        response = await http.post("/api/register/", json={"username": name, "phrase": PHRASE, "display_name": "Alice A."})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["user"]["username"] == name.lower()
        assert body["user"]["display_name"] == "Alice A."
        assert body["user"]["avatar_url"] is None
        assert body["user"]["created_at"].endswith("Z")
        assert len(body["token"]) >= 43  # 256 bits, url-safe base64
        cookie = response.headers["set-cookie"].lower()
        assert "session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert "secure" not in cookie.replace("session=", "")  # plain http here
        profile = await http.get("/api/user-profile/")  # the cookie alone logs her in
    assert profile.status_code == 200
    assert profile.json() == {"user": body["user"]}
    stored = await db.fetchrow("SELECT phrase_hash FROM users WHERE username = $1", name.lower())
    assert stored["phrase_hash"].startswith(b"$2b$04$")
    assert PHRASE.encode() not in stored["phrase_hash"]
    tokens = await db.fetch("SELECT token_hash FROM sessions s JOIN users u ON u.id = s.user_id WHERE username = $1", name.lower())
    assert [row["token_hash"] for row in tokens] == [hashlib.sha256(body["token"].encode()).digest()]


async def test_a_username_is_taken_whatever_its_case(server: Server, db: asyncpg.Connection) -> None:
    alice = await server.person("alice").register()
    before = await user_count(db)
    async with server.client() as http:
        response = await http.post("/api/register/", json={"username": alice.username.upper(), "phrase": PHRASE})
    assert_error(response, 409, "username_taken", "username")
    assert await user_count(db) == before


LONG = "x" * 300
HOSTILE_REGISTRATIONS = [
    # (body, status, code, field)
    ({"phrase": PHRASE}, 422, "invalid_input", "username"),
    ({"username": "bob_ok"}, 422, "invalid_input", "phrase"),
    ({"username": 42, "phrase": PHRASE}, 422, "invalid_input", "username"),
    ({"username": "bob_ok", "phrase": ["a", "b"]}, 422, "invalid_input", "phrase"),
    ({"username": "ab", "phrase": PHRASE}, 422, "invalid_input", "username"),
    ({"username": "b" * 33, "phrase": PHRASE}, 422, "invalid_input", "username"),
    ({"username": "bob\x00nul", "phrase": PHRASE}, 422, "invalid_input", "username"),
    ({"username": "bob\u202eevil", "phrase": PHRASE}, 422, "invalid_input", "username"),
    ({"username": "bob😀", "phrase": PHRASE}, 422, "invalid_input", "username"),
    ({"username": "bob'; DROP TABLE users;--", "phrase": PHRASE}, 422, "invalid_input", "username"),
    ({"username": "bob_ok", "phrase": "too short"}, 422, "invalid_input", "phrase"),
    ({"username": "bob_ok", "phrase": "twowords onlyhere"}, 422, "invalid_input", "phrase"),
    ({"username": "bob_ok", "phrase": "I am BOB_OK and proud"}, 422, "invalid_input", "phrase"),
    ({"username": "bob_ok", "phrase": "nul \x00 inside a phrase"}, 422, "invalid_input", "phrase"),
    ({"username": "bob_ok", "phrase": "word " * 60}, 422, "invalid_input", "phrase"),
    ({"username": "bob_ok", "phrase": PHRASE, "display_name": "evil\u202eexe.txt"}, 422, "invalid_input", "display_name"),
    ({"username": "bob_ok", "phrase": PHRASE, "display_name": "clear \x1b[2J screen"}, 422, "invalid_input", "display_name"),
    ({"username": "bob_ok", "phrase": PHRASE, "display_name": "   "}, 422, "invalid_input", "display_name"),
    ({"username": "bob_ok", "phrase": PHRASE, "display_name": LONG}, 422, "invalid_input", "display_name"),
    ([PHRASE], 422, "invalid_input", None),
    ("just a string", 422, "invalid_input", None),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), HOSTILE_REGISTRATIONS)
async def test_hostile_registrations_are_refused_and_store_nothing(
        server: Server, db: asyncpg.Connection, body, status, code, field) -> None:
    before = await user_count(db)
    async with server.client() as http:
        response = await http.post("/api/register/", json=body)
    assert_error(response, status, code, field)
    assert await user_count(db) == before


# The phrase rules at their edges, each refusal naming the first rule broken (docs/api.md).
# NUL and lone surrogates never reach these rules (`take` refuses them for every field), so
# the control-character rule is shown with ESC and BEL.
PHRASE_EDGES = [
    # (phrase, the rule named, or None when accepted)
    ("abc defg hij", None),  # 12 characters, 3 words: both at their minimum
    ("a" * 84 + " " + "b" * 84 + " " + "c" * 86, None),  # 256 characters
    ("abc defg hi", "must be 12 to 256 characters long"),
    ("a" * 85 + " " + "b" * 85 + " " + "c" * 85, "must be 12 to 256 characters long"),  # 257
    ("twelvechars twowords", "must have at least 3 words"),
    ("an escape \x1b[2J inside a phrase", "must not contain control characters"),
    ("a bell \x07", "must not contain control characters"),  # the first rule broken, though short too
    ("%(username)s IS MY NAME", "must not contain the username"),  # in any case
]


@pytest.mark.parametrize(("phrase", "rule"), PHRASE_EDGES)
async def test_phrases_at_the_edges_of_the_rules(server: Server, db: asyncpg.Connection, phrase, rule) -> None:
    username = f"bob_edge{uuid.uuid4().hex[:6]}"
    before = await user_count(db)
    async with server.client() as http:
        response = await http.post("/api/register/", json={"username": username, "phrase": phrase % {"username": username}})
    if rule is None:
        assert response.status_code == 201, response.text
        return
    assert_error(response, 422, "invalid_input", "phrase")
    assert response.json()["error"]["fields"] == {"phrase": rule}
    assert await user_count(db) == before


USERNAME_RULE = "must be 3 to 32 characters of a-z, 0-9, '_', '.' and '-'"


@pytest.mark.parametrize(("length", "accepted"), [(2, False), (3, True), (32, True), (33, False)])
async def test_usernames_at_the_edges_of_their_length(server: Server, length, accepted) -> None:
    username = ("q" + uuid.uuid4().hex * 2)[:length]  # a 'q' is in no PHRASE: the phrase rule stays silent
    async with server.client() as http:
        response = await http.post("/api/register/", json={"username": username, "phrase": PHRASE})
    if accepted:
        assert response.status_code == 201, response.text
        return
    assert_error(response, 422, "invalid_input", "username")
    assert response.json()["error"]["fields"] == {"username": USERNAME_RULE}


CONTROL = "must not contain control characters"
SEPARATOR = "must not contain line or paragraph separators"
DIRECTION = "must not contain text-direction characters"
INVISIBLE = "must not contain invisible characters (a joiner or variation selector only within an emoji)"
DISPLAY_NAME_EDGES = [
    # (display name sent, as stored, or the rule named): each class of character that could make
    # "Alice" look like someone else's name in the conversation list, and the emoji that stay
    ("  x  ", "x", None),  # trimmed, then 1 character
    ("d" * 64, "d" * 64, None),
    ("d" * 65, None, "must be 1 to 64 characters long"),
    ("tab\there", None, CONTROL),                       # Cc
    ("Ali\x85ce", None, CONTROL),                       # Cc, a C1 line break
    ("Alice\u2028Admin", None, SEPARATOR),              # Zl
    ("Alice\u2029Admin", None, SEPARATOR),              # Zp (trimmed at either end, as spaces are)
    ("left\u200eright", None, DIRECTION),               # the marks and overrides
    ("Alice\u202e", None, DIRECTION),
    ("Al\u061cice", None, DIRECTION),                   # Arabic letter mark
    ("Alice\u200b", None, INVISIBLE),                   # zero-width space
    ("Al\u200cice", None, INVISIBLE),                   # zero-width non-joiner
    ("Al\u200dice", None, INVISIBLE),                   # a joiner between letters
    ("Ali\u2060ce", None, INVISIBLE),                   # word joiner
    ("\ufeffAlice", None, INVISIBLE),                   # byte order mark
    ("Al\u00adice", None, INVISIBLE),                   # soft hyphen
    ("Al\u180eice", None, INVISIBLE),                   # Mongolian vowel separator
    ("Alice\U000e0041\U000e0042", None, INVISIBLE),     # tag characters
    ("Alice\ufe0f", None, INVISIBLE),                   # a variation selector after a letter
    ("Ali\U000e0100ce", None, INVISIBLE),               # a supplementary variation selector
    ("A\u034flice", None, INVISIBLE),                   # combining grapheme joiner
    ("\u3164", None, INVISIBLE),                        # Hangul filler: a letter drawn as nothing
    ("Alice \u2800", None, INVISIBLE),                  # braille blank
    ("\U0001f469\u200d\U0001f4bb Dana", "\U0001f469\u200d\U0001f4bb Dana", None),  # 👩‍💻: a joiner between emoji
    ("\U0001f469\U0001f3fd\u200d\U0001f680", "\U0001f469\U0001f3fd\u200d\U0001f680", None),  # 👩🏽‍🚀
    ("\u2764\ufe0f\u200d\U0001f525", "\u2764\ufe0f\u200d\U0001f525", None),  # ❤️‍🔥
    ("\U0001f3f3\ufe0f\u200d\U0001f308 Sam", "\U0001f3f3\ufe0f\u200d\U0001f308 Sam", None),  # 🏳️‍🌈
    ("1\ufe0f\u20e3 Bo", "1\ufe0f\u20e3 Bo", None),     # 1️⃣
    ("\u200d\U0001f469", None, INVISIBLE),              # a joiner with nothing to join
    ("Zo\u00eb", "Zo\u00eb", None),
]


@pytest.mark.parametrize(("sent", "stored", "rule"), DISPLAY_NAME_EDGES,
                         ids=[ascii(sent)[1:-1] for sent, _, _ in DISPLAY_NAME_EDGES])
async def test_display_names_at_the_edges_of_the_rules(server: Server, sent, stored, rule) -> None:
    body = {"username": f"dana_{uuid.uuid4().hex[:6]}", "phrase": PHRASE, "display_name": sent}
    async with server.client() as http:
        response = await http.post("/api/register/", json=body)
    if rule is None:
        assert response.status_code == 201, response.text
        assert response.json()["user"]["display_name"] == stored
        return
    assert_error(response, 422, "invalid_input", "display_name")
    assert response.json()["error"]["fields"] == {"display_name": rule}


RAW_BODIES = [
    # (content, content type, status, code)
    (b"{not json", "application/json", 400, "bad_json"),
    (b"\xff\xfe\x00", "application/json", 400, "bad_json"),
    (b'{"username": "x"}', "text/plain", 415, "unsupported_media_type"),
    (b"username=x&phrase=y", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b"", "application/json", 400, "bad_json"),
    (b'{"username": "bob_ok", "phrase": "a lone \\ud800 in a phrase"}', "application/json", 422, "invalid_input"),
    (b'{"username": "bob_ok", "phrase": "' + b"a b c " * 20_000 + b'"}', "application/json", 413, "too_large"),
    (b"[" * 10 * 1024 * 1024, "application/json", 413, "too_large"),
]


@pytest.mark.parametrize("path", ["/api/register/", "/api/login/"])
@pytest.mark.parametrize(("content", "content_type", "status", "code"), RAW_BODIES)
async def test_malformed_bodies_get_a_clear_error(
        server: Server, db: asyncpg.Connection, path, content, content_type, status, code) -> None:
    before = await user_count(db)
    async with server.client() as http:
        response = await http.post(path, content=content, headers={"Content-Type": content_type})
    assert_error(response, status, code)
    assert await user_count(db) == before


async def test_charset_parameter_is_fine(server: Server) -> None:
    name = f"carol_{uuid.uuid4().hex[:6]}"
    async with server.client() as http:
        response = await http.post("/api/register/", content=f'{{"username": "{name}", "phrase": "{PHRASE}"}}',
                                   headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 201, response.text


async def test_login_accepts_the_phrase_and_nothing_else(server: Server) -> None:
    alice = await server.person("alice").register()
    async with server.client() as http:
        good = await http.post("/api/login/", json={"username": alice.username.upper(), "phrase": PHRASE})
        wrong = await http.post("/api/login/", json={"username": alice.username, "phrase": PHRASE + "!"})
        unknown = await http.post("/api/login/", json={"username": "nobody_" + alice.username, "phrase": PHRASE})
    assert good.status_code == 200 and good.json()["user"]["username"] == alice.username
    assert_error(wrong, 401, "invalid_credentials")
    assert_error(unknown, 401, "invalid_credentials")
    assert wrong.json() == unknown.json()


async def test_unicode_phrases_are_normalised_and_never_truncated(server: Server) -> None:
    # Two 90-byte phrases that differ only after bcrypt's 72-byte limit.
    base = "élan vital " * 8
    first, second = base + "ending one", base + "ending two"
    assert first.encode()[:72] == second.encode()[:72]
    person = server.person("unicode")
    person.phrase = first
    await person.register()
    async with server.client() as http:
        ok = await http.post("/api/login/", json={"username": person.username, "phrase": first})
        near = await http.post("/api/login/", json={"username": person.username, "phrase": second})
        # NFKC: the decomposed é (e + combining acute) is the same phrase.
        decomposed = first.replace("é", "e\u0301")
        same = await http.post("/api/login/", json={"username": person.username, "phrase": decomposed})
    assert ok.status_code == 200
    assert_error(near, 401, "invalid_credentials")
    assert same.status_code == 200


async def test_emoji_phrase_and_fullwidth_username(server: Server) -> None:
    suffix = uuid.uuid4().hex[:6]
    fullwidth = "ｄａｎ_" + suffix  # NFKC folds it to dan_...
    async with server.client() as http:
        created = await http.post("/api/register/", json={"username": fullwidth, "phrase": "🔐 secret garden 🌱 path"})
        again = await http.post("/api/login/", json={"username": "DAN_" + suffix, "phrase": "🔐 secret garden 🌱 path"})
    assert created.status_code == 201 and created.json()["user"]["username"] == "dan_" + suffix
    assert again.status_code == 200


def test_timestamps_are_utc_whatever_the_servers_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A VPS set to its owner's zone still answers `…Z` times (this machine runs in UTC)."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert rfc3339(datetime(2026, 11, 30, 23, 59, 59, 999_999, tzinfo=UTC)) == "2026-11-30T23:59:59.999Z"
    finally:
        monkeypatch.undo()
        time.tzset()


async def test_tokens_bearer_cookie_forged_expired_revoked(server: Server, db: asyncpg.Connection) -> None:
    alice = await server.person("alice").register()
    async with server.client(cookies={"session": alice.token}) as http:
        by_cookie = await http.get("/api/user-profile/")
    async with server.client() as http:
        forged = await http.get("/api/user-profile/", headers={"Authorization": "Bearer " + "A" * 43})
        anonymous = await http.get("/api/user-profile/")
        huge = await http.get("/api/user-profile/", headers={"Authorization": "Bearer " + "A" * 5000})
        basic = await http.get("/api/user-profile/", headers={"Authorization": "Basic " + alice.token})
        lower = await http.get("/api/user-profile/", headers={"Authorization": "bearer " + alice.token})
        spaced = await http.get("/api/user-profile/", headers={"Authorization": "Bearer  " + alice.token})
    # the scheme is case-insensitive, and one or more spaces may follow it (RFC 9110 11.4)
    assert [r.status_code for r in (by_cookie, lower, spaced)] == [200, 200, 200]
    for response in (forged, anonymous, huge, basic):  # a real token under another scheme is no bearer token
        assert_error(response, 401, "unauthenticated")

    other = await alice.login()
    await db.execute("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
                     hashlib.sha256(other.encode()).digest())
    assert_error(await alice.api("GET", "/api/user-profile/", token=other), 401, "unauthenticated")

    assert (await alice.api("POST", "/api/logout/")).status_code == 200
    assert_error(await alice.api("GET", "/api/user-profile/"), 401, "unauthenticated")


async def test_expiry_slides_forward_with_use(server: Server, db: asyncpg.Connection) -> None:
    alice = await server.person("alice").register()
    digest = hashlib.sha256(alice.token.encode()).digest()
    await db.execute("UPDATE sessions SET last_used_at = now() - interval '1 day', "
                     "expires_at = now() + interval '1 hour' WHERE token_hash = $1", digest)
    assert (await alice.api("GET", "/api/user-profile/")).status_code == 200
    remaining = await db.fetchval("SELECT extract(epoch FROM expires_at - now()) FROM sessions WHERE token_hash = $1", digest)
    assert remaining > server.settings.session_ttl - 60


async def test_alice_lists_and_revokes_her_sessions(server: Server) -> None:
    alice = await server.person("alice").register()
    bob = await server.person("bob").register()
    laptop = await alice.login()
    listed = (await alice.api("GET", "/api/sessions/")).json()["sessions"]
    assert len(listed) == 2 and sum(s["current"] for s in listed) == 1
    for session in listed:  # docs/api.md's Session: when it began, was last used and will end
        assert set(session) == {"id", "created_at", "last_used_at", "expires_at", "user_agent", "address", "current"}
        began, used, ends = (datetime.fromisoformat(session[key]) for key in ("created_at", "last_used_at", "expires_at"))
        assert began <= used < ends and began.tzinfo is not None
    laptop_id = next(s["id"] for s in listed if not s["current"])

    assert_error(await bob.api("DELETE", f"/api/sessions/{laptop_id}"), 404, "not_found")
    assert (await alice.api("GET", "/api/user-profile/", token=laptop)).status_code == 200
    assert (await alice.api("DELETE", f"/api/sessions/{laptop_id}")).status_code == 200
    assert_error(await alice.api("GET", "/api/user-profile/", token=laptop), 401, "unauthenticated")
    assert_error(await alice.api("DELETE", "/api/sessions/99999999999999999999"), 404, "not_found")


async def test_profile_display_name_can_change(server: Server) -> None:
    alice = await server.person("alice").register()
    changed = await alice.api("PATCH", "/api/user-profile/", json={"display_name": "  Alice 🌸 "})
    assert changed.status_code == 200 and changed.json()["user"]["display_name"] == "Alice 🌸"
    assert_error(await alice.api("PATCH", "/api/user-profile/", json={"display_name": "a\x00b"}), 422, "invalid_input", "display_name")
    assert_error(await alice.api("PATCH", "/api/user-profile/", json={}), 422, "invalid_input", "display_name")
    for hostile in ("   ", "evil\u202eexe.txt", "x" * 65, "Alice\u200b", "Ali\u2028ce"):  # well-formed, refused
        assert_error(await alice.api("PATCH", "/api/user-profile/", json={"display_name": hostile}), 422, "invalid_input", "display_name")
    assert (await alice.api("GET", "/api/user-profile/")).json()["user"]["display_name"] == "Alice 🌸"


async def test_logout_ignores_any_body_and_needs_a_session(server: Server) -> None:
    alice = await server.person("alice").register()
    response = await alice.api("POST", "/api/logout/", content=b"\x00garbage", headers={"Content-Type": "text/html"})
    assert response.status_code == 200
    assert response.json() == {"cleared": {"messages": 0, "files": 0}}
    cookie = SimpleCookie()
    cookie.load(response.headers["set-cookie"])
    assert cookie["session"].value == "" and cookie["session"]["max-age"] == "0"  # deleted, not replaced
    async with server.client() as http:
        assert_error(await http.post("/api/logout/"), 401, "unauthenticated")
