"""The pipelined writer: a batch is committed while the one before it is announced, and a batch
stalled on a lock does not hold up senders who share nothing with it.

The writer-level tests build a MessageWriter of their own (as test_group_commit does) and
record every announcement: whether each announced row was already committed (seen from another
connection) and whether its sender had been answered before it. A held advisory lock 7001 (as a
logout holds it) stalls a batch on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from typing import Any
from collections.abc import AsyncIterator

import asyncpg
from websockets.exceptions import ConnectionClosed

from secure_link.config import Settings
from secure_link.chat.writer import MessageWriter, StoredMessage

from ..conftest import body_keys, server_process
from ..story import Person, Server, Socket, eventually
from .test_group_commit import holding_lock_of, until_blocked, until_waiting

WAIT = 20  # seconds a send may take before the writer is deemed stuck (a loaded machine; not a speed check)


@dataclasses.dataclass
class Heard:
    """One announced message, as the writer handed it to the fan-out."""

    id: int
    sender_id: int
    recipient_id: int
    committed: bool  # its row was visible to another connection when it was announced
    answered: bool  # its sender had already been answered


@dataclasses.dataclass
class Announcements:
    """What the writer announced, call by call; `gate` holds the announcing stage while cleared."""

    checker: asyncpg.Connection
    calls: list[list[Heard]] = dataclasses.field(default_factory=list)
    gate: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def __call__(self, messages: list[StoredMessage]) -> None:
        ids = [row["id"] for _, row, _ in messages]
        visible = {row["id"] for row in await self.checker.fetch("SELECT id FROM messages WHERE id = ANY($1)", ids)}
        self.calls.append([Heard(row["id"], pending.sender_id, pending.recipient_id, row["id"] in visible,
                                 pending.answer.done()) for pending, row, _ in messages])
        await self.gate.wait()

    @property
    def heard(self) -> list[Heard]:
        return [message for call in self.calls for message in call]

    def assert_sound(self) -> None:
        """Each announced message committed, its sender not yet answered, each user's ids ascending."""
        assert all(message.committed for message in self.heard), self.calls
        assert not any(message.answered for message in self.heard), self.calls
        users = {user for message in self.heard for user in (message.sender_id, message.recipient_id)}
        for user in users:
            ids = [m.id for m in self.heard if user in (m.sender_id, m.recipient_id)]
            assert ids == sorted(ids), f"user {user} heard {ids}"


@contextlib.asynccontextmanager
async def pipeline(database_url: str) -> AsyncIterator[tuple[MessageWriter, Announcements]]:
    """A writer of its own, outside any server, whose announcements are recorded (gate open)."""
    checker = await asyncpg.connect(database_url)
    announcements = Announcements(checker)
    announcements.gate.set()
    try:
        async with body_keys(database_url) as (database, keys):
            writer = MessageWriter(database, keys, b"test tag key", lambda pending, row: {"id": row["id"]},
                                   announcements)
            writer.start()
            try:
                yield writer, announcements
            finally:
                announcements.gate.set()
                await writer.close()
    finally:
        await checker.close()


def sending(writer: MessageWriter, sender: Person, to: Person, text: str) -> asyncio.Task[Any]:
    return asyncio.create_task(writer.store(sender.user["id"], sender.username, to.username, text, None, None))


async def stored_ids(db: asyncpg.Connection, sender: Person) -> list[int]:
    return [row["id"] for row in await db.fetch("SELECT id FROM messages WHERE sender_id = $1 ORDER BY id",
                                                sender.user["id"])]


async def people(server: Server, *names: str) -> list[Person]:
    """Registered one after the other, so their ids (and lock order) ascend in the order named."""
    return [await server.person(name).register() for name in names]


async def test_a_batch_beside_a_stalled_one_commits_first_and_everyone_hears_in_id_order(
        server: Server, database_url: str, db: asyncpg.Connection) -> None:
    """Carol's lock is held (a logout): Alice's send to her stalls, holding Alice's own lock.
    Bob's send to Erin shares no one with it: it starts on another connection, commits first
    and is acknowledged while Alice's waits. Alice's next send (to Dave) shares Alice: it
    waits in the queue, and is stored and announced after her first, with a higher id."""
    alice, bob, carol, dave, erin = await people(server, "alice", "bob", "carol", "dave", "erin")
    async with pipeline(database_url) as (writer, heard):
        async with holding_lock_of(database_url, carol):
            stalled = sending(writer, alice, carol, "waits for Carol's lock")
            await until_blocked(db)
            later = sending(writer, alice, dave, "waits behind Alice's first")
            beside = sending(writer, bob, erin, "goes beside it")
            beside_id = (await asyncio.wait_for(beside, WAIT))["id"]
            assert await stored_ids(db, bob) == [beside_id] and await stored_ids(db, alice) == []
            assert not stalled.done() and not later.done() and writer.queued == 1
            assert [m.id for m in heard.heard] == [beside_id]
        first, second = (await asyncio.wait_for(stalled, WAIT))["id"], (await asyncio.wait_for(later, WAIT))["id"]
    assert beside_id < first < second  # ids are drawn after the locks: the batch beside took its ids first
    assert await stored_ids(db, alice) == [first, second]
    assert [m.id for m in heard.heard] == [beside_id, first, second]
    heard.assert_sound()


async def test_batches_committed_during_a_slow_announcement_are_announced_together_in_id_order(
        server: Server, database_url: str, db: asyncpg.Connection) -> None:
    """The fan-out is slow to take the first batch: meanwhile the next ones commit (the pipeline
    does not wait for it), and their senders are answered only once they too are announced,
    merged into one announcement in id order."""
    alice, bob = await people(server, "alice", "bob")
    async with pipeline(database_url) as (writer, heard):
        heard.gate.clear()
        first = sending(writer, alice, bob, "#1")
        await eventually(lambda: announced(heard, 1))
        more = []
        for sender, to, text in ((alice, bob, "#2"), (bob, alice, "#3"), (alice, bob, "#4")):
            more.append(sending(writer, sender, to, text))
            await eventually(lambda: stored_count(db, alice, bob, len(more) + 1))  # committed, one batch each
        assert not first.done() and not any(task.done() for task in more)
        heard.gate.set()
        ids = [(await asyncio.wait_for(task, WAIT))["id"] for task in (first, *more)]
    assert ids == sorted(ids)
    assert [[m.id for m in call] for call in heard.calls] == [ids[:1], ids[1:]]
    heard.assert_sound()


async def announced(heard: Announcements, calls: int) -> bool:
    return len(heard.calls) == calls


async def stored_count(db: asyncpg.Connection, alice: Person, bob: Person, count: int) -> bool:
    return await db.fetchval("SELECT count(*) FROM messages WHERE sender_id = ANY($1)",
                             [alice.user["id"], bob.user["id"]]) == count


async def test_closing_stores_and_answers_the_batches_in_flight_and_the_queue(
        server: Server, database_url: str, db: asyncpg.Connection) -> None:
    """Carol's and Erin's locks are held. A close comes while Alice's send to Carol is stalled,
    Bob's to Erin has gone beside it and stalled too, and Alice's next send waits in the queue.
    Carol's lock goes: Alice's two are stored and answered, but the close still waits for Bob's
    batch in flight, and returns only once it too is stored and answered."""
    alice, bob, carol, dave, erin = await people(server, "alice", "bob", "carol", "dave", "erin")
    async with pipeline(database_url) as (writer, heard):
        async with holding_lock_of(database_url, erin):
            async with holding_lock_of(database_url, carol):
                sends = [sending(writer, alice, carol, "stalled")]
                await until_blocked(db)
                sends += [sending(writer, alice, dave, "queued"), sending(writer, bob, erin, "beside, stalled")]
                await until_waiting(db, sends=2, holders=0)
                assert writer.queued == 1
                closing = asyncio.create_task(writer.close())
                await asyncio.sleep(0)  # the close has begun while both locks are held
            await asyncio.wait_for(asyncio.gather(*sends[:2]), WAIT)
            assert not closing.done() and not sends[2].done()
        await asyncio.wait_for(closing, WAIT)
        assert all(task.done() for task in sends)
        ids = [task.result()["id"] for task in sends]
    assert sorted(m.id for m in heard.heard) == sorted(ids)
    assert await stored_ids(db, alice) == sorted(ids[:2])
    heard.assert_sound()


async def test_sigkill_with_two_batches_in_flight_loses_nothing_acknowledged(
        database_url: str, settings: Settings, db: asyncpg.Connection) -> None:
    """Carol's and Erin's locks are held: Alice's send to Carol stalls, Bob's to Erin goes beside
    it and stalls too, and Dave's sends to Frank go beside both and are acknowledged. The worker
    is killed with both stalled batches in flight, and their orphaned statements are ended
    before the locks are let go (or they would still commit). Exactly what was acknowledged,
    on any of the three sockets, is stored, with the ids its acks said."""
    async with server_process(database_url, database_url, settings) as server:
        alice, bob, carol, dave, erin, frank = await people(server, "alice", "bob", "carol", "dave", "erin", "frank")
        tabs = [await person.connect() for person in (alice, bob, dave)]
        async with holding_lock_of(database_url, carol), holding_lock_of(database_url, erin):
            for waiting, (tab, sender, to) in enumerate(((tabs[0], alice, carol), (tabs[1], bob, erin)), 1):
                await tab.send({"type": "chat", "to": to.username, "message": "stalls", "client_id": sender.username})
                await until_waiting(db, sends=waiting, holders=0)
            acks = [{"client_id": f"dave-{n}", "message": await dave.say(tabs[2], frank, "beside", f"dave-{n}")}
                    for n in range(3)]
            os.kill(server.pid, signal.SIGKILL)
            await until_waiting(db, sends=2, holders=0)  # both stalled statements outlive the worker
            await db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'advisory' "
                             "AND datname = current_database() AND query LIKE 'WITH draft%'")
        for tab in tabs:
            acks += [frame for frame in await frames_until_closed(tab) if frame.get("type") == "ack"]
    stored = await db.fetch("SELECT client_id, id FROM messages WHERE sender_id = ANY($1)",
                            [alice.user["id"], bob.user["id"], dave.user["id"]])
    assert {row["client_id"]: row["id"] for row in stored} == {ack["client_id"]: ack["message"]["id"] for ack in acks}
    assert len(stored) == 3


async def frames_until_closed(tab: Socket) -> list[dict[str, Any]]:
    """Every frame a socket had received when its server died, read until it is closed."""
    frames = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            frames.append(await tab.next(timeout=WAIT))
    return frames
