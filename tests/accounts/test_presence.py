"""Who is online, across workers: Alice's tabs on two workers are one Alice; a worker that dies takes hers along.

Bob watches from worker one. Each worker is a real server: two in this process
(each with its own worker id), or one in its own process when it has to die
without a goodbye.
"""

from __future__ import annotations

import asyncio
import os
import signal

import asyncpg

from secure_link.config import Settings

from ..conftest import running_server, server_process
from ..story import Person, Server, Socket, errors_counted, scrape


async def friends_online(alice_server: Server, bob_server: Server) -> tuple[Person, Person, Socket, Socket]:
    """Alice and Bob share a chat; Bob, on his worker, sees Alice's first tab come online."""
    alice, bob = await alice_server.person("alice").register(), await bob_server.person("bob").register()
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "so we share a chat"})
    bob_tab = await bob.connect()
    alice_tab = await alice.connect()
    assert await bob_tab.expect("presence") == {"type": "presence", "user": alice.username, "online": True}
    return alice, bob, alice_tab, bob_tab


async def connections_of(db: asyncpg.Connection, person: Person) -> int:
    """How many sockets the database counts for this person, on any worker."""
    return await db.fetchval("SELECT count(*) FROM live_connections WHERE user_id = $1", person.user["id"])


async def test_a_tab_its_user_closes_is_no_error(server: Server) -> None:
    """Closing a tab is how most sockets end: Bob sees Alice leave, and no refusal is counted for it."""
    alice, _, alice_tab, bob_tab = await friends_online(server, server)
    before = await scrape(server)
    await alice_tab.close()
    assert await bob_tab.expect("presence", skip=()) == {"type": "presence", "user": alice.username, "online": False}
    assert errors_counted(await scrape(server)) == errors_counted(before)


async def test_two_tabs_on_two_workers_count_as_one_user(settings: Settings, db: asyncpg.Connection) -> None:
    async with running_server(settings) as one, running_server(settings) as two:
        alice, bob, alice_here, bob_tab = await friends_online(one, one)
        alice_there = await alice.on(two).connect()
        await alice_here.close()
        while await connections_of(db, alice) != 1:  # worker one has forgotten that tab
            await asyncio.sleep(0.01)
        sent = await alice.say(alice_there, bob, "still here, on the other worker")
        assert (await bob_tab.expect("chat", skip=()))["message"] == sent  # no "offline" came first
        await alice_there.close()
        assert await bob_tab.expect("presence", skip=()) == {"type": "presence", "user": alice.username, "online": False}


async def test_a_dead_workers_users_are_announced_offline(settings: Settings, database_url: str,
                                                          db: asyncpg.Connection) -> None:
    """Worker two is killed outright; worker one's housekeeping sweeps it and tells Bob that Alice left."""
    async with running_server(settings.replace(housekeeping_interval=0.1)) as one, \
            server_process(database_url, database_url, settings) as two:
        alice, _bob, _, bob_tab = await friends_online(two, one)
        os.kill(two.pid, signal.SIGKILL)  # no goodbye: its rows stay until swept
        await db.execute("UPDATE workers SET heartbeat_at = now() - interval '1 hour' "
                         "WHERE id IN (SELECT worker_id FROM live_connections WHERE user_id = $1)", alice.user["id"])
        assert await bob_tab.expect("presence", skip=()) == {"type": "presence", "user": alice.username, "online": False}
        assert await connections_of(db, alice) == 0
