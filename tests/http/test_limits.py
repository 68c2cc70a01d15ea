"""Rate limits on by default: Mallory floods, is told to slow down, then is cut off."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from secure_link.config import Settings
from secure_link.sockets import STRIKES_BEFORE_CLOSE

from ..conftest import running_server, settings_for
from ..story import Person, Server, Socket, assert_error

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


def flood_of(kind: str, bob: Person) -> str | bytes:
    """One frame of each kind a socket accepts, the unreadable and the unknown included."""
    frames: dict[str, Any] = {
        "chat": {"type": "chat", "to": bob.username, "message": "spam"},
        "typing": {"type": "typing", "to": bob.username},
        "read": {"type": "read", "with": bob.username, "up_to": 1},
        "sync": {"type": "sync", "since": 0},
        "timer": {"type": "timer", "with": bob.username, "seconds": 60},
        "delete": {"type": "delete", "id": 1},  # nobody's: answered not_found, which costs a query
        "ping": {"type": "ping"},
        "auth": {"type": "auth", "token": "again"},
        "unknown": {"type": "shout"},
    }
    if kind == "not json":
        return "{not json"
    if kind == "binary":
        return b"\x00\x01"
    return json.dumps(frames[kind])


FLOODS = ["chat", "typing", "read", "sync", "timer", "delete", "ping", "auth", "unknown", "not json", "binary"]


async def answers_until_closed(socket: Socket) -> list[dict[str, Any]]:
    """Every frame the server sends until it closes the socket (or falls silent for 5 s)."""
    answers = []
    with contextlib.suppress(ConnectionClosed, asyncio.TimeoutError):
        while True:
            answers.append(await socket.next())
    return answers


async def answers_until_silent(socket: Socket) -> list[dict[str, Any]]:
    """Every frame the server sends until nothing more comes for a second."""
    answers = []
    with contextlib.suppress(asyncio.TimeoutError):
        while True:
            answers.append(await socket.next(timeout=1.0))
    return answers


@pytest.mark.parametrize("kind", FLOODS)
async def test_a_flood_of_any_frame_is_refused_then_closed_with_4429(server: Server, db: asyncpg.Connection,
                                                                     kind: str) -> None:
    """Mallory floods with each frame a socket accepts: past the burst, `rate_limited` with when to
    retry, then 4429. Bob, whom her timers would reach, hears no more of them than her budget."""
    mallory, bob = await server.person("mallory").register(), await server.person("bob").register()
    await mallory.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hi"})
    bob_tab = await bob.connect()
    socket = await mallory.connect()
    frame = flood_of(kind, bob)
    for _ in range(2 * RATE + 25):
        await socket.connection.send(frame)  # as it is: text or binary
    answers = await answers_until_closed(socket)
    refused = [a for a in answers if a.get("type") == "error" and a["code"] == "rate_limited"]
    assert refused and all(e["retry_after_ms"] >= 1 for e in refused)
    assert socket.connection.close_code == 4429
    if kind == "chat":
        stored = await db.fetchval("SELECT count(*) FROM messages m JOIN users u ON u.id = m.sender_id "
                                   "WHERE u.username = $1", mallory.username)
        acks = [a for a in answers if a.get("type") == "ack"]
        assert stored - 1 == len(acks) <= 2 * RATE + 1  # the REST "hi" plus what was acked
    if kind == "timer":  # a refused change reaches nobody
        heard = [f for f in await answers_until_silent(bob_tab) if f["type"] == "timer"]
        assert 0 < len(heard) <= 2 * RATE + 25 - len(refused)


async def test_a_flood_before_auth_is_closed_with_4429(server: Server) -> None:
    """Frames before `auth` cost the same budget: 35 of them at once are answered, then the socket
    is closed, long before the auth timeout would have closed it (1008)."""
    stranger = server.person("stranger")  # never registered: the handshake carries no credentials
    socket = await stranger.connect(ready=False)
    for _ in range(2 * RATE + 25):
        await socket.send({"type": "chat", "to": "anyone", "message": "before auth"})
    answers = await answers_until_closed(socket)
    codes = {a["code"] for a in answers}
    assert codes == {"unauthenticated", "rate_limited"}, codes
    assert socket.connection.close_code == 4429


async def test_a_steady_flood_is_closed_though_tokens_keep_coming(server: Server) -> None:
    """Mallory sends ~8 times the rate, steadily, as the review's 100 timer frames in 0.6 s did: a
    token comes every eighth frame, so never 21 refusals in a row; each refusal is a strike and
    each allowed frame forgives only one, so she is closed within seconds all the same."""
    socket = await (await server.person("mallory").register()).connect()
    with contextlib.suppress(ConnectionClosed):
        for _ in range(40 * RATE):  # 5 seconds at most
            await socket.send({"type": "ping"})
            await asyncio.sleep(1 / (8 * RATE))
    assert await socket.closed_with() == 4429


async def test_an_honest_pace_of_every_frame_is_never_refused(server: Server) -> None:
    """Bob's client pings, types, reads, syncs, sets a timer, deletes and chats, a little under the
    rate for longer than a burst lasts: every frame is answered, none refused, the socket stays."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    sent = (await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "mine"})).json()
    socket = await bob.connect()
    frames = [{"type": "ping"}, {"type": "typing", "to": alice.username},
              {"type": "read", "with": alice.username, "up_to": 0}, {"type": "sync", "since": sent["id"]},
              {"type": "timer", "with": alice.username, "seconds": 0}]
    for n in range(4 * RATE):  # twice a burst for each budget, over about 5 s
        await socket.send(frames[n % len(frames)])
        await socket.send({"type": "chat", "to": alice.username, "message": f"at a pace {n}", "client_id": f"p{n}"})
        await asyncio.sleep(1.25 / RATE)
    await socket.send({"type": "delete", "id": sent["id"]})
    answers = await answers_until_silent(socket)
    assert [a for a in answers if a["type"] == "error"] == []
    assert len([a for a in answers if a["type"] == "ack"]) == 4 * RATE
    assert len([a for a in answers if a["type"] == "pong"]) == 4
    assert any(a["type"] == "deleted" for a in answers)
    await socket.send({"type": "ping"})
    assert await socket.expect("pong", skip=("presence", "typing", "timer", "read")) == {"type": "pong"}


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


async def changes(person: Person, to: Person, count: int, message_id: int) -> list[httpx.Response]:
    """`count` timer changes and as many deletes at once, as a script would fire them."""
    async with person.server.client(headers=person.headers) as client:
        timers = [client.put(f"/api/conversations/{to.username}/timer/", json={"seconds": 60}) for _ in range(count)]
        deletes = [client.delete(f"/api/messages/{message_id}/") for _ in range(count)]
        return list(await asyncio.gather(*timers, *deletes))


async def test_rest_timer_changes_and_deletes_are_limited_per_user(server: Server) -> None:
    """Each of Mallory's timer changes reaches Bob's sockets: past her budget, 429 with Retry-After.
    Her sends keep a budget of their own, and Bob's changes are not hers."""
    mallory, bob = await server.person("mallory").register(), await server.person("bob").register()
    message = (await mallory.api("POST", "/api/send-message/", json={"to": bob.username, "message": "x"})).json()
    answers = await changes(mallory, bob, 2 * RATE, message["id"])
    refused = [answer for answer in answers if answer.status_code == 429]
    assert refused and len(answers) - len(refused) >= 2 * RATE  # the burst goes through, then no more
    for answer in refused:
        assert_error(answer, 429, "rate_limited")
        assert int(answer.headers["retry-after"]) >= 1
    assert (await mallory.api("POST", "/api/send-message/", json={"to": bob.username, "message": "y"})).status_code == 201
    assert (await bob.api("PUT", f"/api/conversations/{mallory.username}/timer/", json={"seconds": 0})).status_code == 200


async def test_one_users_rest_budget_is_not_anothers(server: Server) -> None:
    """Mallory spends her whole REST budget; Bob, on the same server, still gets his whole burst."""
    mallory, bob = await server.person("mallory").register(), await server.person("bob").register()
    assert 429 in [answer.status_code for answer in await burst(mallory, bob, 4 * RATE)]
    assert [answer.status_code for answer in await burst(bob, mallory, 2 * RATE)] == [201] * (2 * RATE)


