"""Resume without loss: Bob drops off, many people write, Bob syncs and misses nothing."""

from __future__ import annotations

import asyncio

import asyncpg

from secure_link.db import load_queries

from .story import Person, Server, Socket


async def sync(socket: Socket, since: int) -> tuple[list[int], int]:
    """One `sync`: the replayed ids, in the order they came, and `last_id`."""
    await socket.send({"type": "sync", "since": since})
    ids: list[int] = []
    while True:
        frame = await socket.next()
        if frame["type"] == "synced":
            return ids, frame["last_id"]
        if frame["type"] == "chat" and frame["message"]["id"] > since and frame["message"]["id"] not in ids:
            # live deliveries may interleave with the replay; a client dedupes by id
            ids.append(frame["message"]["id"])


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
    assert again == [] and last_again >= last_id


async def test_sync_never_skips_under_concurrent_senders(server: Server) -> None:
    bob = await server.person("bob").register()
    senders = [await server.person(f"s{i}").register() for i in range(6)]
    bob_tab = await bob.connect()
    acked: list[int] = []

    async def send_many(person: Person) -> None:
        for i in range(25):
            response = await person.api("POST", "/api/send-message/", json={"to": bob.username, "message": f"#{i}"})
            acked.append(response.json()["id"])

    sending = asyncio.gather(*(send_many(p) for p in senders))
    received: list[int] = []
    cursor = 0
    while not sending.done():
        ids, cursor = await sync(bob_tab, cursor)
        received += ids
    await sending
    ids, cursor = await sync(bob_tab, cursor)
    received += ids
    assert sorted(set(received)) == sorted(acked)
    assert len(acked) == 150


async def test_an_uncommitted_earlier_id_holds_back_later_ones(server: Server, database_url: str) -> None:
    """The case the advisory locks exist for: id 100 still in flight when 101 wants to commit."""
    alice, bob, carol = [await server.person(n).register() for n in ("alice", "bob", "carol")]
    bob_tab = await bob.connect()
    _, start = await sync(bob_tab, 0)
    connection = await asyncpg.connect(database_url)
    try:
        transaction = connection.transaction()
        await transaction.start()
        early_id = await connection.fetchval(load_queries()["insert_message"].sql,
                                             alice.user["id"], bob.username, "slow commit", None, None)
        late = asyncio.create_task(carol.api("POST", "/api/send-message/", json={"to": bob.username, "message": "fast"}))
        done, _ = await asyncio.wait([late], timeout=0.5)
        assert not done, "a later message to Bob committed while an earlier id was still open"
        assert (await sync(bob_tab, start))[0] == []
        await transaction.commit()
        late_id = (await late).json()["id"]
    finally:
        await connection.close()
    assert late_id > early_id
    ids, _ = await sync(bob_tab, start)
    assert sorted(ids) == [early_id, late_id]  # "fast" also arrived live, before the sync
