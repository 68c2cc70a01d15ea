"""Login throttling: failed logins counted in PostgreSQL, per username and address and per address.

Mallory guesses phrases, alone or in a burst, under one name or many; Alice and
Carol, behind the same address or elsewhere, still log in. Each attempt is
counted before its phrase is hashed, so a burst is held to the limit, and a
full hashing line turns the rest away at once without counting them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from secure_link.config import Settings

from ..conftest import running_server, settings_for
from ..story import PHRASE, Server, assert_error, eventually, statuses, unique_address, waiting_for_a_lock

LOCAL_PROXY = (ipaddress.ip_network("127.0.0.1/32"),)
LOGIN_FAILURES = 3  # per username and address; ten times that per address


@pytest.fixture(scope="module")
def settings(database_url: str, media_root: Path) -> Settings:
    return settings_for(database_url, media_root, login_failures_per_15_min=LOGIN_FAILURES, trusted_proxies=LOCAL_PROXY)


# ---- a burst of wrong phrases ---------------------------------------------

async def login_burst(server: Server, attempts: list[tuple[str, str, str]]) -> list[httpx.Response]:
    """Every (username, phrase, address) at once, each from its claimed address (a trusted proxy's header)."""
    async with server.client(limits=httpx.Limits(max_connections=200)) as http:
        return await asyncio.gather(*(
            http.post("/api/login/", json={"username": name, "phrase": phrase},
                      headers={"X-Forwarded-For": address})
            for name, phrase, address in attempts))


async def test_a_concurrent_burst_of_wrong_phrases_hashes_at_most_the_limit(
        database_url: str, media_root: Path, db: asyncpg.Connection) -> None:
    """40 wrong phrases at once for Alice: 10 are checked (401), 30 turned away unhashed (429).
    Each reservation waits for its address's lock (held here until they queue on it), so each
    sees every attempt before it: unlocked, a burst's reservations could all see room."""
    settings = settings_for(database_url, media_root, login_failures_per_15_min=10, bcrypt_queue=100,
                            trusted_proxies=LOCAL_PROXY)
    async with running_server(settings) as server:
        alice = await server.person("alice").register()
        holder = await asyncpg.connect(database_url)
        try:
            async with holder.transaction():  # the address's lock, held until the burst queues on it
                await holder.execute("SELECT pg_advisory_xact_lock(7004, hashtext($1))", "203.0.113.7")
                bursting = asyncio.create_task(
                    login_burst(server, [(alice.username, "wrong horse battery staple", "203.0.113.7")] * 40))
                await eventually(lambda: waiting_for_a_lock(db, "SELECT pg_advisory_xact_lock(7004%"))
        finally:
            await holder.close()
        burst = await bursting
        assert statuses(burst) == {401: 10, 429: 30}
        assert all(int(r.headers["Retry-After"]) >= 1 for r in burst if r.status_code == 429)
        counted = await db.fetchval("SELECT count(*) FROM login_failures WHERE username = $1", alice.username)
        assert counted == 10
        # the owner, from elsewhere, is not locked out
        elsewhere = await login_burst(server, [(alice.username, PHRASE, "198.51.100.1")])
        assert elsewhere[0].status_code == 200


async def test_one_address_trying_many_names_at_once_is_held_to_ten_times_the_limit(
        database_url: str, media_root: Path) -> None:
    settings = settings_for(database_url, media_root, login_failures_per_15_min=10, bcrypt_queue=200,
                            trusted_proxies=LOCAL_PROXY)
    async with running_server(settings) as server:
        names = [f"nobody_{uuid.uuid4().hex[:8]}" for _ in range(150)]
        burst = await login_burst(server, [(name, PHRASE, "203.0.113.8") for name in names])
        assert statuses(burst) == {401: 100, 429: 50}


async def test_a_full_hashing_line_turns_logins_away_at_once_and_they_do_not_count(
        database_url: str, media_root: Path, db: asyncpg.Connection) -> None:
    """One bcrypt slot and one place in line: the rest of a burst gets 503 `busy` at once."""
    settings = settings_for(database_url, media_root, bcrypt_rounds=10, bcrypt_concurrency=1, bcrypt_queue=1,
                            login_failures_per_15_min=10, trusted_proxies=LOCAL_PROXY)
    async with running_server(settings) as server:
        names = [f"flood_{uuid.uuid4().hex[:8]}" for _ in range(8)]
        burst = await login_burst(server, [(name, PHRASE, f"203.0.113.{n}") for n, name in enumerate(names)])
        counts = statuses(burst)
        assert set(counts) <= {401, 503} and counts.get(503, 0) >= 1, counts
        for response in burst:
            if response.status_code == 503:
                assert_error(response, 503, "busy")
                assert int(response.headers["Retry-After"]) >= 1
        counted = await db.fetchval("SELECT count(*) FROM login_failures WHERE username = ANY($1::text[])", names)
        assert counted == counts[401]


# ---- one at a time, as people and scripts try ------------------------------

async def test_failed_logins_are_throttled_per_username_and_address(server: Server, db: asyncpg.Connection) -> None:
    alice = await server.person("alice").register()
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    owner = {"X-Forwarded-For": "198.51.100.7"}
    async with server.client() as http:
        malformed = await http.post("/api/login/", json={"username": alice.username}, headers=attacker)
        assert_error(malformed, 422, "invalid_input", "phrase")  # does not count
        for _ in range(3):
            wrong = await http.post("/api/login/", json={"username": alice.username, "phrase": "wrong phrase here ok"}, headers=attacker)
            assert_error(wrong, 401, "invalid_credentials")
        blocked = await http.post("/api/login/", json={"username": alice.username, "phrase": PHRASE}, headers=attacker)
        from_home = await http.post("/api/login/", json={"username": alice.username, "phrase": PHRASE}, headers=owner)
    assert_error(blocked, 429, "rate_limited")
    assert 1 <= int(blocked.headers["retry-after"]) <= 900
    assert from_home.status_code == 200
    assert await db.fetchval("SELECT count(*) FROM login_failures WHERE address = '203.0.113.9'") == 3


async def log_in(client: httpx.AsyncClient, username: str, phrase: str, address: dict[str, str]) -> httpx.Response:
    """One login attempt from `address`."""
    return await client.post("/api/login/", json={"username": username, "phrase": phrase}, headers=address)


async def test_failures_against_one_name_do_not_lock_out_another(server: Server) -> None:
    """Mallory guesses Alice's phrase from a shared address; Carol, behind the same address, still logs in."""
    alice, carol = await server.person("alice").register(), await server.person("carol").register()
    shared = unique_address()
    async with server.client() as http:
        for _ in range(3):
            assert_error(await log_in(http, alice.username, "wrong phrase here ok", shared), 401, "invalid_credentials")
        assert_error(await log_in(http, alice.username, PHRASE, shared), 429, "rate_limited")
        assert (await log_in(http, carol.username, PHRASE, shared)).status_code == 200


async def test_a_successful_login_forgives_earlier_failures(server: Server) -> None:
    alice = await server.person("alice").register()
    home = unique_address()
    async with server.client() as http:
        for _ in range(2):
            for _ in range(2):
                assert_error(await log_in(http, alice.username, "typo typo typo typo", home), 401, "invalid_credentials")
            assert (await log_in(http, alice.username, PHRASE, home)).status_code == 200


async def test_a_limit_of_one_login_failure_is_a_limit_not_off(database_url: str, media_root: Path) -> None:
    """LOGIN_FAILURES_PER_15_MIN=1: one wrong phrase, and even the right one must wait (only 0 turns it off)."""
    settings = settings_for(database_url, media_root, login_failures_per_15_min=1,
                            trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    async with running_server(settings) as server:
        alice = await server.person("alice").register()
        home = unique_address()
        async with server.client() as http:
            assert_error(await log_in(http, alice.username, "typo typo typo typo", home), 401, "invalid_credentials")
            assert_error(await log_in(http, alice.username, PHRASE, home), 429, "rate_limited")


async def test_one_address_may_fail_ten_times_the_limit_across_names(server: Server) -> None:
    """Three failures per name, thirty per address: a spray over many names is stopped at the 30th."""
    carol = await server.person("carol").register()
    spray, elsewhere = unique_address(), unique_address()
    async with server.client() as http:
        for i in range(29):
            assert_error(await log_in(http, f"nobody_{i // 2}_{uuid.uuid4().hex[:4]}", "guess guess guess", spray),
                         401, "invalid_credentials")
        assert (await log_in(http, carol.username, PHRASE, spray)).status_code == 200
        assert_error(await log_in(http, "nobody_last", "guess guess guess", spray), 401, "invalid_credentials")
        assert_error(await log_in(http, carol.username, PHRASE, spray), 429, "rate_limited")
        assert (await log_in(http, carol.username, PHRASE, elsewhere)).status_code == 200
