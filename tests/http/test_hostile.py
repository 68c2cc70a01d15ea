"""Mallory sends what PostgreSQL and Python choke on; every answer is a clear error."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from pathlib import Path

import asyncpg
import pytest

from secure_link.config import Settings

from ..conftest import running_server, settings_for
from ..story import PHRASE, Person, Server, assert_error, eventually, waiting_for_a_lock

SURROGATE = "\ud800"  # what the JSON escape "\ud800" decodes to: not storable text


@pytest.fixture(scope="module")
def settings(database_url: str, media_root: Path) -> Settings:
    return settings_for(database_url, media_root, housekeeping_interval=0.2, ws_send_timeout=1.0)


def raw_json(body: dict) -> bytes:
    """JSON with escapes kept as escapes, as a hostile client would send them."""
    return json.dumps(body, ensure_ascii=True).encode()


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/register/", {"username": "mallory_x", "phrase": SURROGATE + " aaa bbb ccc ddd"}, "phrase"),
    ("/api/register/", {"username": "mallory_x", "phrase": PHRASE, "display_name": SURROGATE}, "display_name"),
    ("/api/register/", {"username": "mal" + SURROGATE, "phrase": PHRASE}, "username"),
    ("/api/login/", {"username": SURROGATE, "phrase": PHRASE}, "username"),
    ("/api/login/", {"username": "a\x00b", "phrase": PHRASE}, "username"),
    ("/api/login/", {"username": "someone", "phrase": SURROGATE}, "phrase"),
])
async def test_unstorable_strings_in_account_requests(server: Server, db: asyncpg.Connection, path, body, field) -> None:
    before = await db.fetchval("SELECT count(*) FROM users")
    async with server.client() as http:
        response = await http.post(path, content=raw_json(body), headers={"Content-Type": "application/json"})
    assert_error(response, 422, "invalid_input", field)
    assert await db.fetchval("SELECT count(*) FROM users") == before


@pytest.mark.parametrize("field", ["message", "to", "attachment", "client_id"])
@pytest.mark.parametrize("bad", [SURROGATE, "x\x00y"])
async def test_unstorable_strings_in_sends(server: Server, db: asyncpg.Connection, field: str, bad: str) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    body = {"to": bob.username, "message": "hi", field: bad}
    before = await db.fetchval("SELECT count(*) FROM messages")
    response = await alice.api("POST", "/api/send-message/", content=raw_json(body),
                               headers={"Content-Type": "application/json"})
    assert_error(response, 422, "invalid_input", field)
    socket = await alice.connect()
    await socket.send(raw_json({"type": "chat", **body}).decode())
    error = await socket.expect("error")
    assert error["code"] == "invalid_input" and field in error["fields"]
    assert await db.fetchval("SELECT count(*) FROM messages") == before


@pytest.mark.parametrize("content", [b"[" * 30_000, b'{"n": ' + b"9" * 5000 + b"}"])
async def test_json_too_deep_or_numbers_too_long(server: Server, content: bytes) -> None:
    alice = await server.person("alice").register()
    async with server.client() as http:
        response = await http.post("/api/login/", content=content, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "bad_json")
    socket = await alice.connect()
    await socket.send(content.decode())
    assert (await socket.expect("error"))["code"] == "bad_json"
    await socket.send({"type": "ping"})
    await socket.expect("pong")


@pytest.mark.parametrize("frame", [{"type": "sync", "since": 2**70}, {"type": "read", "with": "x", "up_to": -(2**70)}])
async def test_integers_beyond_64_bits(server: Server, frame: dict) -> None:
    alice = await server.person("alice").register()
    socket = await alice.connect()
    await socket.send(frame)
    error = await socket.expect("error")
    assert error["code"] == "invalid_input"


async def test_history_with_a_nul_username(server: Server) -> None:
    alice = await server.person("alice").register()
    assert_error(await alice.api("GET", "/api/messages/", params={"with": "a\x00b"}), 422, "invalid_input", "with")


async def test_an_unstorable_token_in_the_auth_frame_closes_with_4401(server: Server) -> None:
    socket = await server.person("anonymous").connect(ready=False)
    await socket.send('{"type": "auth", "token": "\\ud800"}')
    assert await socket.closed_with() == 4401


async def test_typing_and_receipts_need_a_conversation(server: Server) -> None:
    alice, stranger = await server.person("alice").register(), await server.person("stranger").register()
    socket = await alice.connect()
    for frame in ({"type": "typing", "to": stranger.username}, {"type": "read", "with": stranger.username, "up_to": 1}):
        await socket.send(frame)
        error = await socket.expect("error")
        assert error["code"] == "no_conversation" and error["message"]


async def test_a_receipt_beyond_the_last_message_does_not_hide_new_ones(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    first = (await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "one"})).json()
    alice_tab, bob_tab = await alice.connect(), await bob.connect()
    await alice_tab.send({"type": "read", "with": bob.username, "up_to": 10**15})
    assert (await bob_tab.expect("read"))["up_to"] == first["id"]
    await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "two"})
    conversations = (await alice.api("GET", "/api/conversations/")).json()["conversations"]
    assert conversations[0]["unread"] == 1


async def test_a_socket_closes_when_its_session_expires(server: Server, db: asyncpg.Connection) -> None:
    """Expiry publishes nothing: housekeeping finds it, for every socket of the session still open
    here, and only for those: Bob's session is live."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    phone, laptop = await alice.connect(), await alice.connect()  # one session, two sockets
    bob_tab = await bob.connect()
    await phone.close()
    await db.execute("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
                     hashlib.sha256(alice.token.encode()).digest())
    assert await laptop.closed_with(timeout=5) == 4401
    await bob_tab.send({"type": "ping"})
    assert await bob_tab.expect("pong") == {"type": "pong"}


@pytest.mark.parametrize(("query", "code"), [
    ("?with=%00", "missing_recipient"),  # unusable: as good as none
    ("?with=", "missing_recipient"),
    ("?with=" + "x" * 65, "missing_recipient"),
    ("?with=x", "unknown_user"),  # usable, and names nobody
    ("?with=" + "x" * 64, "unknown_user"),
])
async def test_with_binds_only_a_usable_name(server: Server, query, code) -> None:
    alice = await server.person("alice").register()
    socket = await alice.connect(query=query)
    await socket.send({"type": "chat", "message": "to whom?"})
    assert (await socket.expect("error"))["code"] == code


@pytest.mark.parametrize("kind", [["chat"], {}, 7, None])
async def test_a_frame_type_that_is_not_a_string(server: Server, kind) -> None:
    alice = await server.person("alice").register()
    socket = await alice.connect()
    await socket.send({"type": kind})
    assert (await socket.expect("error"))["code"] == "unknown_type"


async def test_a_client_that_stops_reading_is_let_go(settings: Settings, db: asyncpg.Connection) -> None:
    """Found in review: a stalled reader held its socket (and its presence) forever.

    The server now gives up after WS_SEND_TIMEOUT (1 s here) and closes with
    1013; a client that never reads again cannot see the close frame, so what
    is checked is that the server let the socket go. Its outbox here is too
    large to fill first, so only the send timeout can let it go.
    """
    async with running_server(settings.replace(ws_send_queue=1_000_000)) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hello"})
        stalled = await bob.connect(max_queue=1)  # stops reading from TCP once one frame is queued
        sender = await alice.connect()
        try:
            assert await _flood_until_let_go(sender, bob, db), "the stalled socket is still open"
            assert await stalled.closed_with(timeout=10) == 1013  # one only slow reads on, to the close
        finally:
            stalled.connection.transport.abort()  # the client gives up too; nothing left half-open


async def test_a_client_too_far_behind_is_told_to_reconnect_and_sync(
        database_url: str, media_root: Path, db: asyncpg.Connection) -> None:
    """A reader slower than the chat fills its socket's outbox (WS_SEND_QUEUE events): the
    server drops the socket rather than buffer without end, and says why with 1013, so the
    client reconnects and syncs. The send timeout is long here: only the outbox can end it.
    When Bob reads again, he gets what was already on its way, then the close."""
    settings = settings_for(database_url, media_root, ws_send_queue=8, ws_send_timeout=120.0)
    async with running_server(settings) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hello"})
        stalled = await bob.connect(max_queue=1)  # stops reading from TCP once one frame is queued
        sender = await alice.connect()
        assert await _flood_until_let_go(sender, bob, db), "the socket that fell behind is still open"
        assert await stalled.closed_with() == 1013


async def _flood_until_let_go(sender, bob, db: asyncpg.Connection) -> bool:  # type: ignore[no-untyped-def]
    big = "é" * 4000
    for i in range(3000):
        await sender.send({"type": "chat", "to": bob.username, "message": big})
        await sender.expect("ack", skip=("presence", "chat"))
        if i % 10 == 9 and await bob_sockets(db, bob.user["id"]) == 0:  # soon: the close waits 10 s at most
            return True
    for _ in range(50):
        if await bob_sockets(db, bob.user["id"]) == 0:
            return True
        await asyncio.sleep(0.1)
    return False


async def bob_sockets(db: asyncpg.Connection, user_id: int) -> int:
    return await db.fetchval("SELECT count(*) FROM live_connections WHERE user_id = $1", user_id)


async def test_a_message_arriving_while_a_closed_socket_is_cleaned_up_is_no_error(
        server: Server, database_url: str, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture) -> None:
    """Bob closes his tab while his presence row is being removed (Bob's presence lock held
    here, so the removal waits), and a message for him arrives meanwhile: the socket is over,
    the message is his to sync, and nothing is logged as a failure of the server."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "first"})
    tab = await bob.connect()
    uvicorn_errors = logging.getLogger("uvicorn.error")  # uvicorn's own logger does not reach the root
    uvicorn_errors.addHandler(caplog.handler)
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock(7002, $1::int)", bob.user["id"])
            await tab.close()
            await eventually(lambda: waiting_for_a_lock(db, "%7002%"))  # Bob's presence change
            sent = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "meanwhile"})
            assert sent.status_code == 201
        await eventually(lambda: is_offline(db, bob))  # the cleanup has finished
    finally:
        await holder.close()
        uvicorn_errors.removeHandler(caplog.handler)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def is_offline(db: asyncpg.Connection, person: Person) -> bool:
    return not await bob_sockets(db, person.user["id"])
