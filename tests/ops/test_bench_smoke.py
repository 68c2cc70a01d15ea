"""The benchmark's load generator, briefly, against the real server and the echo app.

A smoke run, not a measurement: it checks that the generator speaks the
contract and accounts for every message (nothing lost, refused or doubled),
and that the costs it reports are counted (the writer's batches, PostgreSQL's
CPU, fresh client_ids per REST run), never how fast anything went.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest
import uvicorn

from secure_link.ops import devdb
from bench import costs, loadgen, scenarios, webclient
from bench.__main__ import QUICK, Bench
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


async def test_closed_loop_accounts_for_every_message_and_every_commit(server: Server) -> None:
    peers = await _pairs(server.address, 3)
    before = await costs.scrape_batches([server.address])
    try:
        tracker = await loadgen.closed_loop(peers, duration=30, in_flight=2, tag="closed", per_peer=10)
    finally:
        await loadgen.close_all(peers)
    _assert_complete(tracker.summary(), sent=60)  # 3 pairs x 20 messages
    batches = costs.batch_delta(before, await costs.scrape_batches([server.address]))
    assert batches is not None and batches["drafts"] == 60, batches
    assert sum(batches["buckets"].values()) == batches["commits"] >= 1, batches  # per bucket, not cumulative


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
        assert await costs.scrape_batches([address]) is None  # no writer there, so no histogram to report
    _assert_complete(tracker.summary(), sent=40)


async def test_postgres_cpu_counts_a_backend_that_has_ended(pg_server_url: str) -> None:
    """A connection's backend exits before the run ends: its CPU must still be in the total."""
    postgres = await costs.find_postgres(pg_server_url)
    if postgres is None:
        pytest.skip("PostgreSQL runs elsewhere: its processes cannot be weighed from here")
    before = postgres.seconds()
    connection = await asyncpg.connect(pg_server_url)
    backend = psutil.Process(await connection.fetchval("SELECT pg_backend_pid()"))
    await connection.fetchval("SELECT count(*) FROM generate_series(1, 3000000)")
    spent = backend.cpu_times().user + backend.cpu_times().system
    await connection.close()
    backend.wait(30)
    assert spent > 0
    assert postgres.seconds() - before >= 0.9 * spent, (before, spent)


async def test_rest_runs_send_fresh_client_ids_and_weigh_their_costs(pg_server_url: str) -> None:
    """Each REST send run is new messages (201); the retry run repeats the first's ids (200).

    The bench once reused one run's ids in the next, so two of three runs measured retries.
    """
    bench = Bench(dataclasses.replace(QUICK, runs=2, rest_duration=0.3), pg_server_url, None, None,
                  await costs.find_postgres(pg_server_url))
    await devdb.create_database(pg_server_url, bench.db_name)
    try:
        async with scenarios.running(scenarios.server_argv(), bench.env(), None) as process:
            accounts = await loadgen.register([process.address], 4, f"rest_{bench.tag}_")
            await bench.rest("rest", process, accounts, ("send",))
    finally:
        await devdb.drop_database(pg_server_url, bench.db_name)
    fresh, retried = bench.raw["rest_send"], bench.raw["rest_send_retry"]
    assert [set(run["statuses"]) for run in fresh] == [{"201"}, {"201"}], fresh
    assert "200" in retried[0]["statuses"], retried  # past the first run's count, ids are new again
    for run in fresh:
        assert run["cpu_us_per_request"]["server"] > 0 and run["batch_sizes"]["drafts"] == run["ok"], run
        assert (run["cpu_us_per_request"]["postgres"] is None) == (bench.postgres is None), run


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
