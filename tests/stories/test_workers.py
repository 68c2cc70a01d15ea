"""Two server processes share one database: Alice on one, Bob on the other.

Each process is a real `python -m secure_link serve`, started on a free port
and stopped by its PID. The fan-out between them is PostgreSQL LISTEN/NOTIFY
or Redis; both are cut mid-conversation and nobody may lose a message.
"""

from __future__ import annotations

import pytest

from secure_link.config import Settings

from ..conftest import free_port, listen_outage, private_redis, server_process, stop_process, wait_for_redis
from ..story import Person, Server, Socket, converse, hear_until_live


async def pair(a: Server, b: Server) -> tuple[Person, Socket, Person, Socket]:
    """Alice on worker a, Bob on worker b, each with a socket open."""
    alice, bob = await a.person("alice").register(), await b.person("bob").register()
    return alice, await alice.connect(), bob, await bob.connect()


@pytest.mark.parametrize("backend", ["postgres", pytest.param("redis", marks=pytest.mark.redis)])
async def test_messages_cross_workers(backend: str, database_url: str, settings: Settings,
                                      request: pytest.FixtureRequest) -> None:
    broadcast = database_url if backend == "postgres" else request.getfixturevalue("redis_url")
    async with server_process(database_url, broadcast, settings) as one, \
            server_process(database_url, broadcast, settings) as two:
        alice, alice_tab, bob, bob_tab = await pair(one, two)
        await converse(alice, alice_tab, bob, bob_tab, "from worker one")
        await converse(bob, bob_tab, alice, alice_tab, "and back from two")
        alice_phone = await alice.on(two).connect()  # her second tab, on Bob's worker
        sent = await alice.say(alice_tab, bob, "both tabs")
        assert (await alice_phone.expect("chat", timeout=10))["message"] == sent


async def test_killing_the_listen_connection_loses_nothing(pg_server_url: str, database_url: str,
                                                           settings: Settings) -> None:
    async with server_process(database_url, database_url, settings) as one, \
            server_process(database_url, database_url, settings) as two:
        alice, alice_tab, bob, bob_tab = await pair(one, two)
        await converse(alice, alice_tab, bob, bob_tab, "before the cut")
        async with listen_outage(pg_server_url, database_url):
            during = [(await alice.say(alice_tab, bob, f"during {i}"))["id"] for i in range(5)]
        assert set(during) <= await hear_until_live(alice, alice_tab, bob, bob_tab)  # Bob never syncs


@pytest.mark.redis
async def test_restarting_redis_loses_nothing(database_url: str, settings: Settings, redis_binary: str) -> None:
    port = free_port()
    broadcast = f"redis://127.0.0.1:{port}/0"
    with private_redis(redis_binary, port) as first_redis:
        await wait_for_redis(port)
        async with server_process(database_url, broadcast, settings) as one, \
                server_process(database_url, broadcast, settings) as two:
            alice, alice_tab, bob, bob_tab = await pair(one, two)
            await converse(alice, alice_tab, bob, bob_tab, "before the restart")
            stop_process(first_redis)
            during = [(await alice.say(alice_tab, bob, f"while redis is down {i}"))["id"] for i in range(3)]
            with private_redis(redis_binary, port):
                await wait_for_redis(port)
                assert set(during) <= await hear_until_live(alice, alice_tab, bob, bob_tab)  # Bob never syncs
