"""Rate limits on by default: Mallory floods, is told to slow down, then is cut off."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from secure_link.config import Settings
from secure_link.sockets import STRIKES_BEFORE_CLOSE

from .conftest import running_server, settings_for
from .story import PHRASE, Person, Server, assert_error, unique_address

RATE = 5  # per second, bursts of 10
LOGIN_FAILURES = 3  # per username and address; ten times that per address


@pytest.fixture(scope="module")
def settings(database_url: str, media_root: Path) -> Settings:
    return settings_for(database_url, media_root, chat_rate_per_s=RATE, login_failures_per_15_min=LOGIN_FAILURES,
                        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))


async def test_the_socket_closes_at_the_first_refusal_past_the_twentieth(database_url: str, media_root: Path) -> None:
    """docs/api.md: more than 20 refusals in a row close with 4429. At 0.05 frames a second
    no frame is allowed for 18 s, so every one of these is refused, none forgiven."""
    slow = settings_for(database_url, media_root, chat_rate_per_s=0.05)
    async with running_server(slow) as server:
        mallory = await server.person("mallory").register()
        socket = await mallory.connect()
        for _ in range(STRIKES_BEFORE_CLOSE + 5):
            await socket.send({"type": "typing", "to": "anyone"})
        refusals = 0
        with pytest.raises(ConnectionClosed):
            while True:
                assert (await socket.next())["code"] == "rate_limited"
                refusals += 1
        assert (refusals, socket.connection.close_code) == (STRIKES_BEFORE_CLOSE, 4429)


@pytest.mark.parametrize("kind", ["chat", "typing", "read"])
async def test_a_flood_is_refused_then_closed_with_4429(server: Server, db: asyncpg.Connection, kind: str) -> None:
    mallory, bob = await server.person("mallory").register(), await server.person("bob").register()
    flood = {"chat": {"type": "chat", "to": bob.username, "message": "spam"},
             "typing": {"type": "typing", "to": bob.username},
             "read": {"type": "read", "with": bob.username, "up_to": 1}}[kind]
    await mallory.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hi"})
    socket = await mallory.connect()
    for _ in range(2 * RATE + 25):
        await socket.send(flood)
    answers = []
    while True:
        try:
            answers.append(await socket.next())
        except Exception:
            break
    errors = [a for a in answers if a.get("type") == "error"]
    assert errors and all(e["code"] == "rate_limited" and e["retry_after_ms"] >= 1 for e in errors)
    assert socket.connection.close_code == 4429
    if kind == "chat":
        stored = await db.fetchval("SELECT count(*) FROM messages m JOIN users u ON u.id = m.sender_id "
                                   "WHERE u.username = $1", mallory.username)
        acks = [a for a in answers if a.get("type") == "ack"]
        assert stored - 1 == len(acks) <= 2 * RATE + 1  # the REST "hi" plus what was acked


async def burst(person: Person, to: Person, count: int) -> list[httpx.Response]:
    """`count` REST sends at once, as a script would fire them: faster than any refill."""
    async with person.server.client(headers=person.headers) as client:
        return list(await asyncio.gather(*(client.post("/api/send-message/", json={"to": to.username, "message": f"#{i}"})
                                           for i in range(count))))


async def test_rest_sends_are_limited_per_user(server: Server) -> None:
    """All at once over one client: one by one, a busy machine refilled the bucket between them."""
    mallory, bob = await server.person("mallory").register(), await server.person("bob").register()
    answers = await burst(mallory, bob, 4 * RATE)
    refused = [answer for answer in answers if answer.status_code == 429]
    assert refused and len(answers) - len(refused) >= 2 * RATE  # the burst goes through, then no more
    for answer in refused:
        assert_error(answer, 429, "rate_limited")
        assert int(answer.headers["retry-after"]) >= 1


async def test_one_users_rest_budget_is_not_anothers(server: Server) -> None:
    """Mallory spends her whole REST budget; Bob, on the same server, still gets his whole burst."""
    mallory, bob = await server.person("mallory").register(), await server.person("bob").register()
    assert 429 in [answer.status_code for answer in await burst(mallory, bob, 4 * RATE)]
    assert [answer.status_code for answer in await burst(bob, mallory, 2 * RATE)] == [201] * (2 * RATE)


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
