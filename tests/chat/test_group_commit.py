"""Group commit: sends that arrive while a commit is in flight share the next one.

To make a batch on purpose, a test holds the advisory lock of one user (as a
logout would): the writer's first batch waits for it, the sends that arrive
meanwhile queue up, and when the lock is released they are stored together,
in one statement and one commit. `/metrics` shows how many are queued and how
large each batch was, so each story checks it really had the batch it is about.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from secure_link.config import Settings
from secure_link.db import load_queries
from secure_link.errors import DatabaseUnavailable
from secure_link.chat.writer import MAX_RESEALS, MessageWriter

from ..conftest import body_keys, database_refusing, running_server, server_process, settings_for
from ..story import PNG, Person, Server, assert_error, eventually, sample, scrape, upload, waiting_for_a_lock

SYNC_QUERY = load_queries()["list_messages_since"].sql


@contextlib.asynccontextmanager
async def holding_lock_of(database_url: str, person: Person) -> AsyncIterator[None]:
    """Hold the person's message lock (7001, as logout and every send take it) until the block ends."""
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock(7001, $1::int)", person.user["id"])
            yield
    finally:
        await holder.close()


async def until_blocked(db: asyncpg.Connection) -> None:
    """Wait until a statement of the server waits for a lock: the writer's batch in flight."""
    for _ in range(500):
        if await db.fetchval("SELECT count(*) FROM pg_stat_activity "
                             "WHERE wait_event_type = 'Lock' AND datname = current_database()"):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no statement ever waited for the lock")


async def taking_lock_of(database_url: str, person: Person) -> asyncpg.Connection:
    """A connection that holds the person's message lock (7001) until it commits; waits its turn."""
    holder = await asyncpg.connect(database_url)
    await holder.execute("BEGIN")
    await holder.execute("SELECT pg_advisory_xact_lock(7001, $1::int)", person.user["id"])
    return holder


async def until_waiting(db: asyncpg.Connection, sends: int, holders: int) -> None:
    """Wait until exactly that many send statements and lock holders-to-be wait for an advisory lock."""
    query = ("SELECT count(*) FILTER (WHERE query LIKE 'WITH draft%') AS sends, "
             "count(*) FILTER (WHERE query LIKE '%pg_advisory_xact_lock(7001, $1::int)') AS holders "
             "FROM pg_stat_activity WHERE wait_event = 'advisory' AND datname = current_database()")
    for _ in range(500):
        row = await db.fetchrow(query)
        if (row["sends"], row["holders"]) == (sends, holders):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never {sends} sends and {holders} holders waiting: {dict(row)}")


async def until_queued(server: Server, count: int) -> None:
    """Wait until the writer has `count` sends queued behind the batch in flight."""
    for _ in range(500):
        if sample(await scrape(server), "secure_link_send_queue") == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the writer never had {count} sends queued")


async def batches_larger_than(server: Server, size: int) -> float:
    """How many group commits so far held more than `size` drafts (a histogram bucket bound)."""
    text = await scrape(server)
    total = sample(text, "secure_link_send_batch_size_count")
    return total - sample(text, "secure_link_send_batch_size_bucket", f'{{le="{float(size)}"}}')


async def replay(db: asyncpg.Connection, person: Person, since: int) -> list[int]:
    """What `sync` replays: the person's messages after `since`, by the server's own query."""
    return [row["id"] for row in await db.fetch(SYNC_QUERY, person.user["id"], since, 10_000)]


def send(person: Person, to: str, text: str, **fields: Any) -> asyncio.Task[httpx.Response]:
    """A send that may wait on a held lock while a story queues others: 60 s, not httpx's 5."""
    return asyncio.create_task(person.api("POST", "/api/send-message/", json={"to": to, "message": text, **fields},
                                          timeout=60))


async def test_one_batch_answers_each_draft_with_its_own_row_or_its_own_refusal(
        server: Server, database_url: str, db: asyncpg.Connection) -> None:
    bob, alice, carol = [await server.person(name).register() for name in ("bob", "alice", "carol")]
    assert alice.user["id"] != 1  # so a writer that sent the unknown name's draft to user 1 is seen
    bobs_file = await upload(bob, PNG, "bob.png")
    async with holding_lock_of(database_url, carol):
        first = send(carol, alice.username, "the commit in flight")
        await until_blocked(db)  # the writer took it and waits for Carol's lock
        drafts = []
        for to, text, fields in [(bob.username, "good one", {"client_id": "c-1"}),
                                 ("nobody-at-all", "to no one", {}),
                                 (bob.username, "with Bob's file", {"attachment": bobs_file["id"]}),
                                 (bob.username, "good one, retried", {"client_id": "c-1"}),
                                 (bob.username, "good two", {})]:
            drafts.append(send(alice, to, text, **fields))
            await until_queued(server, len(drafts))  # one at a time: the queue keeps this order
    good, unknown, stolen, retried, good_two = [await draft for draft in drafts]
    assert (await first).status_code == 201
    assert good.status_code == 201 and good_two.status_code == 201
    assert_error(unknown, 404, "unknown_user")
    assert_error(stolen, 422, "invalid_attachment", "attachment")
    assert retried.status_code == 200 and retried.json() == good.json()  # the original, once, from the same batch
    assert good_two.json()["id"] > good.json()["id"]  # ids drawn in the order the sends arrived
    assert await batches_larger_than(server, 4) == 1  # all five shared one commit
    stored = await db.fetch("SELECT id FROM messages WHERE sender_id = $1 ORDER BY id", alice.user["id"])
    assert [row["id"] for row in stored] == [good.json()["id"], good_two.json()["id"]]
    assert await db.fetchval("SELECT used_with FROM files WHERE id = $1", bobs_file["id"]) is None


async def test_two_sends_of_one_file_in_a_batch_claim_it_once(server: Server, database_url: str,
                                                              db: asyncpg.Connection) -> None:
    alice, bob, carol = [await server.person(name).register() for name in ("alice", "bob", "carol")]
    photo = await upload(alice, PNG, "photo.png")
    async with holding_lock_of(database_url, carol):
        first = send(carol, bob.username, "the commit in flight")
        await until_blocked(db)
        to_bob = send(alice, bob.username, "for Bob", attachment=photo["id"])
        to_carol = send(alice, carol.username, "for Carol too", attachment=photo["id"])
        await until_queued(server, 2)
    assert (await first).status_code == 201
    answers = sorted([await to_bob, await to_carol], key=lambda answer: answer.status_code)
    assert answers[0].status_code == 201  # whichever arrived first
    assert_error(answers[1], 422, "invalid_attachment", "attachment")
    assert await db.fetchval("SELECT count(*) FROM messages WHERE attachment_id = $1", photo["id"]) == 1


@contextlib.asynccontextmanager
async def writer_of(database_url: str, announced: list[int], **options: Any) -> AsyncIterator[MessageWriter]:
    """A message writer of its own, outside any server; it records the ids it announces."""
    async def announce(messages: list[Any]) -> None:
        announced.extend(message["id"] for _, _, message in messages)

    async with body_keys(database_url) as (database, keys):
        writer = MessageWriter(database, keys, b"test tag key", lambda pending, row: {"id": row["id"]}, announce, **options)
        writer.start()
        try:
            yield writer
        finally:
            await writer.close()


async def test_a_queue_longer_than_a_batch_is_committed_a_batch_at_a_time(database_url: str, server: Server) -> None:
    """At most `max_batch` drafts a statement (MAX_BATCH in a server): nine queued at once
    with batches of four are three commits, in the order they were queued."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    announced: list[int] = []
    sizes: list[int] = []
    async with writer_of(database_url, announced, observe_batch=sizes.append, max_batch=4) as writer:
        sends = [asyncio.create_task(writer.store(alice.user["id"], alice.username, bob.username, f"#{i}", None, None))
                 for i in range(9)]
        await asyncio.sleep(0)  # all nine are queued before the writer's first batch
        stored = [message["id"] for message in await asyncio.gather(*sends)]
    assert sizes == [4, 4, 1] and stored == sorted(stored) == announced


async def test_a_writer_not_started_refuses_sends_as_unavailable(database_url: str, server: Server) -> None:
    """Before `start()` (a worker still starting) a send is told the database is unavailable
    (503 / 1013 upstream), not failed by a bug. (The server made the master key file.)"""
    async with body_keys(database_url) as (database, keys):
        writer = MessageWriter(database, keys, b"test tag key", lambda pending, row: {}, lambda messages: asyncio.sleep(0))
        with pytest.raises(DatabaseUnavailable):
            await writer.store(1, "alice", "bob", "too early", None, None)


async def test_a_bug_after_a_batch_is_stored_fails_its_sends_and_not_the_writer(database_url: str,
                                                                                server: Server) -> None:
    """The writer's last guard: an error after the insert (shaping a stored row, standing in for
    a bug) fails that batch's sends with it, and the writer goes on to store the next one.
    (A generous timeout: a writer that died would leave the sender waiting for ever.)"""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()

    def shape(pending: Any, row: Any) -> dict[str, Any]:
        if pending.body == "breaks":
            raise RuntimeError("a bug in shaping")
        return {"id": row["id"]}

    async with body_keys(database_url) as (database, keys):
        writer = MessageWriter(database, keys, b"test tag key", shape, lambda messages: asyncio.sleep(0))
        writer.start()
        try:
            with pytest.raises(RuntimeError, match="a bug in shaping"):
                await asyncio.wait_for(writer.store(alice.user["id"], alice.username, bob.username, "breaks",
                                                    None, None), 10)
            stored = await asyncio.wait_for(writer.store(alice.user["id"], alice.username, bob.username, "works",
                                                         None, None), 10)
            assert stored["id"] > 0
        finally:
            await writer.close()


async def test_a_batch_that_meets_a_database_outage_fails_its_sends_as_unavailable(
        own_database: str, media_root: Path, pg_server_url: str) -> None:
    """The database cuts the writer's connections and refuses new ones while a send is queued:
    that send is told the database is unavailable (503 / 1013 upstream, to retry), not failed
    as a bug; once the database is back, the writer stores the next one."""
    async with running_server(settings_for(own_database, media_root)) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
    announced: list[int] = []
    async with writer_of(own_database, announced) as writer:
        await writer.store(alice.user["id"], alice.username, bob.username, "before", None, None)
        async with database_refusing(pg_server_url, own_database):
            with pytest.raises(DatabaseUnavailable):
                await writer.store(alice.user["id"], alice.username, bob.username, "during", None, None)
        after = await writer.store(alice.user["id"], alice.username, bob.username, "after", None, None)
    assert len(announced) == 2 and announced[-1] == after["id"]


async def test_closing_the_writer_stores_what_is_queued_first(database_url: str, server: Server,
                                                             db: asyncpg.Connection) -> None:
    """A close while a batch is in flight and four sends wait behind it: the writer stores and
    answers all of them before it stops, and refuses a send during the close or after it.
    Alice's lock holds the first batch, so the four are surely still queued at the close."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    announced: list[int] = []

    def send(text: str) -> Any:
        return writer.store(alice.user["id"], alice.username, bob.username, text, None, None)

    async with writer_of(database_url, announced) as writer:
        async with holding_lock_of(database_url, alice):
            sends = [asyncio.create_task(send("#0"))]
            await until_blocked(db)  # the first batch waits for Alice's lock
            sends += [asyncio.create_task(send(f"#{i}")) for i in range(1, 5)]
            await asyncio.sleep(0)
            assert writer.queued == 4
            closing = asyncio.create_task(writer.close())
            await asyncio.sleep(0)  # closing has begun; the writer is still storing
            with pytest.raises(DatabaseUnavailable):
                await send("while closing")
        await closing
        assert all(task.done() for task in sends)
        stored = [task.result()["id"] for task in sends]
        with pytest.raises(DatabaseUnavailable):  # nor once closed
            await send("too late")
    assert announced == sorted(stored) and len(stored) == 5


async def test_a_draft_the_database_refuses_fails_alone(database_url: str, db: asyncpg.Connection,
                                                        server: Server) -> None:
    """Validation keeps such drafts out; if one got through, its neighbours must still be stored."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    announced: list[int] = []
    async with writer_of(database_url, announced) as writer:
        sends = [writer.store(alice.user["id"], alice.username, bob.username, text, None, None)
                 for text in ("before", "bad \ud800 surrogate", "after")]
        before, bad, after = await asyncio.gather(*sends, return_exceptions=True)
    assert isinstance(bad, Exception) and not isinstance(bad, DatabaseUnavailable)
    assert isinstance(before, dict) and isinstance(after, dict)
    assert announced == [before["id"], after["id"]]
    stored = await db.fetch("SELECT id FROM messages WHERE sender_id = $1 ORDER BY id", alice.user["id"])
    assert [row["id"] for row in stored] == [before["id"], after["id"]]


async def test_batches_of_two_workers_that_share_users_neither_deadlock_nor_skip(
        database_url: str, settings: Settings, db: asyncpg.Connection) -> None:
    """Six people write to each other through two workers at once while Bob's sync query runs
    in a loop: every send is stored, no deadlock was ever detected, and the replay sees each of
    Bob's messages once, in order. (The query is run directly: a socket would also get the
    live frames, which would hide an id the replay skipped.)"""
    deadlocks_before = await db.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    async with server_process(database_url, database_url, settings) as one, \
            server_process(database_url, database_url, settings) as two:
        bob = await one.person("bob").register()
        people = [await one.person(f"p{i}").register() for i in range(5)]

        async def chatter(index: int, person: Person) -> list[httpx.Response]:
            via = person.on(one if index % 2 else two)
            others = [bob] + [p for p in people if p is not person]
            return [await via.api("POST", "/api/send-message/",
                                  json={"to": others[n % len(others)].username, "message": f"{index}/{n}"})
                    for n in range(40)]

        sending = asyncio.gather(*(chatter(i, p) for i, p in enumerate(people)))
        received: list[int] = []
        while not sending.done():
            received += await replay(db, bob, received[-1] if received else 0)
        answers = [answer for batch in await sending for answer in batch]
        received += await replay(db, bob, received[-1] if received else 0)
        grouped = await batches_larger_than(one, 1) + await batches_larger_than(two, 1)
    assert [answer.status_code for answer in answers] == [201] * 200
    to_bob = await db.fetch("SELECT id FROM messages WHERE recipient_id = $1 ORDER BY id", bob.user["id"])
    assert received == sorted(set(received))
    assert received == [row["id"] for row in to_bob] and len(received) == 40
    assert grouped > 0  # the workers really committed batches, not one message at a time
    deadlocks = await db.fetchval("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    assert deadlocks == deadlocks_before


async def test_sigterm_with_a_full_queue_stores_and_acks_every_queued_send_before_1012(
        database_url: str, settings: Settings, db: asyncpg.Connection) -> None:
    async with server_process(database_url, database_url, settings) as server:
        bob = await server.person("bob").register()
        senders = [await server.person(f"s{i}").register() for i in range(8)]
        tabs = [await sender.connect() for sender in senders]
        async with holding_lock_of(database_url, bob):
            for index, tab in enumerate(tabs):
                await tab.send({"type": "chat", "to": bob.username, "message": f"last {index}",
                                "client_id": f"drain-{index}"})
                if index == 0:
                    await until_blocked(db)  # the batch in flight waits for Bob's lock
            await until_queued(server, len(tabs) - 1)  # the rest wait for the next commit
            os.kill(server.pid, signal.SIGTERM)
            await asyncio.sleep(0.3)  # the drain is waiting for the queued sends
        acks = [await tab.expect("ack", timeout=10) for tab in tabs]
        codes = [await tab.closed_with(timeout=10) for tab in tabs]
    assert sorted(ack["client_id"] for ack in acks) == [f"drain-{i}" for i in range(8)]
    assert codes == [1012] * 8
    stored = await db.fetchval("SELECT count(*) FROM messages WHERE recipient_id = $1", bob.user["id"])
    assert stored == 8


async def test_a_worker_whose_cached_key_was_destroyed_elsewhere_seals_again(settings: Settings) -> None:
    """Alice writes through worker one, which keeps the conversation's key; Bob logs out through
    worker two (the key is destroyed) and Alice starts again there (a new key). Her next send
    through worker one must not be sealed with the old key: Bob reads both through worker two."""
    async with running_server(settings) as one, running_server(settings) as two:
        alice, bob = await one.person("alice").register(), await one.person("bob").register()
        await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "first"})
        assert (await bob.on(two).api("POST", "/api/logout/")).status_code == 200
        token = await bob.login()
        await alice.on(two).api("POST", "/api/send-message/", json={"to": bob.username, "message": "again"})
        sent = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "and again"})
        assert sent.status_code == 201
        history = await bob.on(two).api("GET", "/api/messages/", token=token, params={"with": alice.username})
    assert history.status_code == 200, history.text
    assert [m["message"] for m in history.json()["messages"]] == ["again", "and again"]


async def test_sends_waiting_while_their_conversation_is_cleared_are_sealed_again_in_their_places(
        server: Server, database_url: str, db: asyncpg.Connection) -> None:
    """Alice's two sends share a batch that waits for her lock when Bob logs out: the key they
    were sealed with is destroyed under them. They are sealed again with the new conversation's
    key and keep their places: in the order sent, ahead of Carol's send queued meanwhile.
    Carol's first send, ahead of them in the same batch, is stored as it was.
    (The first batch, "first", holds the writer while the three queue behind it: each shares
    Alice with it, so none may start beside it on another connection.)"""
    alice, bob, carol, dave = [await server.person(name).register() for name in ("alice", "bob", "carol", "dave")]
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "before"})
    holder = await taking_lock_of(database_url, alice)
    try:
        first = send(alice, bob.username, "first")
        await until_waiting(db, sends=1, holders=0)
        drafts = []
        for sender, to, text in ((carol, alice, "unaffected"), (alice, bob, "one"), (alice, bob, "two")):
            drafts.append(send(sender, to.username, text))
            await until_queued(server, len(drafts))
        after = asyncio.create_task(taking_lock_of(database_url, alice))
        await until_waiting(db, sends=1, holders=1)
        await holder.execute("COMMIT")
        await holder.close()
        holder = await after  # "first" is stored; the next batch, sealed with the old key, waits
        await until_waiting(db, sends=1, holders=0)
        assert (await bob.api("POST", "/api/logout/")).status_code == 200
        behind = send(carol, dave.username, "behind")
        await until_queued(server, 1)
        await holder.execute("COMMIT")
    finally:
        await holder.close()
    answers = [await first, *[await draft for draft in drafts], await behind]
    assert [answer.status_code for answer in answers] == [201] * 5
    unaffected, one, two, later = (answer.json()["id"] for answer in answers[1:])
    assert unaffected < one < two < later
    token = await bob.login()
    history = await bob.api("GET", "/api/messages/", token=token, params={"with": alice.username})
    assert history.status_code == 200, history.text
    assert [message["message"] for message in history.json()["messages"]] == ["one", "two"]


async def test_a_send_whose_conversation_is_cleared_under_it_again_and_again_is_refused_409(
        server: Server, db: asyncpg.Connection, database_url: str) -> None:
    """Bob logs out each time Alice's one send has been sealed with the conversation's newest key:
    the writer seals it again MAX_RESEALS times, then gives up, and Alice is told to send it
    again; nothing is stored. Each round, the send waits for Alice's lock; Bob logs out; the next
    holder queues for the lock behind the send; the holder lets go: the send is refused, sealed
    again, and its new statement waits behind the next holder."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    holder = await taking_lock_of(database_url, alice)
    sending = send(alice, bob.username, "cleared again and again", client_id="loop-1")
    try:
        for round_ in range(MAX_RESEALS + 1):
            await until_waiting(db, sends=1, holders=0)  # sealed with the newest key, waiting
            assert (await bob.api("POST", "/api/logout/", token=await bob.login())).status_code == 200
            last = round_ == MAX_RESEALS
            after = None if last else asyncio.create_task(taking_lock_of(database_url, alice))
            await until_waiting(db, sends=1, holders=0 if last else 1)
            await holder.execute("COMMIT")
            await holder.close()
            if after is not None:
                holder = await after  # the send's statement has had its turn: refused
    finally:
        if not holder.is_closed():
            await holder.close()
    assert_error(await sending, 409, "conversation_cleared")
    assert await db.fetchval("SELECT count(*) FROM messages WHERE sender_id = $1", alice.user["id"]) == 0


async def test_a_key_destroyed_just_after_a_batch_commits_sends_nothing_twice(
        server: Server, db: asyncpg.Connection, database_url: str) -> None:
    """The writer checks which drafts of a batch were refused for a changed key only after the
    batch committed; a key destroyed in that moment (a logout) must not send a stored draft
    again. The test's own transaction takes the keys table right behind the batch's statement,
    so the writer's check waits for it, and destroys Alice and Bob's key before letting go."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "before"})
    holder = await taking_lock_of(database_url, alice)
    keys_taker = await asyncpg.connect(database_url)
    try:
        once = send(alice, bob.username, "once")
        await until_waiting(db, sends=1, holders=0)  # the statement holds the keys table, shared
        await keys_taker.execute("BEGIN")
        taking = asyncio.create_task(keys_taker.execute("LOCK TABLE conversation_keys IN ACCESS EXCLUSIVE MODE"))
        await eventually(lambda: waiting_for_a_lock(db, "LOCK TABLE conversation_keys%"))
        await holder.execute("COMMIT")
        await taking  # the batch has committed; the keys table is the test's
        await keys_taker.execute("DELETE FROM conversation_keys WHERE low_user_id = $1 AND high_user_id = $2",
                                 alice.user["id"], bob.user["id"])
        await keys_taker.execute("COMMIT")
        assert (await once).status_code == 201
        after = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "after"})
        assert after.status_code == 201  # the writer's queue is worked in order: nothing is left before it
    finally:
        await keys_taker.close()
        await holder.close()
    stored = await db.fetchval("SELECT count(*) FROM messages WHERE sender_id = $1", alice.user["id"])
    assert stored == 3  # before, once, after


async def test_a_first_message_to_someone_logging_out_waits_for_the_logout_to_end(
        server: Server, database_url: str, db: asyncpg.Connection) -> None:
    """Bob's logout is paused inside its transaction (the test holds the table where it
    records the files to unlink, its last step, which no send touches). Alice's first
    message to him has no conversation key for the logout to lock, so only the logout's
    hold on Bob's message lock keeps it from committing, and being acknowledged, in the
    middle of his logout, which would not clear it."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    pause = await asyncpg.connect(database_url)
    try:
        await pause.execute("BEGIN")
        await pause.execute("LOCK TABLE doomed_files IN ACCESS EXCLUSIVE MODE")
        logout = asyncio.create_task(bob.api("POST", "/api/logout/", timeout=60))
        await eventually(lambda: waiting_for_a_lock(db, "INSERT INTO doomed_files%"))
        first = send(alice, bob.username, "are you there?")
        await until_waiting(db, sends=1, holders=0)  # on Bob's lock, which his logout holds
        assert not first.done()
        await pause.execute("COMMIT")
    finally:
        await pause.close()
    assert (await logout).status_code == 200
    assert (await first).status_code == 201  # stored after his logout ended: it stays
