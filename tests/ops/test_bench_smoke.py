"""The benchmark's load generator, briefly, against the real server and the echo app.

A smoke run, not a measurement: it checks that the generator speaks the
contract and accounts for every message (nothing lost, refused or doubled),
never how fast anything went.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from bench import loadgen, webclient
from bench.limits import EchoApp

from ..conftest import serving
from ..story import Server


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


async def test_echo_app_runs_the_same_generator_path() -> None:
    config = uvicorn.Config(EchoApp(), log_level="warning", ws_per_message_deflate=False)
    async with serving(config) as address:
        peers = await _pairs(address, 2)
        try:
            tracker = await loadgen.closed_loop(peers, duration=30, in_flight=2, tag="echo", per_peer=10)
        finally:
            await loadgen.close_all(peers)
    _assert_complete(tracker.summary(), sent=40)


@pytest.mark.xdist_group("browser")
async def test_the_web_client_benchmark_sees_every_message_displayed(server: Server) -> None:
    """bench.webclient, tiny, in Chromium: every frame of each burst arrives and the newest is shown.
    Its timings are the benchmark's to print, not this test's to judge."""
    if not Path(webclient.CHROMIUM).exists() or not (server.settings.web_root / "index.html").exists():
        pytest.skip("Chromium or the built web client is missing: make test")
    result = await webclient.measure(server.address, count=5, singles=2)
    for burst in (result["first_burst"], result["second_burst"]):
        assert burst["frames_seen"] == burst["messages"] == 5, burst
    assert result["rows_in_page"] == 2 * 5 + 1  # both bursts and the first message, before the singles
    assert result["one_at_a_time"]["messages"] == 2 and result["typing"]["keys"] == len(webclient.TYPED)
