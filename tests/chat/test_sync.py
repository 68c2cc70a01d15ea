"""Resume without loss: Bob drops off, many people write, Bob syncs and misses nothing.

Where a test counts what `sync` replays, the messages are stored by the send
statement on direct connections, which publish nothing: no live `chat` frame
can reach Bob, so every id counted came from the replay itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from secure_link.chat.messages import SYNC_BATCH
from secure_link.db import load_queries

from secure_link.encryption import pair_of

from ..conftest import body_keys
from ..story import Person, Server, sync

INSERT_MESSAGES = load_queries()["insert_messages"].sql


async def store(connection: asyncpg.Connection, sender: Person, to: Person, text: str) -> int:
    """The send statement, as the server's writer runs it (a batch of one), minus the publish: nobody hears of it live."""
    sender_id, recipient_id = sender.user["id"], to.user["id"]
    async with body_keys(sender.server.settings.database_url or "") as (_, keys):
        pair = pair_of(sender_id, recipient_id)
        born, key = (await keys.for_pairs([pair]))[pair]
    sealed = keys.seal(key, sender_id, recipient_id, text)
    row = await connection.fetchrow(INSERT_MESSAGES, [0], [sender_id], [recipient_id], [sealed], [None], [None], [born],
                                    [None])
    return row["id"]


async def test_sync_after_a_disconnect_returns_exactly_the_missed_messages(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    bob_tab = await bob.connect()
    alice_tab = await alice.connect()
    seen = await alice.say(alice_tab, bob, "before the tunnel")
    await bob_tab.expect("chat")
    await bob_tab.close()

    missed = [(await alice.say(alice_tab, bob, f"while away {i}"))["id"] for i in range(5)]
    back = await bob.connect()
    ids, last_id = await sync(back, seen["id"])
    assert ids == missed
    assert last_id == missed[-1]
    again, last_again = await sync(back, last_id)
    assert again == [] and last_again == last_id


async def test_sync_never_skips_under_concurrent_senders(server: Server, database_url: str) -> None:
    bob = await server.person("bob").register()
    senders = [await server.person(f"s{i}").register() for i in range(6)]
    bob_tab = await bob.connect()
    connections = [await asyncpg.connect(database_url) for _ in senders]
    try:
        async def send_many(person: Person, connection: asyncpg.Connection) -> list[int]:
            return [await store(connection, person, bob, f"#{i}") for i in range(25)]

        sending = asyncio.gather(*(send_many(p, c) for p, c in zip(senders, connections)))
        received: list[int] = []
        cursor = 0
        while not sending.done():
            ids, cursor = await sync(bob_tab, cursor)
            received += ids
        stored = [message_id for batch in await sending for message_id in batch]
    finally:
        for connection in connections:
            await connection.close()
    ids, cursor = await sync(bob_tab, cursor)
    received += ids
    assert received == sorted(stored)  # each once, in id order, none skipped
    assert len(stored) == 150


async def test_an_uncommitted_earlier_id_holds_back_later_ones(server: Server, database_url: str) -> None:
    """The case the advisory locks exist for: id 100 still in flight when 101 wants to commit.

    Without the locks Carol's later id commits first, Bob's sync moves past it,
    and Alice's earlier id, committed after, is never replayed.
    """
    alice, bob, carol = [await server.person(n).register() for n in ("alice", "bob", "carol")]
    bob_tab = await bob.connect()
    _, start = await sync(bob_tab, 0)
    slow, fast = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        transaction = slow.transaction()
        await transaction.start()
        early_id = await store(slow, alice, bob, "slow commit")
        late = asyncio.create_task(store(fast, carol, bob, "fast"))
        await done_or_waiting_for_a_lock(late, fast, database_url)
        first, cursor = await sync(bob_tab, start)
        await transaction.commit()
        late_id = await late
    finally:
        await slow.close()
        await fast.close()
    second, _ = await sync(bob_tab, cursor)
    assert late_id > early_id
    assert first + second == [early_id, late_id]


async def done_or_waiting_for_a_lock(task: asyncio.Task[Any], connection: asyncpg.Connection,
                                     database_url: str) -> None:
    """Return once the statement on `connection` has finished or is blocked on a lock."""
    watcher = await asyncpg.connect(database_url)
    try:
        while not task.done():
            if await watcher.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                                      connection.get_server_pid()):
                return
            await asyncio.sleep(0.01)
    finally:
        await watcher.close()


async def test_sync_goes_on_past_one_batch(server: Server, db: asyncpg.Connection) -> None:
    """Bob was away for more than one batch: the replay pages on until the end, each message once."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    bob_tab = await bob.connect()
    _, start = await sync(bob_tab, 0)
    rows = await db.fetch("INSERT INTO messages (sender_id, recipient_id, body) "
                          "SELECT $1, $2, 'backlog ' || n FROM generate_series(1, $3) AS n RETURNING id",
                          alice.user["id"], bob.user["id"], 2 * SYNC_BATCH + 17)
    ids, last_id = await sync(bob_tab, start)
    assert ids == sorted(row["id"] for row in rows)
    assert last_id == ids[-1]


async def test_the_replay_reads_in_bounded_batches(server: Server, db: asyncpg.Connection) -> None:
    """A sync after months away must not load every message at once: each read is capped."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    sent = [(await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": f"m{i}"})).json()
            for i in range(3)]
    rows = await db.fetch(load_queries()["list_messages_since"].sql, bob.user["id"], 0, 2)
    assert [row["id"] for row in rows] == [sent[0]["id"], sent[1]["id"]]
