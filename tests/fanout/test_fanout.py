"""Fan-out stories: what one worker publishes reaches every socket subscribed to it.

Each story runs over memory://, PostgreSQL LISTEN/NOTIFY and Redis pub/sub,
against the real servers. Waits are generous timeouts on events, never sleeps:
a timeout here means "never arrived", not "arrived slowly".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
import redis.asyncio as redis

from secure_link.fanout import GAP, Fanout, Gap, Outgoing, SubscriptionClosed, SubscriptionOverflow
from secure_link.fanout.core import ORIGIN_END
from secure_link.fanout.backends.base import retry_with_backoff
from secure_link.fanout.backends.postgres import INBOX_SIZE, INLINE, SPILLED, pg_channel
from secure_link.encryption import datakeys
from secure_link.encryption.bodies import BodyKeys
from secure_link.db import Database
from secure_link.fanout import ConversationKey, EnvelopeSeal
from secure_link.encryption.keyring import Keyring, new_master_key

from ..conftest import shared_master_key_file

from ..story import PROBE, WAIT, SilentLink, channel, eventually, next_item, real_server, waiting_for_a_lock
import itertools

LISTEN_NAME = "secure_link_fanout_listen"
QUEUE_SIZE = 64
BACKENDS = ["memory", "postgres", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(scope="module")
def pg_fanout_url(database_url: str) -> str:
    """This module's own database, copied from the schema template: fanout_spill lives there."""
    return database_url


@pytest.fixture(params=BACKENDS)
def fanout_url(request: pytest.FixtureRequest) -> str:
    """Each backend's URL; the real-server fixtures are only asked for when needed."""
    if request.param == "memory":
        return "memory://"
    return request.getfixturevalue("pg_fanout_url" if request.param == "postgres" else "redis_url")


@pytest.fixture(params=BACKENDS[1:])
def cross_worker_url(request: pytest.FixtureRequest) -> str:
    """The backends that cross processes (memory:// has no other worker to reach)."""
    return request.getfixturevalue("pg_fanout_url" if request.param == "postgres" else "redis_url")


@asynccontextmanager
async def connected(url: str, probe_interval: float = PROBE) -> AsyncIterator[Fanout]:
    """A connected Fanout that is always disconnected, whatever the story did."""
    fanout = Fanout(url, queue_size=QUEUE_SIZE, probe_interval=probe_interval)
    await fanout.connect()
    try:
        yield fanout
    finally:
        await fanout.disconnect()


@pytest.fixture
async def fanout(fanout_url: str) -> AsyncIterator[Fanout]:
    async with connected(fanout_url) as fanout:
        yield fanout


async def test_every_subscriber_of_a_channel_hears_it_and_no_one_else(fanout: Fanout) -> None:
    alice, bob = channel("user"), channel("user")
    async with fanout.subscribe(alice) as phone, fanout.subscribe(alice) as laptop, \
            fanout.subscribe(bob) as bobs:
        await fanout.publish(alice, "hello alice")
        await fanout.publish(bob, "hello bob")
        assert await next_item(phone) == "hello alice"
        assert await next_item(laptop) == "hello alice"
        assert await next_item(bobs) == "hello bob"  # first item: alice's message never reached bob


async def test_one_subscription_follows_several_channels(fanout: Fanout) -> None:
    user, session, stranger = channel("user"), channel("session:"), channel("user")
    async with fanout.subscribe_many([user, session, user]) as socket:
        assert socket.channels == (user, session)
        for target, text in [(user, "new message"), (stranger, "not yours"), (session, "logged out")]:
            await fanout.publish(target, text)
        assert [await next_item(socket), await next_item(socket)] == ["new message", "logged out"]


async def test_when_one_tab_closes_the_other_still_hears(fanout: Fanout) -> None:
    alice = channel("user")
    async with fanout.subscribe(alice) as staying:
        async with fanout.subscribe(alice) as closing:
            await fanout.publish(alice, "both")
            assert await next_item(closing) == "both"
        await fanout.publish(alice, "one left")
        assert await next_item(staying) == "both"
        assert await next_item(staying) == "one left"
    async with fanout.subscribe(alice) as reopened:  # the last one out stopped listening; back in
        await fanout.publish(alice, "again")
        assert await next_item(reopened) == "again"


async def test_channels_that_differ_only_in_case_or_punctuation_stay_apart(fanout: Fanout) -> None:
    base = channel("room")
    names = [base, base.upper(), base.replace("_", "-"), base + " ", base + "é", base * 5, base * 5 + "x"]
    async with contextlib.AsyncExitStack() as stack:
        rooms = [await stack.enter_async_context(fanout.subscribe(name)) for name in names]
        for name in names:
            await fanout.publish(name, f"for {name!r}")
        # had two names shared a channel, the later one's first item would be the earlier's message
        assert [await next_item(room) for room in rooms] == [f"for {name!r}" for name in names]


async def test_a_message_published_right_after_subscribing_arrives(fanout: Fanout) -> None:
    for attempt in range(20):  # broadcaster's Redis backend lost these: ready must mean subscribed
        fresh = channel("ready")
        async with fanout.subscribe(fresh) as subscription:
            await fanout.publish(fresh, f"first {attempt}")
            assert await next_item(subscription) == f"first {attempt}"


async def test_fifty_concurrent_publishes_all_arrive(fanout: Fanout) -> None:
    busy = channel("busy")
    async with fanout.subscribe(busy) as subscription:
        await asyncio.gather(*(fanout.publish(busy, f"m{n}") for n in range(50)))
        received = [await next_item(subscription) for _ in range(50)]
    assert sorted(received) == sorted(f"m{n}" for n in range(50))


async def test_unicode_and_json_arrive_intact(fanout: Fanout) -> None:
    chat = channel("chat")
    event = {"type": "message", "body": "héllo 👋 \"quoted\" \\ back\nslash\u2028 日本語 \u0000",
             "id": 42, "nested": {"empty": "", "list": [1.5, None, True]}}
    texts = [json.dumps(event), json.dumps(event, ensure_ascii=False), "", "@1", "=x", "ŝ" * 3000]
    async with fanout.subscribe(chat) as subscription:
        for text in texts:
            await fanout.publish(chat, text)
        received = [await next_item(subscription) for _ in texts]
    assert received == texts
    assert json.loads(received[1]) == event


async def test_a_20_kb_message_arrives_intact(fanout: Fanout, fanout_url: str) -> None:
    big = channel("big")
    text = json.dumps({"channel": big, "body": "é€👋" * 2300}, ensure_ascii=False)
    assert len(text.encode("utf-8")) > 20_000
    async with fanout.subscribe(big) as first, fanout.subscribe(big) as second:
        await fanout.publish(big, text)
        await fanout.publish(big, "small after big")  # order survives the spill fetch
        assert [await next_item(first), await next_item(first)] == [text, "small after big"]
        assert await next_item(second) == text
    if fanout.backend_name == "postgres":
        conn = await asyncpg.connect(fanout_url)
        try:
            parked = await conn.fetchval("SELECT count(*) FROM fanout_spill WHERE payload = $1", ORIGIN_END + text)
            assert parked == 1
        finally:
            await conn.close()


async def test_a_batch_arrives_once_here_at_once_and_in_order_on_another_worker(cross_worker_url: str) -> None:
    """The group-commit writer's publish: this worker's sockets get the batch straight away and
    never a second copy when it comes back through the transport; another worker gets the
    same batch in the same order, a message too large for NOTIFY included."""
    fanout_url = cross_worker_url
    alice, bob = channel("alice"), channel("bob")
    big = "€" * 3000  # parked by PostgreSQL, between two inline runs
    batch = [Outgoing([alice, bob], "m1"), Outgoing([bob], "m2|with the origin separator"),
             Outgoing([alice, bob], big), Outgoing([alice], "m4")]
    async with connected(fanout_url) as here, connected(fanout_url) as there:  # noqa: SIM117 - the workers first, then what listens on them
        async with here.subscribe(alice) as alice_here, there.subscribe_many([alice, bob]) as both_there:
            await here.publish_batch(batch)
            assert [await next_item(alice_here) for _ in range(3)] == ["m1", big, "m4"]
            remote = [await next_item(both_there) for _ in range(6)]
            await here.publish(alice, "after the batch")  # a plain publish comes back through the transport
            assert await next_item(alice_here) == "after the batch"  # and nothing of the batch before it
    assert remote == ["m1", "m1", "m2|with the origin separator", big, big, "m4"]


async def test_a_workers_own_batch_is_dropped_as_it_comes_back_never_queued_again(cross_worker_url: str) -> None:
    """PostgreSQL and Redis hand a worker back what it published itself. Its subscribers had the
    batch at once, so the backend drops those copies in its callback, before its inbox or any
    decoding: they are counted as echoes, and only another worker's message is taken in."""
    alice = channel("alice")
    batch = [Outgoing([alice], f"m{index}") for index in range(5)]
    async with connected(cross_worker_url) as here, connected(cross_worker_url) as there:  # noqa: SIM117 - the workers first, then what listens on them
        async with here.subscribe(alice) as alice_here:
            await here.publish_batch(batch)
            assert [await next_item(alice_here) for _ in range(5)] == [f"m{index}" for index in range(5)]
            await there.publish(alice, "from there")  # published after: it comes in behind the batch's copies
            assert await next_item(alice_here) == "from there"  # no second copy of the batch before it
            backend = here._backend
            assert (backend.echoes, backend.received) == (5, 1)  # type: ignore[attr-defined]


async def test_messages_around_the_notify_limit_arrive(fanout: Fanout, fanout_url: str) -> None:
    """On PostgreSQL, a message whose NOTIFY payload fits (7,999 bytes) goes inline, and only
    a larger one is parked in fanout_spill."""
    edge = channel("edge")
    texts = ["é" * 3995 + "x" * extra for extra in range(20)]  # 7,990 to 8,009 bytes
    async with fanout.subscribe(edge) as subscription:
        for text in texts:
            await fanout.publish(edge, text)
        assert [await next_item(subscription) for _ in texts] == texts
    if fanout.backend_name == "postgres":
        conn = await asyncpg.connect(fanout_url)
        try:
            rows = await conn.fetch("SELECT payload FROM fanout_spill WHERE channels = $1", [pg_channel(edge)])
        finally:
            await conn.close()
        too_large = [text for text in texts if len((INLINE + ORIGIN_END + text).encode()) > 7999]
        assert 0 < len(too_large) < len(texts)
        assert sorted(row["payload"] for row in rows) == sorted(ORIGIN_END + text for text in too_large)


async def test_a_subscriber_that_never_reads_is_dropped_not_buffered(fanout: Fanout) -> None:
    room = channel("room")
    async with fanout.subscribe(room) as reader, fanout.subscribe(room) as sleeper:
        for n in range(QUEUE_SIZE + 1):  # the reader keeps up; the sleeper never reads
            await fanout.publish(room, f"m{n}")
            assert await next_item(reader) == f"m{n}"
        with pytest.raises(SubscriptionOverflow):
            await next_item(sleeper)
        await fanout.publish(room, "still flowing")
        assert await next_item(reader) == "still flowing"
        with pytest.raises(SubscriptionOverflow):  # dropped for good, not refilled
            await next_item(sleeper)


async def test_disconnect_ends_subscriptions_and_leaves_no_task_behind(fanout_url: str) -> None:
    before = asyncio.all_tasks()
    fanout = Fanout(fanout_url, queue_size=QUEUE_SIZE, probe_interval=PROBE)
    await fanout.connect()
    talk = channel("talk")
    subscription = await fanout.subscribe(talk).__aenter__()
    await fanout.publish(talk, "x" * 9000)  # the spill path runs too
    assert await next_item(subscription) == "x" * 9000
    waiting = asyncio.create_task(subscription.get())
    await fanout.disconnect()
    with pytest.raises(SubscriptionClosed):
        await asyncio.wait_for(waiting, WAIT)
    assert [item async for item in subscription] == []  # `async for` just ends
    await subscription.__aexit__(None, None, None)
    assert asyncio.all_tasks() - before - {asyncio.current_task()} == set()


async def test_a_subscription_is_entered_once(fanout: Fanout) -> None:
    """Entering it again would count it twice among its channels' subscribers, and the
    first exit would leave a ghost: it is refused instead."""
    subscription = fanout.subscribe(channel("once"))
    async with subscription:
        with pytest.raises(RuntimeError):
            await subscription.__aenter__()


async def test_what_arrived_before_forwarding_began_is_forwarded_first(fanout: Fanout) -> None:
    """A socket subscribes, catches up, then switches to forwarding: what arrived meanwhile
    was queued, and goes to the socket first, in order. A marker on another channel, sent
    after, says when the two have arrived (one connection delivers in order)."""
    room, marker = channel("room"), channel("marker")
    async with fanout.subscribe(room) as subscription, fanout.subscribe(marker) as markers:
        for text in ("first", "second"):
            await fanout.publish(room, text)
        await fanout.publish(marker, "both arrived")
        assert await next_item(markers) == "both arrived"
        forwarded: list[str | Gap | None] = []
        subscription.forward(forwarded.append)
        await fanout.publish(room, "third")
        await eventually(lambda: arrived(forwarded, 3))
        assert forwarded == ["first", "second", "third"]


async def arrived(items: list[str | Gap | None], count: int) -> bool:
    return len(items) >= count


async def test_disconnect_ends_a_waiting_reader_and_a_forwarding_one_alike(fanout_url: str) -> None:
    """A subscriber parked in `get()` wakes with SubscriptionClosed; one that forwards (a
    socket's outbox) and so never queued anything is handed None, so its socket can close."""
    fanout = Fanout(fanout_url, queue_size=QUEUE_SIZE, probe_interval=PROBE)
    await fanout.connect()
    talk = channel("talk")
    reader = await fanout.subscribe(talk).__aenter__()
    forwarder = await fanout.subscribe(talk).__aenter__()
    forwarded: list[str | Gap | None] = []
    forwarder.forward(forwarded.append)
    waiting = asyncio.create_task(reader.get())
    await asyncio.sleep(0)  # the task's first step: it is now parked, waiting for an item
    await fanout.disconnect()
    with pytest.raises(SubscriptionClosed):
        await asyncio.wait_for(waiting, WAIT)
    assert forwarded == [None]
    for subscription in (reader, forwarder):
        await subscription.__aexit__(None, None, None)


async def test_a_subscribe_cancelled_before_its_listen_leaves_nothing_behind(pg_fanout_url: str) -> None:
    """A socket that closes while its subscribe waits for the LISTEN connection (busy with
    another command) must not leave a ghost subscriber: the channel's next subscriber then
    finds a subscriber already there, skips its own LISTEN, and never hears another worker.
    The story holds the backend's one-command-at-a-time lock to make the wait happen."""
    room = channel("room")
    async with connected(pg_fanout_url) as here, connected(pg_fanout_url) as there:
        async with here._backend._lock:
            cancelled = asyncio.create_task(here.subscribe(room).__aenter__())
            await asyncio.sleep(0.05)  # it is now waiting for the lock
            cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):  # its roll-back needs the lock too
            await cancelled
        async with here.subscribe(room) as subscription:
            await there.publish(room, "from another worker")
            assert await next_item(subscription) == "from another worker"


async def no_longer_in(connection_id: int, live: Awaitable[set[int]]) -> bool:
    return connection_id not in await live


async def listen_pids(conn: asyncpg.Connection) -> set[int]:
    # this database's only: other xdist workers' servers listen on databases of their own
    rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
                            "AND datname = current_database()", LISTEN_NAME)
    return {row["pid"] for row in rows}


async def test_postgres_listen_connection_killed_then_gap_then_delivery(pg_fanout_url: str) -> None:
    """The termination listener, not the probe, notices a LISTEN connection the server ended:
    with probes an hour apart, the GAP still comes at once, then one new connection delivers."""
    admin = await asyncpg.connect(pg_fanout_url)
    try:
        others = await listen_pids(admin)  # other Fanouts of this session are not ours to kill
        async with connected(pg_fanout_url, probe_interval=3600) as fanout:
            (ours,) = await listen_pids(admin) - others
            alice = channel("user")
            async with fanout.subscribe(alice) as subscription:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", ours)
                assert await next_item(subscription) is GAP
                await fanout.publish(alice, "after the outage")
                assert await next_item(subscription) == "after the outage"
            (replacement,) = await listen_pids(admin) - others - {ours}  # one, not a pile-up
        await eventually(lambda: no_longer_in(replacement, listen_pids(admin)))
    finally:
        await admin.close()


async def test_disconnect_before_connect_and_twice_is_harmless_and_leaves_no_connection(
        pg_fanout_url: str) -> None:
    """A start that failed before the fan-out connected still runs the shutdown; a shutdown
    may run twice. Neither raises, and once disconnected no connection of ours is left."""
    admin = await asyncpg.connect(pg_fanout_url)
    try:
        def connections() -> Awaitable[list[asyncpg.Record]]:
            return admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                               "AND pid <> pg_backend_pid()")

        before = {row["pid"] for row in await connections()}
        await Fanout(pg_fanout_url, queue_size=QUEUE_SIZE, probe_interval=PROBE).disconnect()
        fanout = Fanout(pg_fanout_url, queue_size=QUEUE_SIZE, probe_interval=PROBE)
        await fanout.connect()
        async with fanout.subscribe(channel("user")):
            assert {row["pid"] for row in await connections()} - before  # the LISTEN connection and the pool's
        await fanout.disconnect()
        await fanout.disconnect()

        async def none_left() -> bool:
            return {row["pid"] for row in await connections()} <= before

        await eventually(none_left)
    finally:
        await admin.close()


async def test_a_restored_listen_connection_listens_only_to_channels_still_subscribed(
        pg_fanout_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Alice's tab closed before the outage: the restored connection LISTENs to Bob's channel
    alone, as the operator's "restored" log line counts."""
    admin = await asyncpg.connect(pg_fanout_url)
    try:
        others = await listen_pids(admin)
        async with connected(pg_fanout_url) as fanout:
            (listening,) = await listen_pids(admin) - others
            alice, bob = channel("user"), channel("user")
            async with fanout.subscribe(bob) as subscription:
                async with fanout.subscribe(alice):
                    pass
                with caplog.at_level(logging.WARNING, logger="secure_link.fanout"):
                    assert await admin.fetchval("SELECT pg_terminate_backend($1)", listening)
                    assert await next_item(subscription) is GAP
                restored = [r.getMessage() for r in caplog.records if "LISTEN restored" in r.getMessage()]
                assert restored and restored[-1].endswith("; 1 channel(s)"), restored
    finally:
        await admin.close()


async def test_a_flood_past_the_listen_inbox_is_told_as_a_gap(pg_fanout_url: str) -> None:
    """The pump waits for a parked message (its table locked) while more notifications arrive
    than the LISTEN inbox holds (10,000): those that do not fit are lost, and the subscriber is
    told so at once with a GAP (it catches up from the database), not left believing it heard
    everything."""
    alice = channel("user")
    ident = pg_channel(alice)
    admin, notifier = await asyncpg.connect(pg_fanout_url), await asyncpg.connect(pg_fanout_url)
    try:
        parked = await admin.fetchval("INSERT INTO fanout_spill (payload, channels) VALUES ($1, $2) RETURNING id",
                                      ORIGIN_END + "parked", [ident])
        async with connected(pg_fanout_url) as fanout, fanout.subscribe(alice) as subscription:  # noqa: SIM117 - the transaction holds the lock while the notification waits
            async with admin.transaction():
                await admin.execute("LOCK TABLE fanout_spill IN ACCESS EXCLUSIVE MODE")
                await notifier.execute("SELECT pg_notify($1, $2)", ident, SPILLED + str(parked))
                await eventually(lambda: waiting_for_a_lock(notifier, "SELECT payload FROM fanout_spill%"))
                await notifier.execute("SELECT pg_notify($1, $2 || g) FROM generate_series(1, $3::int) g",
                                       ident, INLINE + ORIGIN_END + "flood ", INBOX_SIZE + 1)
                assert await next_item(subscription) is GAP  # while the pump still waits
    finally:
        await notifier.close()
        await admin.close()


async def test_payloads_a_sealed_fanout_cannot_open_are_gaps_and_later_ones_arrive(pg_fanout_url: str) -> None:
    """Whatever lands on a channel (an empty payload, one not base64, one sealed under another
    deployment's master key, non-ASCII, a parked message that is not there) is a GAP for that
    channel's subscribers, who catch up from the database, and for no one else's; it never
    stops the pump, and the next real message still arrives."""
    fanout = Fanout(pg_fanout_url, queue_size=QUEUE_SIZE, probe_interval=PROBE,
                    seal=EnvelopeSeal(Keyring([new_master_key()]), NoConversations()))
    foreign = EnvelopeSeal(Keyring([new_master_key()]), NoConversations()).seal("from elsewhere")
    await fanout.connect()
    notifier = await asyncpg.connect(pg_fanout_url)
    try:
        alice, bob = channel("user"), channel("user")
        async with fanout.subscribe(alice) as subscription, fanout.subscribe(bob) as bystander:
            payloads = [INLINE + "another" + ORIGIN_END + garbage
                        for garbage in ("", "not base64!", foreign, "ünïcödé", "AAAA", "pAAAA", "c1.2",
                                        "c1.2.x.AAAA", "c1.2.3.not base64!")]
            for payload in [*payloads, SPILLED + "999999999"]:
                await notifier.execute("SELECT pg_notify($1, $2)", pg_channel(alice), payload)
                assert await next_item(subscription) is GAP, payload
            await fanout.publish(alice, "still here")
            assert await next_item(subscription) == "still here"
            await fanout.publish(bob, "for Bob")
            assert await next_item(bystander) == "for Bob"  # and no GAP before it
    finally:
        await notifier.close()
        await fanout.disconnect()


class NoConversations:
    """A receiver that holds no conversation key and finds none: every one is cleared."""

    def cached(self, pair: tuple[int, int]) -> None:
        return None

    async def existing(self, pair: tuple[int, int]) -> None:
        return None


@asynccontextmanager
async def sealed(url: str, database: Database, keyring: Keyring) -> AsyncIterator[Fanout]:
    """A Fanout sealing as a server does, its conversation keys read from the database."""
    fanout = Fanout(url, queue_size=QUEUE_SIZE, probe_interval=PROBE,
                    seal=EnvelopeSeal(keyring, BodyKeys(database, keyring)))
    await fanout.connect()
    try:
        yield fanout
    finally:
        await fanout.disconnect()


@pytest.mark.parametrize("backend", ["postgres", pytest.param("redis", marks=pytest.mark.redis)])
async def test_a_chat_copy_in_transit_is_sealed_under_its_conversations_key_and_dies_with_it(
        backend: str, pg_fanout_url: str, request: pytest.FixtureRequest) -> None:
    """A chat event travels sealed under its conversation's key, short or parked: another
    worker opens it with the key it loads from the database (once: then it holds it), in
    order with what follows. Once a logout destroys the key, a copy still in transit opens for
    no worker that has not held the key, and is no loss to report (no GAP): its message is gone too."""
    url = pg_fanout_url if backend == "postgres" else request.getfixturevalue("redis_url")
    database = await Database.connect(pg_fanout_url, min_size=1, max_size=2)
    try:
        keyring = await datakeys.open_keyring(database, shared_master_key_file())
        async with database.transaction() as conn:
            ids = [await database.fetchval("insert_user", channel("u"), "U", b"x", conn=conn) for _ in range(2)]
        low, high = sorted(ids)
        born, key = await datakeys.conversation_key(database, keyring, low, high)
        conversation = ConversationKey(low, high, born, key)
        inbox, big = channel("user"), "€" * 3000  # parked by PostgreSQL
        async with sealed(url, database, keyring) as here, sealed(url, database, keyring) as there, \
                there.subscribe(inbox) as receiver, raw_copies(url, inbox) as wire:
            await here.publish_batch([Outgoing([inbox], "secret one", conversation), Outgoing([inbox], "plain signal"),
                                      Outgoing([inbox], big + "secret", conversation)])
            assert [await next_item(receiver) for _ in range(3)] == ["secret one", "plain signal", big + "secret"]
            copies = [await wire() for _ in range(3)]
            assert [copy.split(ORIGIN_END, 1)[1][:1] for copy in copies] == ["c", "p", "c"]
            assert not any("secret" in copy or "signal" in copy for copy in copies)
            prefix = f"c{low}.{high}.{conversation.generation}."
            assert copies[0].split(ORIGIN_END, 1)[1].startswith(prefix)

            async with database.transaction() as conn:
                await datakeys.forget_conversation_keys(database, low, conn)
            async with sealed(url, database, keyring) as elsewhere, elsewhere.subscribe(inbox) as late:
                await here.publish_batch([Outgoing([inbox], "said before the logout", conversation),
                                          Outgoing([inbox], "after it")])
                assert await next_item(late) == "after it"  # the cleared one dropped, and no GAP
            # a worker that held the key still delivers it, as it would have a moment earlier;
            # its client then hears `cleared` and drops it with the rest
            assert [await next_item(receiver) for _ in range(2)] == ["said before the logout", "after it"]
    finally:
        await database.close()


@asynccontextmanager
async def raw_copies(url: str, inbox: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """What the transport carries for a channel, as someone reading it would see it: the NOTIFY
    payloads (a parked one fetched from fanout_spill), or the Redis messages."""
    if url.startswith("redis"):
        client = redis.Redis.from_url(url)
        pubsub = client.pubsub()
        await pubsub.subscribe(inbox)
        await pubsub.get_message(timeout=WAIT)  # the confirmation

        async def next_redis() -> str:
            while (message := await pubsub.get_message(timeout=WAIT)) is None:
                pass
            return message["data"].decode()

        try:
            yield next_redis
        finally:
            await pubsub.aclose()
            await client.aclose()
        return
    queue: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(url)
    await listener.add_listener(pg_channel(inbox), lambda *args: queue.put_nowait(args[3]))

    async def next_notify() -> str:
        payload = await asyncio.wait_for(queue.get(), WAIT)
        if payload.startswith(SPILLED):
            return await listener.fetchval("SELECT payload FROM fanout_spill WHERE id = $1", int(payload[1:]))
        return payload[1:]

    try:
        yield next_notify
    finally:
        await listener.close()


async def test_notifications_the_listener_cannot_read_are_gaps_and_later_ones_arrive(pg_fanout_url: str) -> None:
    """A NOTIFY on a channel of ours that is neither an inline message nor the number of a
    parked one (no prefix, nothing at all, a parked 'number' that is not one) is a GAP for
    its subscribers; it never stops the pump, and the next real message still arrives."""
    notifier = await asyncpg.connect(pg_fanout_url)
    try:
        alice = channel("user")
        async with connected(pg_fanout_url) as fanout, fanout.subscribe(alice) as subscription:
            for payload in ("no prefix" + ORIGIN_END + "text", "", SPILLED, SPILLED + "12a", SPILLED + "-1"):
                await notifier.execute("SELECT pg_notify($1, $2)", pg_channel(alice), payload)
                assert await next_item(subscription) is GAP, payload
            await fanout.publish(alice, "still here")
            assert await next_item(subscription) == "still here"
    finally:
        await notifier.close()


async def test_reconnect_attempts_back_off_doubling_and_count_their_failures() -> None:
    """Three failed attempts, then one that works: the pauses between them are at least 0.1,
    0.2 and 0.4 s, so a server that is down is not hammered, and the failures are counted
    for the "restored after" log line. (Only lower bounds: a loaded machine sleeps longer.)"""
    attempts: list[float] = []

    async def attempt() -> None:
        attempts.append(time.monotonic())
        if len(attempts) <= 3:
            raise OSError("connection refused")

    assert await retry_with_backoff(attempt, "test", (OSError,)) == 3
    pauses = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert len(pauses) == 3 and all(pause >= 0.1 * 2 ** n * 0.9 for n, pause in enumerate(pauses)), pauses


async def redis_listen_ids(admin: redis.Redis) -> set[int]:
    return {int(client["id"]) for client in await admin.client_list() if client["name"] == LISTEN_NAME}


@pytest.mark.redis
async def test_redis_pubsub_connection_killed_then_gap_then_delivery(redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    try:
        others = await redis_listen_ids(admin)  # kill only ours: the server is shared
        async with connected(redis_url) as fanout:
            (ours,) = await redis_listen_ids(admin) - others
            alice = channel("user")
            async with fanout.subscribe(alice) as subscription:
                assert await admin.client_kill_filter(_id=ours) == 1
                assert await next_item(subscription) is GAP
                await fanout.publish(alice, "after the outage")
                assert await next_item(subscription) == "after the outage"
            (replacement,) = await redis_listen_ids(admin) - others - {ours}
        await eventually(lambda: no_longer_in(replacement, redis_listen_ids(admin)))
    finally:
        await admin.aclose()


@pytest.fixture(params=["postgres", pytest.param("redis", marks=pytest.mark.redis)])
def server_url(request: pytest.FixtureRequest) -> str:
    """A real server's URL, for the stories that only make sense across a network."""
    return request.getfixturevalue("pg_fanout_url" if request.param == "postgres" else "redis_url")


async def test_a_quiet_healthy_connection_is_not_mistaken_for_an_outage(server_url: str) -> None:
    async with connected(server_url) as fanout:
        quiet = channel("quiet")
        async with fanout.subscribe(quiet) as subscription:
            await asyncio.sleep(PROBE * 5)  # not a timing assertion: lets several probes run
            await fanout.publish(quiet, "still here")
            assert await next_item(subscription) == "still here"  # and not a spurious GAP


async def test_a_connection_that_goes_silent_is_noticed_by_the_probe(server_url: str) -> None:
    opener, via = real_server(server_url)
    link = SilentLink()
    try:
        async with connected(via(await link.start(opener))) as watcher, \
                connected(server_url) as speaker:
            alice = channel("user")
            async with watcher.subscribe(alice) as subscription:
                link.go_silent()  # no FIN, no RST: only the probe can tell
                assert await next_item(subscription) is GAP
                await speaker.publish(alice, "heard again")
                assert await next_item(subscription) == "heard again"
            await link.close()  # else the watcher's pool would wait on a silent socket when closing
    finally:
        await link.close()


async def test_a_publish_to_a_database_gone_silent_fails_instead_of_hanging(pg_fanout_url: str) -> None:
    """A publish whose connection goes silent (no FIN, no RST) gives up after the backend's
    5 s command timeout (asyncpg then waits as long again for the cancellation), so the
    send path that publishes can go on; it does not wait for ever. The 60 s are only how
    long the test waits for that answer (cancelling it would hang too: asyncpg waits for
    the server to confirm a cancelled query)."""
    opener, via = real_server(pg_fanout_url)
    link = SilentLink()
    try:
        async with connected(via(await link.start(opener))) as fanout:
            link.go_silent()
            publishing = asyncio.create_task(fanout.publish(channel("user"), "into the silence"))
            done, _ = await asyncio.wait({publishing}, timeout=60)
            await link.close()  # ends a publish still waiting; else the pool would wait on it when closing
            assert done, "a publish still waited on the silent database after 60 s"
            with pytest.raises(TimeoutError):
                publishing.result()
    finally:
        await link.close()


@pytest.mark.parametrize("url", ["amqp://localhost", "memory", "redis", ""])
def test_an_unknown_scheme_is_refused_at_construction(url: str) -> None:
    """A scheme is only what comes before `://`: a bare word is no URL, even a scheme's name."""
    with pytest.raises(ValueError, match="unsupported fan-out URL scheme"):
        Fanout(url)


@pytest.mark.parametrize(("url", "backend"), [
    ("memory://", "memory"), ("postgres://u@db.example/chat", "postgres"), ("postgresql://u@db.example/chat", "postgres"),
    ("redis://cache.example:6379/0", "redis"), ("rediss://cache.example:6380/0", "redis"),
    ("redis://cache.example/0?note=postgres://elsewhere", "redis")])  # the first scheme counts
def test_each_documented_scheme_picks_its_backend(url: str, backend: str) -> None:
    """Every scheme BROADCAST_URL accepts, aliases included (postgres://, rediss:// for TLS); nothing connects yet."""
    assert Fanout(url).backend_name == backend


async def test_delivering_locally_reaches_only_that_channels_subscribers(fanout: Fanout) -> None:
    """`deliver_locally` (a revocation found by housekeeping) goes to this process's
    subscribers of the channel named, and to no one else."""
    alice, bob = channel("user"), channel("user")
    async with fanout.subscribe(alice) as alices, fanout.subscribe(bob) as bobs:
        fanout.deliver_locally(alice, "for Alice only")
        await fanout.publish(bob, "for Bob")
        assert await next_item(alices) == "for Alice only"
        assert await next_item(bobs) == "for Bob"


async def test_publish_takes_an_already_serialised_string(fanout: Fanout) -> None:
    with pytest.raises(TypeError):
        await fanout.publish(channel("user"), {"type": "message"})  # type: ignore[arg-type]


async def test_the_smallest_queue_holds_exactly_one_message() -> None:
    """queue_size=1 is allowed and means it; zero sizes and probe intervals are refused."""
    for bad in ({"queue_size": 0}, {"probe_interval": 0}):
        with pytest.raises(ValueError, match="must be positive"):
            Fanout("memory://", **bad)
    fanout = Fanout("memory://", queue_size=1)
    await fanout.connect()
    try:
        room = channel("room")
        async with fanout.subscribe(room) as slow:
            await fanout.publish(room, "one")
            assert await next_item(slow) == "one"
            await fanout.publish(room, "two")
            await fanout.publish(room, "three")
            with pytest.raises(SubscriptionOverflow):
                await next_item(slow)
    finally:
        await fanout.disconnect()
