"""How long expired messages stay stored, and what sealing costs per message.

    .venv/bin/python -m bench.expiry              # 1,000 expiring messages
    .venv/bin/python -m bench.expiry --count 200  # a quick look

A real server (`secure-link serve`, one worker, its sweeper every
EXPIRY_SWEEP_INTERVAL = 1 s) on a scratch database of DATABASE_URL or the
local PostgreSQL. Two users set a 2 s timer and send `--count` messages over
REST; a poller then watches the rows and records, for each, how long after
its `expires_at` it was gone (the contract: within 5 s). Then the cost of
encryption on the send path, measured in this process: sealing and opening a
body with its conversation key, and sealing and opening its fan-out event.
Prints a table and writes bench/results/expiry.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from secure_link.encryption import aead, contexts
from secure_link.ops import devdb
from secure_link.schema import apply_schema
from secure_link.fanout import ConversationKey, EnvelopeSeal
from secure_link.encryption.keyring import Keyring, new_master_key

from .scenarios import SERVER_ENV, running, server_argv

RESULTS = Path(__file__).resolve().parent / "results" / "expiry.json"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
TEXT = "a message of about the usual length, sixty or so characters."


async def sweep_delays(pg_url: str, count: int) -> list[float]:
    """Seconds from each message's expires_at to its row's deletion, as a poller sees it."""
    name = f"bench_expiry_{secrets.token_hex(3)}"
    await devdb.create_database(pg_url, name)
    url = devdb.with_database(pg_url, name)
    await apply_schema(url)
    env = {**SERVER_ENV, "DATABASE_URL": url, "BROADCAST_URL": url,
           "MASTER_KEY_FILE": str(Path(tempfile.mkdtemp(prefix="bench-keys-")) / "master-key")}
    try:
        async with running(server_argv(), env, None) as server:
            expiries = await send_expiring(server.address, count)
            return await watch(url, expiries)
    finally:
        await devdb.drop_database(pg_url, name)


async def send_expiring(address: str, count: int) -> dict[int, float]:
    """Register two users, set a 2 s timer, send; each message's id and expiry (epoch seconds)."""
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http:
        tokens = []
        for who in ("a", "b"):
            answer = await http.post("/api/register/", json={"username": f"{who}{secrets.token_hex(3)}",
                                                             "phrase": "correct horse battery staple"})
            tokens.append((answer.json()["user"]["username"], answer.json()["token"]))
        (_alice, alice_token), (bob, _) = tokens
        headers = {"Authorization": f"Bearer {alice_token}"}
        await http.put(f"/api/conversations/{bob}/timer/", json={"seconds": 2}, headers=headers)
        limit = asyncio.Semaphore(20)

        async def one(number: int) -> dict[str, Any]:
            async with limit:
                return (await http.post("/api/send-message/", headers=headers,
                                        json={"to": bob, "message": f"{TEXT} #{number}"})).json()

        sent = await asyncio.gather(*(one(n) for n in range(count)))
    return {m["id"]: _epoch(m["expires_at"]) for m in sent}


def _epoch(moment: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(moment).timestamp()


async def watch(url: str, expiries: dict[int, float], timeout: float = 60.0) -> list[float]:
    """Poll every 20 ms until every row is gone; the delay of each past its expiry."""
    connection = await asyncpg.connect(url)
    delays: list[float] = []
    pending = set(expiries)
    deadline = time.time() + timeout
    try:
        while pending and time.time() < deadline:
            stored = {row["id"] for row in await connection.fetch(
                "SELECT id FROM messages WHERE id = ANY($1::bigint[])", list(pending))}
            now = time.time()
            for gone in pending - stored:
                delays.append(now - expiries[gone])
            pending &= stored
            await asyncio.sleep(0.02)
    finally:
        await connection.close()
    if pending:
        raise RuntimeError(f"{len(pending)} expired messages were never swept")
    return delays


class HeldKey:
    """A receiver that holds the one conversation key (a worker after its first message)."""

    def __init__(self, conversation: ConversationKey) -> None:
        self._held = (conversation.born, conversation.key)

    def cached(self, pair: tuple[int, int]) -> tuple[datetime.datetime, bytes]:
        return self._held

    async def existing(self, pair: tuple[int, int]) -> tuple[datetime.datetime, bytes]:
        return self._held


def sealing_costs(rounds: int = 20_000) -> dict[str, float]:
    """Microseconds per message: a body sealed and opened, an event sealed and opened."""
    keyring, key = Keyring([new_master_key()]), aead.new_key()
    conversation = ConversationKey(3, 7, datetime.datetime.now(datetime.UTC), key)
    envelope = EnvelopeSeal(keyring, HeldKey(conversation))
    body = TEXT.encode()
    event = json.dumps({"type": "chat", "message": {"id": 123456, "from": "alice", "to": "bob", "message": TEXT,
                                                    "attachment": None, "client_id": "c-1",
                                                    "sent_at": "2026-11-30T05:00:00.000Z", "expires_at": None}})
    context = contexts.message_body(3, 7)
    sealed_body, sealed_event = aead.seal(key, body, context), envelope.seal_conversation(conversation, event)
    timings = {
        "body seal": lambda: aead.seal(key, body, context),
        "body open": lambda: aead.open(key, sealed_body, context),
        "event seal": lambda: envelope.seal_conversation(conversation, event),
        "event open": lambda: envelope.open_now(sealed_event),
    }
    costs = {}
    for name, work in timings.items():
        started = time.perf_counter()
        for _ in range(rounds):
            work()
        costs[name] = (time.perf_counter() - started) / rounds * 1e6
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    delays = asyncio.run(sweep_delays(os.environ.get("DATABASE_URL") or LOCAL_PG, args.count))
    costs = sealing_costs()
    result = {"messages": len(delays), "sweep_delay_s": {
        "median": statistics.median(delays), "p99": statistics.quantiles(delays, n=100)[98],
        "max": max(delays), "min": min(delays)}, "sealing_us": costs, "load_average": os.getloadavg()}
    print(f"{'figure':<40}{'value':>12}")
    for key in ("median", "p99", "max"):
        print(f"{'sweep delay past expires_at, ' + key:<40}{result['sweep_delay_s'][key]:>11.2f}s")
    for name, micros in costs.items():
        print(f"{name + ', per message':<40}{micros:>10.1f}µs")
    print(f"({len(delays)} messages; load average {os.getloadavg()[0]:.1f})")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
