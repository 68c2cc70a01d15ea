"""Alice and Bob chat over real sockets on a real uvicorn; Carol is left out."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from secure_link.app import create_app
from secure_link.config import Settings

from ..conftest import running_server, serving, settings_for
from ..story import PNG, Server, assert_error, refuse, sync, upload


@pytest.fixture(scope="module")
def settings(database_url: str, media_root: Path) -> Settings:
    return settings_for(database_url, media_root, ws_auth_timeout=0.5)


async def test_alice_and_bob_chat_both_ways_across_tabs(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    alice_phone, alice_laptop = await alice.connect(), await alice.connect()
    bob_tab = await bob.connect()

    sent = await alice.say(alice_phone, bob, "Hi Bob 👋", client_id="c-1")
    assert sent["from"] == alice.username and sent["to"] == bob.username
    assert sent["message"] == "Hi Bob 👋" and sent["client_id"] == "c-1" and sent["attachment"] is None
    assert (await bob_tab.expect("chat"))["message"] == sent
    assert (await alice_laptop.expect("chat"))["message"] == sent
    await alice_phone.silent()  # the sending tab gets the ack only

    reply = await bob.say(bob_tab, alice, "Hello Alice")
    assert (await alice_phone.expect("chat"))["message"] == reply
    assert (await alice_laptop.expect("chat"))["message"] == reply
    assert reply["id"] > sent["id"]

    history = (await bob.api("GET", "/api/messages/", params={"with": alice.username})).json()
    assert history == {"messages": [sent, reply], "has_more": False}


async def test_the_browser_snippet_works_with_the_login_cookie(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    bob_tab = await bob.connect()
    origin = server.http_url
    async with connect(f"{server.ws_url}?with={bob.username}", origin=origin,
                       additional_headers={"Cookie": f"session={alice.token}"}) as browser:
        assert json.loads(await browser.recv())["type"] == "ready"
        await browser.send(json.dumps({"type": "chat", "message": "Hello from browser!"}))
        ack = json.loads(await browser.recv())
        assert ack["type"] == "ack" and ack["message"]["to"] == bob.username
    assert (await bob_tab.expect("chat"))["message"]["message"] == "Hello from browser!"


async def test_a_retry_with_the_same_client_id_is_stored_once(server: Server, db: asyncpg.Connection) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    socket = await alice.connect()
    first = await alice.say(socket, bob, "once", client_id="retry-me")
    again = await alice.say(socket, bob, "once", client_id="retry-me")
    rest = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "once", "client_id": "retry-me"})
    assert again == first
    assert rest.status_code == 200 and rest.json() == first
    created = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "rest", "client_id": "r-2"})
    assert created.status_code == 201
    count = await db.fetchval("SELECT count(*) FROM messages m JOIN users u ON u.id = m.sender_id WHERE u.username = $1", alice.username)
    assert count == 2


BAD_FRAMES = [
    # (frame, error code, the names in its `fields`)
    ("not json", "bad_json", []),
    ("[1, 2]", "unknown_type", []),
    ('{"no": "type"}', "unknown_type", []),
    ('{"type": "shout"}', "unknown_type", []),
    ('{"type": "chat", "to": "%(bob)s"}', "invalid_input", ["message"]),
    ('{"type": "chat", "to": "%(bob)s", "message": 5}', "invalid_input", ["message"]),
    ('{"type": "chat", "to": "%(bob)s", "message": "' + "x" * 4001 + '"}', "invalid_input", ["message"]),
    ('{"type": "chat", "to": "%(bob)s", "message": "nul\\u0000"}', "invalid_input", ["message"]),
    ('{"type": "chat", "to": "%(bob)s", "message": "   "}', "invalid_input", ["message"]),
    ('{"type": "chat", "to": "%(bob)s", "message": "hi", "client_id": ""}', "invalid_input", ["client_id"]),
    ('{"type": "chat", "to": "nobody_at_all", "message": "hi"}', "unknown_user", []),
    ('{"type": "chat", "to": "%(alice)s", "message": "hi"}', "invalid_recipient", ["to"]),
    ('{"type": "chat", "message": "to whom?"}', "missing_recipient", ["to"]),
    ('{"type": "chat", "to": "%(bob)s", "message": "hi", "attachment": "not-a-file"}', "invalid_attachment", ["attachment"]),
    ('{"type": "chat", "to": "%(bob)s", "message": "hi", "attachment": ""}', "invalid_input", ["attachment"]),
    ('{"type": "chat", "to": "\'; DROP TABLE messages;--", "message": "hi"}', "unknown_user", []),
    ('{"type": "sync"}', "invalid_input", ["since"]),
    ('{"type": "sync", "since": "10"}', "invalid_input", ["since"]),
    ('{"type": "sync", "since": -1}', "invalid_input", ["since"]),
    # orjson reads these otherwise than json did; wire.loads keeps json's reading, and so the refusal
    ('{"type": "chat", "to": "%(bob)s", "message": "lone \\ud800"}', "invalid_input", ["message"]),
    ('{"type": "sync", "since": 100000000000000000000}', "invalid_input", ["since"]),
    ('{"type": "delete", "id": -9999999999999999999}', "invalid_input", ["id"]),
    ('{"type": "sync", "since": NaN}', "bad_json", []),  # not JSON (RFC 8259); json read it as a float
    ('{"type": "read", "with": "%(bob)s"}', "invalid_input", ["up_to"]),
    ('{"type": "read", "up_to": 3}', "missing_recipient", ["with"]),
    ('{"type": "typing"}', "missing_recipient", ["to"]),
    ('{"type": "typing", "to": "nobody_at_all"}', "unknown_user", []),
    ('{"type": "timer", "seconds": 60}', "missing_recipient", ["with"]),
    ('{"type": "delete", "id": "7"}', "invalid_input", ["id"]),
    ('{"type": "auth", "token": "again"}', "already_authenticated", []),
]


@pytest.mark.parametrize(("template", "code", "fields"), BAD_FRAMES)
async def test_bad_frames_get_an_error_and_the_socket_stays(server: Server, db: asyncpg.Connection, template: str, code: str,
                                                            fields: list[str]) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    socket = await alice.connect()
    before = await db.fetchval("SELECT count(*) FROM messages")
    await socket.send(template % {"alice": alice.username, "bob": bob.username})
    error = await socket.expect("error")
    assert error["code"] == code and error["message"]
    assert list(error.get("fields", {})) == fields  # the names a client highlights; their text is for people
    await socket.send({"type": "ping"})
    assert await socket.expect("pong") == {"type": "pong"}
    assert await db.fetchval("SELECT count(*) FROM messages") == before


async def test_binary_and_oversized_frames(server: Server) -> None:
    alice = await server.person("alice").register()
    socket = await alice.connect()
    await socket.connection.send(b"\x00\x01binary")
    assert (await socket.expect("error"))["code"] == "unsupported_frame"
    ping = '{"type": "ping"}'
    await socket.send(ping.ljust(server.settings.ws_max_frame_bytes))  # exactly the limit: read
    assert await socket.expect("pong") == {"type": "pong"}
    await socket.send({"type": "chat", "to": "x", "message": "y" * (server.settings.ws_max_frame_bytes + 1)})
    assert await socket.closed_with() == 1009


async def test_the_app_refuses_oversized_frames_that_its_asgi_server_let_through(settings: Settings) -> None:
    """`secure-link serve` has uvicorn refuse frames past WS_MAX_FRAME_BYTES; run as plain
    `uvicorn` (16 MiB frames by default), the app closes the socket itself, with the same 1009."""
    config = uvicorn.Config(create_app(settings), lifespan="on", log_level="warning")
    limit = settings.ws_max_frame_bytes
    async with serving(config) as address:
        alice = await Server(address, settings).person("alice").register()
        for too_large in ("{}".ljust(limit + 1), '"' + "😀" * (limit // 4) + '"', b"\x00" * (limit + 1)):
            socket = await alice.connect()  # "😀" is 4 bytes: far fewer characters than the limit, more bytes
            await socket.connection.send(too_large)
            assert await socket.closed_with() == 1009
            assert socket.connection.close_reason == "frame too large"


async def test_errors_echo_the_client_id(server: Server) -> None:
    alice = await server.person("alice").register()
    socket = await alice.connect()
    await socket.send({"type": "chat", "to": "nobody_at_all", "message": "hi", "client_id": "mine-7"})
    error = await socket.expect("error")
    assert error["client_id"] == "mine-7"


async def test_authentication_by_first_frame(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    socket = await server.person("anonymous").connect(ready=False)
    for early in ({"type": "chat", "to": bob.username, "message": "before auth", "client_id": "early-1"},
                  {"type": "auth", "token": 123}):
        await socket.send(early)
        refused = await socket.expect("error")
        assert refused["code"] == "unauthenticated" and refused["message"]
        assert refused.get("client_id") == early.get("client_id")  # echoed whatever the error (detail 14)
    await socket.send("not json")  # a typo before auth is answered too, and the socket waits on
    assert (await socket.expect("error"))["code"] == "bad_json"
    await socket.send({"type": "auth", "token": alice.token})
    assert (await socket.expect("ready"))["user"]["username"] == alice.username


@pytest.mark.parametrize("how", ["header", "frame", "cookie"])
async def test_bad_credentials_close_with_4401(server: Server, how: str) -> None:
    stranger = server.person("stranger")
    forged = "F" * 43
    if how == "header":
        socket = await stranger.connect(token=forged, ready=False)
    elif how == "cookie":
        socket = await stranger.connect(ready=False, headers={"Cookie": f"session={forged}"})
    else:
        socket = await stranger.connect(ready=False)
        await socket.send({"type": "auth", "token": forged})
    assert await socket.closed_with() == 4401


async def test_silence_before_auth_closes_with_1008(server: Server) -> None:
    socket = await server.person("slow").connect(ready=False)
    assert await socket.closed_with(timeout=5) == 1008


async def test_foreign_origins_are_refused_before_the_handshake(server: Server) -> None:
    alice = await server.person("alice").register()
    with pytest.raises(InvalidStatus) as refused:
        await alice.connect(origin="https://evil.example")
    assert refused.value.response.status_code == 403
    await alice.connect(origin=server.http_url)  # the server's own origin is fine


async def test_carol_never_sees_alice_and_bobs_messages(server: Server) -> None:
    alice, bob, carol = [await server.person(n).register() for n in ("alice", "bob", "carol")]
    carol_tab = await carol.connect()
    alice_tab = await alice.connect()
    await alice.say(alice_tab, bob, "just for Bob")
    await carol_tab.silent(0.5)
    page = await carol.api("GET", "/api/messages/", params={"with": alice.username})
    assert page.json() == {"messages": [], "has_more": False}
    replayed, _ = await sync(carol_tab, 0)
    assert replayed == []
    assert (await carol.api("GET", "/api/conversations/")).json() == {"conversations": []}


async def test_read_receipts_typing_and_unread_counts(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    alice_tab, bob_tab = await alice.connect(), await bob.connect()
    ids = [(await alice.say(alice_tab, bob, f"m{i}"))["id"] for i in range(3)]
    for _ in ids:
        await bob_tab.expect("chat")
    listing = (await bob.api("GET", "/api/conversations/")).json()["conversations"]
    assert [(c["with"]["username"], c["unread"], c["last_message"]["id"]) for c in listing] == [(alice.username, 3, ids[-1])]

    await bob_tab.send({"type": "read", "with": alice.username, "up_to": ids[1]})
    assert await alice_tab.expect("read") == {"type": "read", "by": bob.username, "up_to": ids[1]}
    assert (await bob.api("GET", "/api/conversations/")).json()["conversations"][0]["unread"] == 1

    await bob_tab.send({"type": "typing", "to": alice.username})
    assert await alice_tab.expect("typing", skip=("presence",)) == {"type": "typing", "from": bob.username}


async def test_a_receipt_below_every_message_marks_none_read(own_database: str, media_root: Path) -> None:
    """`up_to` below 1 (a client's zero or negative) reads nothing, even of message 1 itself:
    a database of its own, so Alice's first message is message 1."""
    async with running_server(settings_for(own_database, media_root)) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        alice_tab, bob_tab = await alice.connect(), await bob.connect()
        assert (await alice.say(alice_tab, bob, "first of all"))["id"] == 1
        await bob_tab.expect("chat")
        await bob_tab.send({"type": "read", "with": alice.username, "up_to": -5})
        assert (await alice_tab.expect("read"))["up_to"] == 0
        assert (await bob.api("GET", "/api/conversations/")).json()["conversations"][0]["unread"] == 1


async def test_presence_counts_every_tab(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "so we share a chat"})
    bob_tab = await bob.connect()
    first = await alice.connect()
    assert await bob_tab.expect("presence") == {"type": "presence", "user": alice.username, "online": True}
    second = await alice.connect()
    await first.close()
    await bob_tab.silent(0.5, skip=())
    await second.close()
    assert await bob_tab.expect("presence") == {"type": "presence", "user": alice.username, "online": False}


async def test_a_new_socket_learns_who_is_online(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hi"})
    await alice.connect()
    bob_tab = await bob.connect()
    assert await bob_tab.expect("presence") == {"type": "presence", "user": alice.username, "online": True}


async def test_logout_clears_both_sides_and_closes_that_sessions_sockets(server: Server, db: asyncpg.Connection) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    other_session = await alice.login()
    alice_tab, alice_other_tab, bob_tab = await alice.connect(), await alice.connect(token=other_session), await bob.connect()
    for i in range(3):
        await alice.say(alice_tab, bob, f"secret {i}")
    logout = await alice.api("POST", "/api/logout/")
    assert logout.json() == {"cleared": {"messages": 3, "files": 0}}
    assert await bob_tab.expect("cleared", skip=("presence", "chat")) == {"type": "cleared", "with": alice.username}
    assert await alice_other_tab.expect("cleared", skip=("presence", "chat")) == {"type": "cleared", "with": bob.username}
    assert await alice_tab.closed_with() == 4401
    assert (await bob.api("GET", "/api/messages/", params={"with": alice.username})).json()["messages"] == []
    assert await db.fetchval("SELECT count(*) FROM messages m JOIN users u ON u.id IN (m.sender_id, m.recipient_id) "
                             "WHERE u.username = $1", alice.username) == 0
    assert (await alice.api("GET", "/api/user-profile/", token=other_session)).status_code == 200


async def test_revoking_a_session_closes_its_sockets(server: Server) -> None:
    alice = await server.person("alice").register()
    tablet = await alice.login()
    tablet_socket = await alice.connect(token=tablet)
    sessions = (await alice.api("GET", "/api/sessions/")).json()["sessions"]
    tablet_id = next(s["id"] for s in sessions if not s["current"])
    await alice.api("DELETE", f"/api/sessions/{tablet_id}")
    assert await tablet_socket.closed_with() == 4401


async def test_history_pages_by_cursor(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    ids = []
    for i in range(7):
        sent = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": f"n{i}"})
        ids.append(sent.json()["id"])

    async def page(**params):
        response = await bob.api("GET", "/api/messages/", params={"with": alice.username, **params})
        body = response.json()
        return [m["id"] for m in body["messages"]], body["has_more"]

    assert await page(limit=3) == (ids[4:], True)
    assert await page(limit=3, before=ids[4]) == (ids[1:4], True)
    assert await page(limit=3, before=ids[1]) == (ids[:1], False)
    assert await page(limit=3, after=ids[1]) == (ids[2:5], True)
    assert await page(limit=3, after=ids[4]) == (ids[5:], False)
    assert await page(limit=1000) == (ids, False)
    assert await page(limit=7) == (ids, False)  # exactly a page: nothing more
    assert await page(limit=1) == (ids[6:], True)  # the smallest page
    for bad, field in (({"limit": 0}, "limit"), ({"limit": "ten"}, "limit"), ({"before": ids[1], "after": ids[0]}, "after"),
                       ({"before": "-1"}, "before"), ({"after": "9" * 19}, "after"),  # 19 digits can pass int64
                       ({"with": "nul\x00"}, "with")):
        response = await bob.api("GET", "/api/messages/", params={"with": alice.username, **bad})
        assert_error(response, 422, "invalid_input", field)
    assert_error(await bob.api("GET", "/api/messages/"), 422, "invalid_input", "with")
    assert_error(await bob.api("GET", "/api/messages/", params={"with": "nobody_at_all"}), 404, "unknown_user")


@pytest.mark.parametrize(("client_id", "status"), [("a", 201), ("c" * 64, 201), ("c" * 65, 422)])
async def test_client_ids_at_the_edges_of_their_length(server: Server, client_id, status) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    answer = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hi", "client_id": client_id})
    if status == 201:
        assert answer.status_code == 201 and answer.json()["client_id"] == client_id, answer.text
    else:
        assert_error(answer, 422, "invalid_input", "client_id")


HOSTILE_SENDS = [
    # (body, status, code)
    ({"message": "hi"}, 422, "missing_recipient"),
    ({"to": "%(bob)s"}, 422, "invalid_input"),
    ({"to": ["%(bob)s"], "message": "hi"}, 422, "invalid_input"),
    ({"to": "%(bob)s", "message": "x" * 4001}, 422, "invalid_input"),
    ({"to": "%(bob)s", "message": "a\u0000b"}, 422, "invalid_input"),
    ({"to": "%(bob)s", "message": "hi", "client_id": 7}, 422, "invalid_input"),
    ({"to": "%(bob)s", "message": "hi", "attachment": "../../etc/passwd"}, 422, "invalid_attachment"),
    ({"to": "%(bob)s", "message": "hi", "attachment": ""}, 422, "invalid_input"),  # an id is 1 to 64 characters
    ({"to": "%(bob)s", "message": "hi", "attachment": "f"}, 422, "invalid_attachment"),  # the right length: looked up
    ({"to": "%(bob)s", "message": "hi", "attachment": "f" * 64}, 422, "invalid_attachment"),
    ({"to": "%(bob)s", "message": "hi", "attachment": "f" * 65}, 422, "invalid_input"),
    ({"to": "nobody_at_all", "message": "hi"}, 404, "unknown_user"),
    ({"to": "%(alice)s", "message": "hi"}, 422, "invalid_recipient"),
    ("a string", 422, "invalid_input"),
]


@pytest.mark.parametrize(("body", "status", "code"), HOSTILE_SENDS)
async def test_hostile_rest_sends_store_nothing(server: Server, db: asyncpg.Connection, body, status, code) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    names = {"alice": alice.username, "bob": bob.username}
    filled = json.loads(json.dumps(body) % names) if isinstance(body, dict) else body
    about_the_file = isinstance(body, dict) and "attachment" in body  # such a refusal names `attachment`
    before = await db.fetchval("SELECT count(*) FROM messages")
    assert_error(await alice.api("POST", "/api/send-message/", json=filled), status, code,
                 "attachment" if about_the_file else None)
    assert await db.fetchval("SELECT count(*) FROM messages") == before


async def test_rest_endpoints_need_a_session(server: Server) -> None:
    async with server.client() as http:
        for method, path in (("POST", "/api/send-message/"), ("GET", "/api/messages/"), ("GET", "/api/conversations/")):
            assert_error(await http.request(method, path, json={}), 401, "unauthenticated")


async def test_rest_send_requires_json(server: Server) -> None:
    alice = await server.person("alice").register()
    response = await alice.api("POST", "/api/send-message/", content=b"to=bob&message=hi",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(response, 415, "unsupported_media_type")


async def test_messages_sent_by_rest_arrive_live(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    alice_tab, bob_tab = await alice.connect(), await bob.connect()
    sent = (await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "via REST"})).json()
    assert (await bob_tab.expect("chat"))["message"] == sent
    assert (await alice_tab.expect("chat"))["message"] == sent  # the sender's tabs see it too


async def test_client_ids_are_per_sender(server: Server, db: asyncpg.Connection) -> None:
    """Two apps may pick the same client_id: Alice's retry key must not swallow Bob's message."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    mine = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "from Alice", "client_id": "same"})
    theirs = await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "from Bob", "client_id": "same"})
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert theirs.json()["message"] == "from Bob" and theirs.json()["id"] != mine.json()["id"]
    history = (await alice.api("GET", "/api/messages/", params={"with": bob.username})).json()["messages"]
    assert [m["message"] for m in history] == ["from Alice", "from Bob"]


async def test_history_pages_are_capped_at_100(server: Server, db: asyncpg.Connection) -> None:
    """Asking for 1,000 gets 100 and `has_more`: one request cannot pull a whole archive."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    await db.execute("INSERT INTO messages (sender_id, recipient_id, body) "
                     "SELECT $1, $2, 'old ' || n FROM generate_series(1, 130) AS n", alice.user["id"], bob.user["id"])
    page = (await bob.api("GET", "/api/messages/", params={"with": alice.username, "limit": 1000})).json()
    assert len(page["messages"]) == 100 and page["has_more"] is True
    assert page["messages"][-1]["message"] == "old 130"
    page = (await bob.api("GET", "/api/messages/", params={"with": alice.username})).json()
    assert len(page["messages"]) == 50 and page["has_more"] is True  # the default page (docs/api.md)


async def test_conversations_are_listed_newest_first(server: Server) -> None:
    bob, alice, carol = [await server.person(n).register() for n in ("bob", "alice", "carol")]
    for person, text in ((alice, "first"), (carol, "second"), (alice, "third")):
        await person.api("POST", "/api/send-message/", json={"to": bob.username, "message": text})
    listing = (await bob.api("GET", "/api/conversations/")).json()["conversations"]
    assert [(c["with"]["username"], c["last_message"]["message"]) for c in listing] == [
        (alice.username, "third"), (carol.username, "second")]


async def test_logout_leaves_every_bystander_conversation_alone(server: Server, db: asyncpg.Connection) -> None:
    """Alice logs out: her chat with Bob goes; Bob's chat with Carol and Carol's with Dave stay, row for row."""
    alice, bob, carol, dave = [await server.person(n).register() for n in ("alice", "bob", "carol", "dave")]
    for sender, to in ((alice, bob), (bob, alice), (bob, carol), (carol, bob), (carol, dave), (dave, carol)):
        await sender.api("POST", "/api/send-message/", json={"to": to.username, "message": f"{sender.username} to {to.username}"})
    bystanders = [bob.user["id"], carol.user["id"], dave.user["id"]]
    await db.execute("INSERT INTO conversation_reads (user_id, peer_id, last_read_id) "
                     "SELECT r.user_id, r.peer_id, 1 FROM unnest($1::bigint[], $2::bigint[]) AS r(user_id, peer_id)",
                     [bob.user["id"], carol.user["id"], carol.user["id"], bob.user["id"], alice.user["id"]],
                     [carol.user["id"], bob.user["id"], dave.user["id"], alice.user["id"], bob.user["id"]])
    before = await bystander_rows(db, bystanders)
    assert (await alice.api("POST", "/api/logout/")).json() == {"cleared": {"messages": 2, "files": 0}}
    after = await bystander_rows(db, bystanders)
    assert after == {"messages": before["messages"], "reads": [r for r in before["reads"] if r["peer_id"] != alice.user["id"]]}
    assert len(after["messages"]) == 4 and len(after["reads"]) == 3


async def bystander_rows(db: asyncpg.Connection, user_ids: list[int]) -> dict[str, list[asyncpg.Record]]:
    """Every message among these users and every read receipt they hold, in a stable order."""
    messages = await db.fetch("SELECT * FROM messages WHERE sender_id = ANY($1) AND recipient_id = ANY($1) ORDER BY id", user_ids)
    reads = await db.fetch("SELECT * FROM conversation_reads WHERE user_id = ANY($1) ORDER BY user_id, peer_id", user_ids)
    return {"messages": messages, "reads": reads}


async def test_a_logout_whose_clearing_fails_clears_nothing_and_can_be_retried(own_database: str,
                                                                                media_root: Path) -> None:
    """All or nothing: a clearing that fails part way (a table gone missing stands in for a
    bug) leaves every message and receipt, and Alice logged in to log out again."""
    async with running_server(settings_for(own_database, media_root)) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "keep me for now"})
        both = [alice.user["id"], bob.user["id"]]
        db = await asyncpg.connect(own_database)
        try:
            await db.execute("INSERT INTO conversation_reads (user_id, peer_id, last_read_id) VALUES ($1, $2, 1)", *both[::-1])
            before = await bystander_rows(db, both)
            await db.execute("ALTER TABLE conversation_timers RENAME TO conversation_timers_gone")
            assert_error(await alice.api("POST", "/api/logout/"), 500, "internal")
            assert await bystander_rows(db, both) == before
            await db.execute("ALTER TABLE conversation_timers_gone RENAME TO conversation_timers")
            assert (await alice.api("POST", "/api/logout/")).json() == {"cleared": {"messages": 1, "files": 0}}
            assert await bystander_rows(db, both) == {"messages": [], "reads": []}
        finally:
            await db.close()


async def test_a_logout_whose_commit_fails_leaves_no_file_marked_for_deletion(own_database: str,
                                                                              media_root: Path) -> None:
    """The record of the files a clearing deletes belongs to its transaction: when the COMMIT
    itself fails (a deferred check stands in for a failing disk or a lost connection), no
    record is left for the sweeper, which would unlink files whose rows still stand."""
    async with running_server(settings_for(own_database, media_root)) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        photo = await upload(alice, PNG, "photo.png")
        sent = await alice.api("POST", "/api/send-message/",
                               json={"to": bob.username, "message": "look", "attachment": photo["id"]})
        assert sent.status_code == 201
        db = await asyncpg.connect(own_database)
        try:
            await refuse(db, "CONSTRAINT TRIGGER refuse_at_commit AFTER DELETE ON messages "
                             "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW")
            assert_error(await alice.api("POST", "/api/logout/"), 500, "internal")
            assert await db.fetchval("SELECT count(*) FROM doomed_files") == 0
            assert (await bob.api("GET", photo["url"])).status_code == 200
            await db.execute("DROP TRIGGER refuse_at_commit ON messages")
            assert (await alice.api("POST", "/api/logout/")).json() == {"cleared": {"messages": 1, "files": 1}}
        finally:
            await db.close()


async def test_a_negative_sync_cursor_names_the_field(server: Server) -> None:
    alice = await server.person("alice").register()
    socket = await alice.connect()
    await socket.send({"type": "sync", "since": -1})
    error = await socket.expect("error")
    assert error["code"] == "invalid_input" and set(error["fields"]) == {"since"}
