"""The benchmark's load generator, briefly, against the real server and the echo app.

A smoke run, not a measurement: it checks that the generator speaks the
contract and accounts for every message (nothing lost, refused or doubled),
never how fast anything went.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from typing import Any, AsyncIterator

import uvicorn

from bench import loadgen
from bench.limits import EchoApp

from .story import Server


async def _pairs(address: str, pairs: int) -> list[loadgen.Peer]:
    accounts = await loadgen.register([address], 2 * pairs, f"smoke_{uuid.uuid4().hex[:8]}_")
    return await loadgen.open_pairs(accounts)


def _assert_complete(summary: dict[str, Any], sent: int) -> None:
    """Every message sent was acknowledged once and delivered once."""
    assert summary["sent"] == sent
    assert summary["lost"] == 0, summary
    assert summary["errors"] == 0, summary
    assert summary["unanswered"] == 0, summary
    assert summary["duplicates"] == 0, summary
    assert summary["delivered"] == summary["acked"] == sent


async def test_closed_loop_accounts_for_every_message(server: Server) -> None:
    peers = await _pairs(server.address, 3)
    try:
        tracker = await loadgen.closed_loop(peers, duration=30, in_flight=2, tag="closed", per_peer=10)
    finally:
        await loadgen.close_all(peers)
    _assert_complete(tracker.summary(), sent=60)  # 3 pairs x 20 messages


async def test_open_loop_accounts_for_every_message(server: Server) -> None:
    peers = await _pairs(server.address, 2)
    try:
        tracker = await loadgen.open_loop(peers, rate=40, duration=0.5, tag="open")
    finally:
        await loadgen.close_all(peers)
    _assert_complete(tracker.summary(), sent=20)


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[str]:
    """The bench's bare echo app in this event loop, on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(EchoApp(), log_level="warning", ws_per_message_deflate=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_echo_app_runs_the_same_generator_path() -> None:
    async with echo_server() as address:
        peers = await _pairs(address, 2)
        try:
            tracker = await loadgen.closed_loop(peers, duration=30, in_flight=2, tag="echo", per_peer=10)
        finally:
            await loadgen.close_all(peers)
    _assert_complete(tracker.summary(), sent=40)
