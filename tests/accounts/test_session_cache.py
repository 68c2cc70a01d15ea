"""REST without a session query per request (issue 28), and revocation still immediate everywhere.

Alice uses one session on two workers, so both hold it in their cache of validated
sessions. However it ends (revoked from another device, logged out, her phrase
changed, the operator suspending or deleting her from another process), her next
request is refused on both at once: every end is published on one fan-out channel
that every worker hears. A worker that may have missed one (a fan-out gap) forgets
every session it held, and none is trusted longer than its maximum age.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from secure_link.accounts import SessionCache, User, user_for_token
from secure_link.accounts.sessions import CACHE_MAX_AGE_S
from secure_link.config import Settings
from secure_link.db import Database
from secure_link.fanout import GAP, Fanout

from ..conftest import listen_outage, run_cli, running_server
from ..story import PHRASE, Person, Server, assert_error, channel, next_item

TTL = 3600


@pytest.fixture(scope="module")
async def other(settings: Settings) -> AsyncIterator[Server]:
    """A second worker on the module's database, its fan-out PostgreSQL's as the first's."""
    async with running_server(settings) as server:
        yield server


async def profile_status(person: Person, token: str | None = None) -> int:
    return (await person.api("GET", "/api/user-profile/", token=token)).status_code


async def cached_on_both(alice: Person, other: Server, token: str | None = None) -> None:
    """The session served once by each worker: each holds it in its cache now."""
    assert await profile_status(alice, token) == 200
    assert await profile_status(alice.on(other), token) == 200


async def refused_on_both(alice: Person, other: Server, token: str | None = None) -> None:
    for person in (alice, alice.on(other)):
        assert_error(await person.api("GET", "/api/user-profile/", token=token), 401, "unauthenticated")


async def session_id_of(alice: Person, current: bool) -> int:
    sessions = (await alice.api("GET", "/api/sessions/")).json()["sessions"]
    return next(session["id"] for session in sessions if session["current"] is current)


async def test_a_session_revoked_on_one_worker_is_refused_on_the_other_at_once(server: Server, other: Server) -> None:
    alice = await server.person("alice").register()
    phone = await alice.login()
    await cached_on_both(alice, other, phone)
    phone_id = await session_id_of(alice, current=False)
    assert (await alice.api("DELETE", f"/api/sessions/{phone_id}")).status_code == 200
    await refused_on_both(alice, other, phone)
    await cached_on_both(alice, other)  # her other session stays, validated again


async def test_a_logout_is_refused_on_the_other_worker_at_once(server: Server, other: Server) -> None:
    alice = await server.person("alice").register()
    phone = await alice.login()
    await cached_on_both(alice, other, phone)
    assert (await alice.api("POST", "/api/logout/", token=phone)).status_code == 200
    await refused_on_both(alice, other, phone)


async def test_a_new_phrase_ends_the_other_sessions_on_every_worker_at_once(server: Server, other: Server) -> None:
    alice = await server.person("alice").register()
    laptop = await alice.login()
    await cached_on_both(alice, other, laptop)
    await cached_on_both(alice, other)
    changed = await alice.on(other).api("POST", "/api/change-phrase/",
                                        json={"phrase": PHRASE, "new_phrase": "a brand new secret phrase"})
    assert changed.status_code == 200
    await refused_on_both(alice, other, laptop)
    await cached_on_both(alice, other)  # the session that changed it stays


def operator_env(server: Server) -> dict[str, str]:
    return {"DATABASE_URL": server.settings.database_url or ""}


@pytest.mark.parametrize("command", [("users", "suspend"), ("users", "delete")])
async def test_the_operators_commands_from_another_process_end_cached_sessions_at_once(
        server: Server, other: Server, command: tuple[str, str]) -> None:
    alice = await server.person("alice").register()
    await cached_on_both(alice, other)
    code, _, err = await run_cli(*command, alice.username, *(["--yes"] if command[1] == "delete" else []),
                                 **operator_env(server))
    assert code == 0, err
    await refused_on_both(alice, other)


# ---- the cache itself, over the real database: a clock the test moves, no waiting ------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Database]:
    database = await Database.connect(database_url, min_size=1, max_size=2)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def memory_fanout() -> AsyncIterator[Fanout]:
    fanout = Fanout("memory://")
    await fanout.connect()
    try:
        yield fanout
    finally:
        await fanout.disconnect()


async def test_a_cached_session_needs_no_query_until_its_max_age(
        server: Server, pool: Database, db: asyncpg.Connection, memory_fanout: Fanout) -> None:
    alice = await server.person("alice").register()
    clock = Clock()
    cache = SessionCache(16, clock=clock)
    async with cache.hearing(memory_fanout):
        user = await user_for_token(pool, TTL, alice.token, cache)
        assert user is not None and user.username == alice.username
        await db.execute("DELETE FROM sessions WHERE id = $1", user.session_id)  # behind the cache's back
        assert await user_for_token(pool, TTL, alice.token) is None  # the database says no...
        clock.now += CACHE_MAX_AGE_S - 0.01
        assert await user_for_token(pool, TTL, alice.token, cache) == user  # ...but was not asked
        clock.now += 0.01
        assert await user_for_token(pool, TTL, alice.token, cache) is None  # past the max age it is


async def test_the_expiry_still_slides_once_per_max_age_through_the_database(
        server: Server, pool: Database, db: asyncpg.Connection, memory_fanout: Fanout) -> None:
    alice = await server.person("alice").register()
    clock = Clock()
    cache = SessionCache(16, clock=clock)
    async with cache.hearing(memory_fanout):
        user = await user_for_token(pool, TTL, alice.token, cache)
        assert user is not None
        idle = ("UPDATE sessions SET last_used_at = now() - interval '2 minutes', "
                "expires_at = now() + interval '10 minutes' WHERE id = $1 RETURNING expires_at")
        before = await db.fetchval(idle, user.session_id)
        await user_for_token(pool, TTL, alice.token, cache)  # a hit: the database is not touched
        assert await db.fetchval("SELECT expires_at FROM sessions WHERE id = $1", user.session_id) == before
        clock.now += CACHE_MAX_AGE_S
        await user_for_token(pool, TTL, alice.token, cache)  # revalidated: slid as before the cache
        assert await db.fetchval("SELECT expires_at FROM sessions WHERE id = $1", user.session_id) > before


async def test_only_sessions_the_database_accepted_are_kept(
        server: Server, pool: Database, memory_fanout: Fanout) -> None:
    alice = await server.person("alice").register()
    cache = SessionCache(16)
    assert await user_for_token(pool, TTL, alice.token, cache) is not None
    assert len(cache) == 0  # not before the worker hears session endings
    async with cache.hearing(memory_fanout):
        for _ in range(50):  # a flood of random tokens pushes nothing out
            assert await user_for_token(pool, TTL, secrets.token_urlsafe(32), cache) is None
        assert await user_for_token(pool, TTL, alice.token, cache) is not None
        assert len(cache) == 1
    assert len(cache) == 0  # nor after: nobody tells it of endings any more
    assert await user_for_token(pool, TTL, alice.token, cache) is not None and len(cache) == 0


async def test_a_fan_out_gap_drops_every_cached_session(
        server: Server, pool: Database, db: asyncpg.Connection, database_url: str, pg_server_url: str) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    fanout = Fanout(database_url)  # PostgreSQL's LISTEN/NOTIFY, as the workers'
    await fanout.connect()
    cache = SessionCache(16, max_age=3600.0)
    try:
        async with cache.hearing(fanout), fanout.subscribe(channel("probe")) as probe:
            users = [await user_for_token(pool, TTL, person.token, cache) for person in (alice, bob)]
            assert len(cache) == 2
            await db.execute("DELETE FROM sessions WHERE id = $1", users[0].session_id)  # its ending unheard
            assert await user_for_token(pool, TTL, alice.token, cache) == users[0]
            async with listen_outage(pg_server_url, database_url):
                pass
            assert await next_item(probe) is GAP  # the reconnect: endings may have been missed
            assert len(cache) == 0
            assert await user_for_token(pool, TTL, alice.token, cache) is None
    finally:
        await fanout.disconnect()


def a_user(user_id: int, session_id: int) -> User:
    return User(user_id, f"user{user_id}", "User", None, datetime.datetime.now(datetime.UTC), session_id)


async def test_the_cache_is_bounded_least_recently_used_out_first(memory_fanout: Fanout) -> None:
    cache = SessionCache(2)
    async with cache.hearing(memory_fanout):
        for key, user_id in ((b"a", 1), (b"b", 2)):
            cache.put(key, a_user(user_id, user_id), cache.epoch)
        assert cache.get(b"a") is not None
        cache.put(b"c", a_user(3, 3), cache.epoch)
        assert [cache.get(key) is not None for key in (b"a", b"b", b"c")] == [True, False, True]


async def test_a_validation_that_began_before_an_ending_is_not_kept(memory_fanout: Fanout) -> None:
    """A request's query may read the session just before another request ends it: the ending is
    heard while the query runs, and what the query read must not outlive it in the cache."""
    cache = SessionCache(16)
    async with cache.hearing(memory_fanout):
        began = cache.epoch
        cache.heard("7")  # the user's sessions ended meanwhile
        cache.put(b"a", a_user(7, 70), began)
        assert cache.get(b"a") is None
        cache.put(b"a", a_user(7, 71), cache.epoch)  # validated after: kept
        assert cache.get(b"a") is not None
        cache.heard("8")  # someone else's: hers stay
        assert cache.get(b"a") is not None
        cache.heard("7")
        assert cache.get(b"a") is None
