"""The fan-out goes down mid-conversation; Bob's sockets alone must make up for it.

Bob never sends `sync` here. While PostgreSQL's LISTEN connection (or Redis)
is away, Alice keeps writing and Bob revokes his tablet's session; both the
messages and the revocation are lost live. When the fan-out comes back, Bob's
phone must replay what it missed and his tablet must close with 4401. Alice
and Bob are on two workers: a worker hands its own sockets their messages
without the transport, so only a message that crosses workers can be lost.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from secure_link.config import Settings

from ..conftest import free_port, listen_outage, private_redis, running_server, stop_process, wait_for_redis
from ..story import Server, converse, hear_until_live, sync

Outage = Callable[[], contextlib.AbstractAsyncContextManager[None]]
Workers = tuple[Server, Server, Outage]


@contextlib.asynccontextmanager
async def redis_fanout(redis_binary: str, settings: Settings) -> AsyncIterator[Workers]:
    """Two workers whose fan-out is a private Redis, and a way to stop that Redis for a while."""
    port = free_port()
    with contextlib.ExitStack() as redises:
        first = redises.enter_context(private_redis(redis_binary, port))
        await wait_for_redis(port)

        @contextlib.asynccontextmanager
        async def outage() -> AsyncIterator[None]:
            stop_process(first)
            yield
            redises.enter_context(private_redis(redis_binary, port))
            await wait_for_redis(port)

        shared = settings.replace(broadcast_url=f"redis://127.0.0.1:{port}/0")
        async with running_server(shared) as alices, running_server(shared) as bobs:
            yield alices, bobs, outage


@pytest.fixture(params=["postgres", pytest.param("redis", marks=pytest.mark.redis)])
async def fanout(request: pytest.FixtureRequest, pg_server_url: str, database_url: str,
                 settings: Settings) -> AsyncIterator[Workers]:
    """Two fresh workers on the chosen fan-out (Alice's and Bob's), and the outage that cuts it."""
    if request.param == "redis":
        async with redis_fanout(request.getfixturevalue("redis_binary"), settings) as pair:
            yield pair
        return
    shared = settings.replace(broadcast_url=database_url)
    async with running_server(shared) as alices, running_server(shared) as bobs:
        yield alices, bobs, lambda: listen_outage(pg_server_url, database_url)


async def test_a_socket_that_never_syncs_still_gets_what_the_outage_dropped(
        fanout: Workers) -> None:
    alices, bobs, outage = fanout
    alice, bob = await alices.person("alice").register(), await bobs.person("bob").register()
    alice_tab = await alice.connect()
    earlier = await alice.say(alice_tab, bob, "before Bob's phone opened")  # his sync's to fetch, not the catch-up's
    bob_phone = await bob.connect()
    await converse(alice, alice_tab, bob, bob_phone, "before the outage")
    async with outage():
        during = [(await alice.say(alice_tab, bob, f"during {i}"))["id"] for i in range(5)]
    heard = await hear_until_live(alice, alice_tab, bob, bob_phone)
    assert set(during) <= heard
    assert earlier["id"] not in heard  # the catch-up starts from what the socket had when it opened


async def test_a_session_revoked_during_the_outage_is_closed_when_it_ends(
        fanout: Workers) -> None:
    alices, bobs, outage = fanout
    alice, bob = await alices.person("alice").register(), await bobs.person("bob").register()
    tablet_token = await bob.login()
    alice_tab, bob_phone, bob_tablet = await alice.connect(), await bob.connect(), await bob.connect(token=tablet_token)
    await converse(alice, alice_tab, bob, bob_tablet, "before the outage")
    sessions = (await bob.api("GET", "/api/sessions/")).json()["sessions"]
    tablet_id = next(s["id"] for s in sessions if not s["current"])
    async with outage():
        assert (await bob.api("DELETE", f"/api/sessions/{tablet_id}")).status_code == 200
    await hear_until_live(alice, alice_tab, bob, bob_phone)
    assert await bob_tablet.closed_with() == 4401


async def test_a_sync_before_the_outage_does_not_stop_the_catch_up(fanout: Workers) -> None:
    """Bob syncs once on connecting, as clients do; the socket's catch-up must go on from there."""
    alices, bobs, outage = fanout
    alice, bob = await alices.person("alice").register(), await bobs.person("bob").register()
    alice_tab, bob_phone = await alice.connect(), await bob.connect()
    await converse(alice, alice_tab, bob, bob_phone, "before the outage")
    await sync(bob_phone, 0)
    async with outage():
        during = [(await alice.say(alice_tab, bob, f"during {i}"))["id"] for i in range(3)]
    assert set(during) <= await hear_until_live(alice, alice_tab, bob, bob_phone)
