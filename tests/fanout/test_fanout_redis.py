"""The Redis fan-out backend on a Redis of its own: what test_fanout.py's shared stories cannot show.

Each test starts a private redis-server on a free port: these stories silence,
freeze and count the connections of their server, and channel names on the
machine's Redis would be heard by other tests. Waits are generous timeouts on
events; the only long waits are the backend's own COMMAND_TIMEOUT (5 s), which
the outage stories must sit out once each.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError

from secure_link.fanout import GAP, Fanout
from secure_link.fanout.backends.base import LISTEN_NAME, described

from ..conftest import free_port, private_redis, wait_for_redis
from ..story import PROBE, WAIT, SilentLink, channel, eventually, next_item, real_server

PUBLISH_CONNECTIONS = 8  # fanout_redis.py's bound on one worker's publishing connections
DEAF = 60.0  # a probe interval no story outlasts: only the failed command itself can notice


@dataclass
class PrivateRedis:
    """A redis-server of this test's own, and an admin connection to look at it from outside."""

    url: str
    process: subprocess.Popen
    admin: redis.Redis

    async def our_clients(self) -> list[dict[str, str]]:
        """Every connection but the admin's own."""
        admin_id = await self.admin.client_id()
        return [client for client in await self.admin.client_list() if int(client["id"]) != admin_id]

    async def subscribers(self, name: str) -> int:
        ((_, count),) = await self.admin.pubsub_numsub(name)
        return count

    async def unsubscribed(self, name: str) -> bool:
        return await self.subscribers(name) == 0

    async def deserted(self) -> bool:
        return await self.our_clients() == []

    async def listener_unsubscribed(self) -> bool:
        """The listening connection's last command was UNSUBSCRIBE (CLIENT LIST's `cmd`)."""
        return any(c["name"] == LISTEN_NAME and c["cmd"] == "unsubscribe" for c in await self.our_clients())

    async def listener_pinged(self) -> bool:
        """The listening connection's last command was a probe's PING (CLIENT LIST's `cmd`)."""
        return any(c["name"] == LISTEN_NAME and c["cmd"] == "ping" for c in await self.our_clients())


@pytest.fixture
async def server(redis_binary: str) -> AsyncIterator[PrivateRedis]:
    """One per test: the stories freeze it, change its ACL and count its clients."""
    port = free_port()
    with private_redis(redis_binary, port) as process:
        await wait_for_redis(port)
        admin = redis.Redis(port=port)
        try:
            yield PrivateRedis(f"redis://127.0.0.1:{port}/0", process, admin)
        finally:
            await admin.aclose()


@asynccontextmanager
async def connected(url: str, probe_interval: float = PROBE) -> AsyncIterator[Fanout]:
    """A connected Fanout, always disconnected; `probe_interval=DEAF` leaves outages to the commands."""
    fanout = Fanout(url, probe_interval=probe_interval)
    await fanout.connect()
    try:
        yield fanout
    finally:
        await fanout.disconnect()


async def settles(task: asyncio.Task[object]) -> None:
    """The task ends, one way or the other, within WAIT: it does not wait on the outage."""
    await asyncio.wait({task}, timeout=WAIT)
    if not task.done():
        task.cancel()  # else the Fanout's disconnect would wait behind it for the lock
        raise AssertionError("still waiting on a Redis that does not answer")


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the fan-out warned about: outages must be logged with their cause."""
    return [r.getMessage() for r in caplog.records if r.name == "secure_link.fanout" and r.levelno == logging.WARNING]


async def refused_logged(caplog: pytest.LogCaptureFixture) -> bool:
    """A reconnect attempt was logged as failed, naming the transport and the error."""
    return any("redis" in m.lower() and "ConnectionError" in m and "retrying" in m for m in warnings_from(caplog))


async def test_a_channel_left_is_unsubscribed_and_stays_so_after_a_reconnect(server: PrivateRedis) -> None:
    """A worker that kept a left channel would go on receiving (and dropping) its messages, and
    re-subscribe it at every reconnect: every session channel of every logout, forever."""
    async with connected(server.url) as fanout:
        staying, leaving = channel("user"), channel("session")
        async with fanout.subscribe(staying) as subscription:
            async with fanout.subscribe(leaving):
                assert await server.subscribers(leaving) == 1
            await eventually(lambda: server.unsubscribed(leaving))  # UNSUBSCRIBE is not awaited
            assert await server.admin.client_kill_filter(_type="pubsub") == 1  # the listening connection
            assert await next_item(subscription) is GAP  # reconnected: its channels SUBSCRIBEd again
            assert (await server.subscribers(staying), await server.subscribers(leaving)) == (1, 0)
            # nothing kept per channel either (its confirmation waiters): a server sees a new session channel per login
            assert fanout._backend._confirmations == {}


async def test_bytes_that_are_not_utf8_arrive_replaced_and_cost_no_gap(server: PrivateRedis) -> None:
    """Any client of the Redis may publish on a channel, in any bytes: the reader must not
    die of them, which would cost every subscriber of the worker a GAP and a re-sync."""
    async with connected(server.url) as fanout:
        alice = channel("user")
        async with fanout.subscribe(alice) as subscription:
            await server.admin.publish(alice, b"|caf\xe9")  # Latin-1, after an empty origin tag
            await fanout.publish(alice, "still here")
            assert [await next_item(subscription), await next_item(subscription)] == ["caf\ufffd", "still here"]


async def test_a_subscribe_cancelled_while_waiting_for_its_confirmation_disturbs_no_one(
        server: PrivateRedis) -> None:
    """A socket closes while its SUBSCRIBE waits for Redis (frozen here, so the wait is sure):
    the confirmation then comes for no one, and must be ignored, not break the listening
    connection under every other subscriber of the worker."""
    async with connected(server.url, DEAF) as fanout:  # the probe would take the freeze for an outage
        alice, bob = channel("user"), channel("user")
        async with fanout.subscribe(alice) as alices:
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                closing = asyncio.create_task(fanout.subscribe(bob).__aenter__())
                await asyncio.sleep(0.2)  # it has sent SUBSCRIBE and waits for the confirmation
                closing.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await closing
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            await eventually(server.listener_unsubscribed)  # Redis has answered SUBSCRIBE, then the roll-back's UNSUBSCRIBE
            await fanout.publish(alice, "still here")
            assert await next_item(alices) == "still here"  # not GAP


async def test_disconnect_closes_every_connection_and_is_safe_at_any_time(server: PrivateRedis) -> None:
    """A worker that exits or reloads must not leave connections counting against Redis's
    maxclients. A shutdown path may also run after a start-up that failed before connect(),
    or run twice: disconnect() is then harmless, as the PostgreSQL backend's is."""
    await Fanout(server.url).disconnect()  # never connected
    fanout = Fanout(server.url, probe_interval=PROBE)
    await fanout.connect()
    room = channel("room")
    async with fanout.subscribe(room) as subscription:
        await fanout.publish(room, "opens a publishing connection")
        assert await next_item(subscription) == "opens a publishing connection"
    assert len(await server.our_clients()) == 2  # the listening one and the publishing one
    await fanout.disconnect()
    await eventually(server.deserted)
    await fanout.disconnect()


async def test_a_burst_of_publishes_shares_a_bounded_set_of_connections(server: PrivateRedis) -> None:
    """Every worker of every host publishes to one Redis: a burst must queue for the pool's
    connections, not open one each (Redis refuses clients past maxclients, 10,000). The probe
    is not this story's subject: at 0.2 s a loaded machine can miss a PING reply, and the
    reconnect would lose part of the burst (told as a GAP)."""
    async with connected(server.url, probe_interval=DEAF) as fanout:
        room = channel("room")
        async with fanout.subscribe(room) as subscription:
            await asyncio.gather(*(fanout.publish(room, f"m{n}") for n in range(50)))
            assert sorted([await next_item(subscription) for _ in range(50)]) == sorted(f"m{n}" for n in range(50))
        publishing = [c for c in await server.our_clients() if c["name"] != LISTEN_NAME]
        assert len(publishing) == PUBLISH_CONNECTIONS  # the burst used them all, and no more


async def test_commands_lost_in_a_silent_connection_give_up_and_go_on_afresh(
        server: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    """The path to Redis goes silent (a half-open connection: no FIN, no RST, no reply). A
    subscribe waits COMMAND_TIMEOUT for its confirmation, then has the listening connection
    replaced, so its subscribers hear GAP; a publish times out and is retried over a fresh
    connection. The probe is made too slow to help: the commands must notice on their own."""
    opener, via = real_server(server.url)
    link = SilentLink()
    try:
        async with connected(via(await link.start(opener)), probe_interval=DEAF) as here, \
                connected(server.url) as there:
            alice, bob, carol = channel("user"), channel("user"), channel("user")
            async with here.subscribe(alice) as alices, there.subscribe(carol) as carols:
                await here.publish(carol, "before")  # opens here's publishing connection before the silence
                assert await next_item(carols) == "before"
                link.go_silent()
                joining = asyncio.create_task(here.subscribe(bob).__aenter__())
                await asyncio.wait_for(here.publish(carol, "through the silence"), WAIT)
                assert await next_item(carols) == "through the silence"
                await settles(joining)
                bobs = joining.result()
                assert await next_item(alices) is GAP
                assert await next_item(bobs) is GAP
                await there.publish(bob, "welcome")
                assert await next_item(bobs) == "welcome"
                await bobs.__aexit__(None, None, None)
            await link.close()  # the silent sockets are closed under the Fanout, not waited on
    finally:
        await link.close()
    failed = warnings_from(caplog)
    assert any("subscribe" in message.lower() and "TimeoutError" in message for message in failed), failed


async def test_a_publish_tries_three_connections_then_fails(server: PrivateRedis) -> None:
    """Redis (or the proxy before it) hangs up on every new connection: a publish retries
    twice, then fails, instead of giving up at once on a blip or hammering Redis without end."""
    hang_ups = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hang_ups
        hang_ups += 1
        writer.close()

    gone = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    opener, via = real_server(server.url)
    target = [opener]
    link = SilentLink()  # never silenced here: it only lets the story change where new connections go
    try:
        async with connected(via(await link.start(lambda: target[0]()))) as fanout:  # listening: to Redis
            target[0] = lambda: asyncio.open_connection("127.0.0.1", gone.sockets[0].getsockname()[1])
            with pytest.raises(RedisConnectionError):
                await fanout.publish(channel("room"), "to nowhere")
            assert hang_ups == 3
    finally:
        await link.close()
        gone.close()


async def test_a_publish_queued_behind_stuck_connections_gives_up(server: PrivateRedis) -> None:
    """A frozen Redis (SIGSTOP: a hung host) keeps connections open and answers nothing. The
    pool's eight connections are then stuck for several COMMAND_TIMEOUTs (each retries); a
    ninth publish must give up waiting for one after COMMAND_TIMEOUT, so a send that
    publishes fails within seconds instead of queueing behind them for as long as Redis is away."""
    async with connected(server.url) as fanout:
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            stuck = [asyncio.create_task(fanout.publish(channel("room"), "m")) for _ in range(PUBLISH_CONNECTIONS)]
            queued = asyncio.create_task(fanout.publish(channel("room"), "waits for a connection"))
            await settles(queued)
            assert isinstance(queued.exception(), RedisConnectionError)  # no connection came free in time
            assert not any(task.done() for task in stuck)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        await asyncio.wait_for(asyncio.gather(*stuck, return_exceptions=True), WAIT)


async def test_a_worker_with_no_subscriber_yet_still_watches_its_connection(server: PrivateRedis) -> None:
    """A worker starts before any socket subscribes: nothing has come over its connection when
    the first probe runs, and the supervisor must survive that to notice a later outage."""
    async with connected(server.url) as fanout:
        await eventually(server.listener_pinged)
        async with fanout.subscribe(channel("user")) as subscription:
            assert await server.admin.client_kill_filter(_type="pubsub") == 1
            assert await next_item(subscription) is GAP


async def test_a_reconnect_whose_subscribe_is_refused_retries_says_why_then_sends_one_gap(
        server: PrivateRedis, caplog: pytest.LogCaptureFixture) -> None:
    """Redis may refuse the re-SUBSCRIBE after a reconnect (here an ACL took the channels away).
    Until it accepts, the connection is not restored: no GAP yet, since nothing is heard and
    a re-sync would miss what comes next; the loss and each failed attempt are logged with
    their error. Once Redis accepts, one GAP, then messages."""
    async with connected(server.url) as fanout:
        alice = channel("user")
        async with fanout.subscribe(alice) as subscription:
            await server.admin.execute_command("ACL", "SETUSER", "default", "resetchannels")
            await server.admin.client_kill_filter(_type="pubsub")  # unless the ACL change already did
            await eventually(lambda: refused_logged(caplog))
            await server.admin.execute_command("ACL", "SETUSER", "default", "allchannels")
            assert await next_item(subscription) is GAP
            await fanout.publish(alice, "heard again")
            assert await next_item(subscription) == "heard again"  # and not a GAP for each refusal
    lost = [m for m in warnings_from(caplog) if "lost" in m]
    assert any("ConnectionError" in m for m in lost), lost  # why the connection was lost



def test_a_logged_redis_error_says_what_happened_not_only_its_type() -> None:
    """redis-py 8's repr of its errors is only their type (`network:ConnectionError`); the
    fan-out's warnings say the message too, or an operator learns nothing from them."""
    refused = RedisConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")
    assert described(refused) == "ConnectionError: Error 111 connecting to 127.0.0.1:6390. Connection refused."
