"""Rate limits on by default: Mallory floods, is told to slow down, then is cut off."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from secure_link.config import Settings

from .conftest import settings_for
from .story import Server
from .test_accounts import assert_error

RATE = 5  # per second, bursts of 10


@pytest.fixture(scope="module")
def settings(database_url: str, media_root: Path) -> Settings:
    return settings_for(database_url, media_root, chat_rate_per_s=RATE)


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


async def test_rest_sends_are_limited_per_user(server: Server) -> None:
    """All at once over one client: one by one, a busy machine refilled the bucket between them."""
    mallory, bob = await server.person("mallory").register(), await server.person("bob").register()
    async with server.client(headers=mallory.headers) as http:
        responses = await asyncio.gather(*(http.post("/api/send-message/", json={"to": bob.username, "message": f"{i}"})
                                           for i in range(4 * RATE)))
    statuses = [response.status_code for response in responses]
    for response in responses:
        if response.status_code == 429:
            assert_error(response, 429, "rate_limited")
            assert int(response.headers["retry-after"]) >= 1
    assert statuses.count(201) >= 2 * RATE and 429 in statuses
