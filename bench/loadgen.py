"""The load generator: it speaks only the public contract (REST register, `/ws/chat/`).

Every user of a pair sends to the other. Send times stay on this side, in a
dict keyed by `client_id` (never in the message), and are read with
`time.perf_counter`, so the server cannot bias the clock. The same code drives
the real server and the bare echo app of `bench.limits`: only the address differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import time
from collections import Counter
from typing import Any
from collections.abc import Sequence

import httpx
from websockets.asyncio.client import ClientConnection, connect

PHRASE = "correct horse battery staple"
TEXT = "benchmark: a chat message of an ordinary length, sixty-four chars"


@dataclasses.dataclass(frozen=True)
class Account:
    """A registered user and the server (host:port) its socket talks to."""

    username: str
    token: str
    address: str


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max by nearest rank, in milliseconds (values are seconds)."""
    if not values:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan, "max": math.nan}
    ordered = sorted(values)
    rank = lambda q: ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
    return {name: 1000 * rank(q) for name, q in (("p50", .50), ("p95", .95), ("p99", .99), ("max", 1.0))}


class Tracker:
    """One run's bookkeeping: send, ack and delivery times keyed by client_id."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.acked: dict[str, float] = {}
        self.delivered: dict[str, float] = {}
        self.refused: set[str] = set()
        self.error_codes: Counter[str] = Counter()
        self.duplicates = self.stray = self.closed = 0
        self.lateness = 0.0
        self.window_start = self.window_end = 0.0

    def start(self, duration: float) -> None:
        """Open the measurement window now."""
        self.window_start = time.perf_counter()
        self.window_end = self.window_start + duration

    def on_ack(self, client_id: str | None, now: float) -> None:
        self._file(self.acked, client_id, now)

    def on_delivery(self, client_id: str | None, now: float) -> None:
        self._file(self.delivered, client_id, now)

    def _file(self, seen: dict[str, float], client_id: str | None, now: float) -> None:
        if client_id not in self.sent:
            self.stray += 1  # a late frame of an earlier run, or presence chatter
        elif client_id in seen:
            self.duplicates += 1
        else:
            seen[client_id] = now

    def on_error(self, client_id: str | None, code: str | None) -> None:
        self.error_codes[code or "unknown"] += 1
        if client_id in self.sent:
            self.refused.add(client_id)

    def done(self) -> bool:
        """Every send answered and every acknowledged message delivered."""
        answered = len(self.acked) + len(self.refused - self.acked.keys())
        return answered >= len(self.sent) and len(self.delivered) >= len(self.acked)

    async def settle(self, grace: float) -> None:
        """Wait (bounded) for the stragglers: lost means acked and still not delivered after this."""
        deadline = time.perf_counter() + grace
        while not self.done() and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)

    def summary(self) -> dict[str, Any]:
        """The run's figures; rates count events inside the window only."""
        span = max(1e-9, self.window_end - self.window_start)
        within = lambda times: sum(self.window_start <= t <= self.window_end for t in times.values())
        return {
            "sent": len(self.sent), "acked": len(self.acked), "delivered": len(self.delivered),
            "errors": sum(self.error_codes.values()) + self.closed, "error_codes": dict(self.error_codes),
            "closed_sockets": self.closed, "duplicates": self.duplicates, "stray": self.stray,
            "lost": len(self.acked.keys() - self.delivered.keys()),
            "unanswered": len(self.sent.keys() - self.acked.keys() - self.refused),
            "offered_per_s": len(self.sent) / span, "acked_per_s": within(self.acked) / span,
            "delivered_per_s": within(self.delivered) / span,
            # delivered inside the window per offered message: an open loop that keeps up is near 100
            "delivered_pct": 100 * within(self.delivered) / len(self.sent) if self.sent else math.nan,
            "ack_ms": percentiles([t - self.sent[c] for c, t in self.acked.items()]),
            "delivery_ms": percentiles([t - self.sent[c] for c, t in self.delivered.items()]),
            "lateness_ms": 1000 * self.lateness,
        }


async def register(addresses: Sequence[str], count: int, prefix: str, concurrency: int = 16,
                   timeout: float = 30.0) -> list[Account]:
    """Register `count` users, user i at addresses[i % len], so pairs straddle workers."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=timeout, trust_env=False,
                                 limits=httpx.Limits(max_connections=concurrency)) as http:
        async def one(index: int) -> Account:
            address = addresses[index % len(addresses)]
            body = {"username": f"{prefix}{index}", "phrase": PHRASE}
            async with limit:
                response = await _sign_up(http, f"http://{address}", body)
            return Account(body["username"], response.json()["token"], address)

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _sign_up(http: httpx.AsyncClient, base: str, body: dict[str, str], attempts: int = 3) -> httpx.Response:
    """Register; a dropped keep-alive connection is retried, and a retry that meets
    its own earlier success (409) logs in instead."""
    for attempt in range(attempts):
        try:
            response = await http.post(f"{base}/api/register/", json=body)
            if response.status_code == 409 and attempt:
                response = await http.post(f"{base}/api/login/", json=body)
            if response.status_code in (200, 201):
                return response
            raise RuntimeError(f"register {body['username']}: {response.status_code} {response.text[:200]}")
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


class Peer:
    """One authenticated socket; its reader files every frame with the current Tracker."""

    def __init__(self, account: Account, connection: ClientConnection, to: str) -> None:
        self.account = account
        self.connection = connection
        self.prefix = json.dumps({"type": "chat", "to": to, "message": TEXT})[:-1] + ', "client_id": "'
        self.tracker = Tracker()
        self.slots = 0
        self.wakeup = asyncio.Event()
        self.closing = False
        self.reader = asyncio.create_task(self._read())

    async def send_chat(self, client_id: str, sent_at: float | None = None) -> None:
        """Record the send time first: the ack may arrive before `send` returns."""
        self.tracker.sent[client_id] = time.perf_counter() if sent_at is None else sent_at
        await self.connection.send(self.prefix + client_id + '"}')

    async def ping(self, timeout: float) -> bool:
        """A `ping` frame answered by `pong`: the socket is held, not just open."""
        self.pong = asyncio.get_running_loop().create_future()
        with contextlib.suppress(Exception):
            await self.connection.send('{"type":"ping"}')
            await asyncio.wait_for(self.pong, timeout)
            return True
        return False

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                self._dispatch(json.loads(raw), time.perf_counter())
        except Exception:  # noqa: BLE001, S110 - a dropped socket is counted below, not raised into the run
            pass
        if not self.closing:
            self.tracker.closed += 1

    def _dispatch(self, frame: dict[str, Any], now: float) -> None:
        kind = frame.get("type")
        if kind == "ack":
            self.tracker.on_ack(frame.get("client_id"), now)
            self._free_slot()
        elif kind == "chat":
            self.tracker.on_delivery(frame["message"].get("client_id"), now)
        elif kind == "error":
            self.tracker.on_error(frame.get("client_id"), frame.get("code"))
            self._free_slot()
        elif kind == "pong" and getattr(self, "pong", None) and not self.pong.done():
            self.pong.set_result(True)

    def _free_slot(self) -> None:
        self.slots += 1
        self.wakeup.set()

    async def take_slot(self, deadline: float) -> bool:
        """Wait for a free in-flight slot until `deadline`; False when time is up."""
        while self.slots <= 0:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return False
            self.wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), remaining)
        self.slots -= 1
        return True

    async def close(self) -> None:
        """Close politely, bounded; the reader ends with the socket, which is not an error."""
        self.closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.connection.close(), 5)
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


async def open_socket(account: Account, to: str = "", timeout: float = 15.0) -> Peer:
    """Handshake with the bearer header, then wait for `ready` (the socket is subscribed)."""
    connection = await connect(f"ws://{account.address}/ws/chat/", compression=None, proxy=None,
                               open_timeout=timeout, close_timeout=5, ping_interval=None,
                               additional_headers={"Authorization": f"Bearer {account.token}"})
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(connection.recv(), timeout))
            if frame.get("type") == "ready":
                return Peer(account, connection, to)
            if frame.get("type") == "error":
                raise RuntimeError(f"{account.username}: {frame}")
    except BaseException:
        await connection.close()
        raise


async def open_pairs(accounts: Sequence[Account], concurrency: int = 50) -> list[Peer]:
    """Sockets for accounts (0,1), (2,3)...; each peer sends to its partner."""
    limit = asyncio.Semaphore(concurrency)

    async def one(index: int) -> Peer:
        async with limit:
            return await open_socket(accounts[index], accounts[index ^ 1].username)

    results = await asyncio.gather(*(one(i) for i in range(len(accounts) - len(accounts) % 2)),
                                   return_exceptions=True)
    peers = [r for r in results if isinstance(r, Peer)]
    failures = [r for r in results if not isinstance(r, Peer)]
    if failures:
        await close_all(peers)
        raise RuntimeError(f"{len(failures)} sockets failed to open: {failures[0]!r}")
    return peers


async def close_all(peers: Sequence[Peer], concurrency: int = 200) -> None:
    """Close every socket, a bounded number at a time."""
    limit = asyncio.Semaphore(concurrency)

    async def one(peer: Peer) -> None:
        async with limit:
            await peer.close()

    await asyncio.gather(*(one(p) for p in peers))


def _attach(peers: Sequence[Peer], slots: int = 0) -> Tracker:
    tracker = Tracker()
    for peer in peers:
        peer.tracker, peer.slots = tracker, slots
    return tracker


async def closed_loop(peers: Sequence[Peer], duration: float, in_flight: int, tag: str,
                      grace: float = 10.0, per_peer: int | None = None) -> Tracker:
    """Each peer keeps `in_flight` messages unacknowledged: as fast as acks allow.

    It stops at the end of `duration`, or after `per_peer` messages (the smoke test's count).
    """
    tracker = _attach(peers, in_flight)
    tracker.start(duration)

    async def sender(index: int, peer: Peer) -> None:
        sequence = 0
        while sequence != per_peer and await peer.take_slot(tracker.window_end):
            await peer.send_chat(f"{tag}-{index}-{sequence}")
            sequence += 1

    await asyncio.gather(*(sender(i, p) for i, p in enumerate(peers)))
    await tracker.settle(grace)
    return tracker


async def open_loop(peers: Sequence[Peer], rate: float, duration: float, tag: str,
                    grace: float = 10.0) -> Tracker:
    """Send at fixed times, regardless of acks; latency counts from the intended time."""
    tracker = _attach(peers)
    tracker.start(duration)
    total, start, sent = int(rate * duration), tracker.window_start, 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due:
            intended = start + sent / rate
            await peers[sent % len(peers)].send_chat(f"{tag}-{sent}", intended)
            tracker.lateness = max(tracker.lateness, time.perf_counter() - intended)
            sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    await tracker.settle(grace)
    return tracker
