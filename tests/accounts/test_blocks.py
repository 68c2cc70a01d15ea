"""Blocking (contract v1.2): Alice blocks Bob, and nothing passes between them either way.

Sends are refused and nothing is stored, timers and deletes refused, typing, read
receipts, presence and profile changes withheld, history kept; a logout keeps the
block; lifting it lets everything pass again. A block that commits while sends
wait for their locks refuses them (on every worker), and a batch holding a blocked
draft stores the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from collections.abc import AsyncIterator

import asyncpg

from secure_link.config import Settings

from ..conftest import running_server
from ..story import Person, Server, assert_error, eventually, image_bytes, upload, waiting_for_a_lock
from ..chat.test_group_commit import until_queued

SIGNALS = ("presence", "typing", "read", "profile")


async def pair(server: Server) -> tuple[Person, Person]:
    """Alice and Bob, who already talk."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    assert (await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hi"})).status_code == 201
    return alice, bob


async def send(person: Person, to: Person, text: str, **extra: Any) -> Any:
    return await person.api("POST", "/api/send-message/", json={"to": to.username, "message": text, **extra})


async def stored(db: asyncpg.Connection, a: Person, b: Person) -> list[str]:
    rows = await db.fetch("SELECT id FROM messages WHERE LEAST(sender_id, recipient_id) = $1 "
                          "AND GREATEST(sender_id, recipient_id) = $2 ORDER BY id", *sorted((a.user["id"], b.user["id"])))
    return [row["id"] for row in rows]


async def test_a_block_refuses_sends_both_ways_and_keeps_the_history(server: Server, db: asyncpg.Connection) -> None:
    alice, bob = await pair(server)
    made = await alice.api("PUT", f"/api/blocks/{bob.username}/")
    assert made.status_code == 200 and made.json()["username"] == bob.username
    again = await alice.api("PUT", f"/api/blocks/{bob.username}")
    assert again.json() == made.json()  # unchanged, `since` included
    assert (await alice.api("GET", "/api/blocks/")).json() == {"blocks": [made.json()]}
    before = await stored(db, alice, bob)
    assert_error(await send(bob, alice, "let me explain", client_id="b-1"), 403, "blocked")
    assert_error(await send(alice, bob, "and you stop"), 403, "blocked")  # either way
    bob_tab = await bob.connect()
    await bob_tab.send({"type": "chat", "to": alice.username, "message": "please", "client_id": "b-2"})
    refused = await bob_tab.expect("error", skip=SIGNALS)
    assert refused["code"] == "blocked" and refused["client_id"] == "b-2"
    assert await stored(db, alice, bob) == before  # nothing stored
    for person, peer in ((alice, bob), (bob, alice)):
        history = (await person.api("GET", "/api/messages/", params={"with": peer.username})).json()
        assert [m["message"] for m in history["messages"]] == ["hi"]  # history stays


async def test_timers_and_deletes_are_refused_while_blocked(server: Server) -> None:
    alice, bob = await pair(server)
    said = (await alice.api("GET", "/api/messages/", params={"with": bob.username})).json()["messages"][0]
    await bob.api("PUT", f"/api/blocks/{alice.username}/")  # Bob blocks: Alice is refused too
    assert_error(await alice.api("PUT", f"/api/conversations/{bob.username}/timer/", json={"seconds": 60}),
                 403, "blocked")
    assert_error(await alice.api("DELETE", f"/api/messages/{said['id']}/"), 403, "blocked")
    assert (await alice.api("GET", f"/api/conversations/{bob.username}/timer/")).status_code == 200  # reading is fine
    alice_tab = await alice.connect()
    for frame in ({"type": "timer", "with": bob.username, "seconds": 60}, {"type": "delete", "id": said["id"]}):
        await alice_tab.send(frame)
        assert (await alice_tab.expect("error", skip=SIGNALS))["code"] == "blocked"


async def test_typing_read_presence_and_profiles_do_not_pass_a_block(server: Server) -> None:
    alice, bob = await pair(server)
    alice_tab, bob_tab = await alice.connect(), await bob.connect()
    assert (await alice_tab.expect("presence")) == {"type": "presence", "user": bob.username, "online": True}
    assert (await bob_tab.expect("presence")) == {"type": "presence", "user": alice.username, "online": True}
    await alice.api("PUT", f"/api/blocks/{bob.username}/")
    for tab, other in ((alice_tab, bob), (bob_tab, alice)):  # each sees the other offline at once
        assert await tab.expect("presence", skip=()) == {"type": "presence", "user": other.username, "online": False}
    last = (await alice.api("GET", "/api/messages/", params={"with": bob.username})).json()["messages"][-1]["id"]
    await bob_tab.send({"type": "typing", "to": alice.username})
    await bob_tab.send({"type": "read", "with": alice.username, "up_to": last})
    assert (await bob.api("PATCH", "/api/user-profile/", json={"display_name": "Bobby"})).status_code == 200
    await bob_tab.close()
    await bob.connect()  # offline and online again
    await alice_tab.silent(0.5, skip=())  # not one frame about Bob
    assert (await alice.api("GET", f"/api/users/{bob.username}/")).json()["online"] is False

    assert (await alice.api("DELETE", f"/api/blocks/{bob.username}/")).json() == {"unblocked": bob.username}
    assert await alice_tab.expect("presence", skip=()) == {"type": "presence", "user": bob.username, "online": True}
    assert (await alice.api("GET", "/api/blocks/")).json() == {"blocks": []}
    assert (await send(bob, alice, "back again")).status_code == 201


async def test_a_logout_keeps_blocks_and_the_endpoints_refuse_what_makes_no_sense(server: Server) -> None:
    alice, bob = await pair(server)
    await alice.api("PUT", f"/api/blocks/{bob.username}/")
    second = await alice.login()
    assert (await alice.api("POST", "/api/logout/")).status_code == 200
    assert [b["username"] for b in (await alice.api("GET", "/api/blocks/", token=second)).json()["blocks"]] == [bob.username]
    assert_error(await send(bob, alice, "after her logout"), 403, "blocked")
    assert (await bob.api("DELETE", f"/api/blocks/{alice.username}/")).json() == {"unblocked": alice.username}
    assert_error(await alice.api("PUT", "/api/blocks/nobody_at_all/", token=second), 404, "unknown_user")
    assert_error(await alice.api("DELETE", "/api/blocks/nobody_at_all/", token=second), 404, "unknown_user")
    assert_error(await alice.api("PUT", f"/api/blocks/{alice.username}/", token=second), 422, "invalid_recipient")
    async with server.client() as http:
        assert_error(await http.put(f"/api/blocks/{bob.username}/"), 401, "unauthenticated")
        assert_error(await http.get("/api/blocks/"), 401, "unauthenticated")


async def test_a_block_that_commits_while_a_send_waits_for_its_locks_refuses_it(
        server: Server, db: asyncpg.Connection) -> None:
    """The test holds the block's own row (an uncommitted twin of it), so the block waits inside
    its transaction holding both users' send locks; Bob's send starts and waits for those locks,
    its statement's snapshot from before the block. The block then commits: the send is refused."""
    alice, bob = await pair(server)
    before = await stored(db, alice, bob)
    async with _connection(server) as holder:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("INSERT INTO blocks (blocker_id, blocked_id) VALUES ($1, $2)", alice.user["id"], bob.user["id"])
        blocking = asyncio.create_task(alice.api("PUT", f"/api/blocks/{bob.username}/"))
        await eventually(lambda: waiting_for_a_lock(db, "WITH added AS%"))
        sending = asyncio.create_task(send(bob, alice, "just before", client_id="race-1"))
        await eventually(lambda: waiting_for_a_lock(db, "WITH draft AS%"))
        await transaction.rollback()
    assert (await blocking).status_code == 200
    assert_error(await sending, 403, "blocked")
    assert await stored(db, alice, bob) == before


async def test_a_batch_holding_a_blocked_draft_stores_the_others(server: Server, db: asyncpg.Connection) -> None:
    alice, bob = await pair(server)
    carol, dave = [await server.person(name).register() for name in ("carol", "dave")]
    await alice.api("PUT", f"/api/blocks/{bob.username}/")
    photo = await upload(dave, image_bytes(), "photo.png")
    async with _connection(server) as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM files WHERE id = $1 FOR UPDATE", photo["id"])  # the writer's batch waits
        # to Alice: the two sends to her then wait for this batch, not beside it (chat/writer.py)
        first = asyncio.create_task(send(dave, alice, "first", attachment=photo["id"]))
        await eventually(lambda: waiting_for_a_lock(db, "WITH draft AS%"))
        blocked = asyncio.create_task(send(bob, alice, "refused"))
        neighbour = asyncio.create_task(send(carol, alice, "stored"))
        await until_queued(server, 2)  # both in the writer's next batch
    assert (await first).status_code == 201
    assert_error(await blocked, 403, "blocked")
    assert (await neighbour).status_code == 201


async def test_a_block_on_one_worker_holds_on_another(settings: Settings, server: Server) -> None:
    """Alice blocks on worker A; Bob's socket on worker B: his typing never reaches her, his send
    through B is refused, and neither sees the other online."""
    alice, bob = await pair(server)
    async with running_server(settings) as other:
        alice_tab = await alice.connect()
        bob_tab = await bob.on(other).connect()
        assert (await alice_tab.expect("presence")) == {"type": "presence", "user": bob.username, "online": True}
        await alice.api("PUT", f"/api/blocks/{bob.username}/")
        await alice_tab.expect("presence", skip=())
        await bob_tab.send({"type": "typing", "to": alice.username})
        await bob_tab.send({"type": "chat", "to": alice.username, "message": "via B", "client_id": "b-9"})
        assert (await bob_tab.expect("error", skip=SIGNALS))["code"] == "blocked"
        await alice_tab.silent(0.5, skip=())


@contextlib.asynccontextmanager
async def _connection(server: Server) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, closed whatever happens."""
    connection = await asyncpg.connect(server.settings.database_url or "")
    try:
        yield connection
    finally:
        await connection.close()
