"""Faults a real deployment meets, told as stories with their figures.

The database restarts under chat load, the fan-out is cut while a
conversation is cleared, the media disk fills up or turns read-only, and one
account tries to hold too many sockets. Each story counts what was sent,
acknowledged and delivered (lost must be 0) and prints its figures (run with
`-s` to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from secure_link.ops import devdb
from secure_link.config import PROJECT_ROOT, Settings

from ..conftest import free_port, private_redis, running_server, server_process, settings_for, wait_for_redis
from ..story import BOUNDARY, Person, Server, Socket, assert_error, eventually, form, sample, scrape, sync, upload


# ---- a client that keeps sending through an outage -------------------------

@dataclasses.dataclass
class Tally:
    """What one sender saw: every client_id sent, acknowledged ids, and the refusals on the way."""

    sent: int = 0
    acked: dict[str, int] = dataclasses.field(default_factory=dict)
    unavailable: int = 0
    reconnects: int = 0
    acked_at: list[float] = dataclasses.field(default_factory=list)


async def send_until_acked(person: Person, to: Person, client_id: str, tally: Tally, holder: list[Socket | None],
                           deadline: float) -> None:
    """Send one message and keep at it, same client_id, through refusals and reconnects."""
    while time.monotonic() < deadline:
        try:
            if holder[0] is None:
                holder[0] = await person.connect()
                tally.reconnects += 1
            socket = holder[0]
            await socket.send({"type": "chat", "to": to.username, "message": f"msg {client_id}", "client_id": client_id})
            while True:
                frame = await socket.next(timeout=10)
                if frame.get("client_id") != client_id:
                    continue  # chatter: presence, resync, replays
                if frame["type"] == "ack":
                    tally.acked[client_id] = frame["message"]["id"]
                    tally.acked_at.append(time.monotonic())
                    return
                assert frame["type"] == "error" and frame["code"] == "unavailable", frame
                tally.unavailable += 1
                await asyncio.sleep(frame["retry_after_ms"] / 1000 / 4)  # retry sooner than told: a test
                break
        except (ConnectionClosed, InvalidHandshake, OSError):  # closed (1013), refused, timed out
            holder[0] = None
            await asyncio.sleep(0.2)
    raise AssertionError(f"{client_id} was never acknowledged")


async def probe_rest(person: Person, until: asyncio.Event, seen: dict[int, int]) -> None:
    """Ask for the profile every 100 ms, counting statuses; a 503 must say when to come back."""
    while not until.is_set():
        try:
            answer = await person.api("GET", "/api/user-profile/")
        except httpx.HTTPError:
            seen[-1] = seen.get(-1, 0) + 1
        else:
            seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            if answer.status_code == 503:
                assert_error(answer, 503, "unavailable")
                assert int(answer.headers["Retry-After"]) >= 1
        await asyncio.sleep(0.1)


# ---- the database restarts under chat load ---------------------------------

@pytest.fixture(scope="module")
def private_pg() -> Iterator[tuple[Path, str]]:
    """A PostgreSQL of this module's own, to stop and start without disturbing other tests."""
    var_dir = PROJECT_ROOT / "var" / f"test-outage-{uuid.uuid4().hex[:8]}"
    url = devdb.start_server(var_dir)
    try:
        yield var_dir, url
    finally:
        devdb.stop_server(var_dir)
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.mark.slow
async def test_a_database_restart_under_chat_load_loses_nothing(private_pg: tuple[Path, str], settings: Settings) -> None:
    """Alice keeps sending while PostgreSQL is down for 3 s; REST says 503 meanwhile; all arrives once."""
    var_dir, server_url = private_pg
    await devdb.create_database(server_url, "outage")
    url = devdb.with_database(server_url, "outage")
    async with server_process(url, url, settings) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        tally, holder, done, rest = Tally(), [None], asyncio.Event(), {}
        deadline = time.monotonic() + 60
        prober = asyncio.create_task(probe_rest(bob, done, rest))

        async def outage() -> float:
            while len(tally.acked) < 20:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(devdb.stop_server, var_dir)
            await asyncio.sleep(3)
            await asyncio.to_thread(devdb.start_server, var_dir)
            return time.monotonic()

        restarted = asyncio.create_task(outage())
        for n in range(80):
            tally.sent += 1
            await send_until_acked(alice, bob, f"c{n}", tally, holder, deadline)
            await asyncio.sleep(0.02)
        back_at = await restarted
        done.set()
        await prober
        assert server.pid is not None
        os.kill(server.pid, 0)  # the worker is still there (ProcessLookupError otherwise)
        delivered, _ = await sync(await bob.connect(), 0)
        first_after = min(t for t in tally.acked_at if t > back_at)
        print(f"\ndatabase restart: sent {tally.sent}, acked {len(tally.acked)}, delivered {len(delivered)}, "
              f"lost {tally.sent - len(tally.acked)}, unavailable answers {tally.unavailable}, reconnects "
              f"{tally.reconnects - 1}, first ack {first_after - back_at:.2f} s after the database returned, "
              f"REST statuses {rest}")
        assert sorted(delivered) == sorted(tally.acked.values())  # each exactly once, none lost
        assert rest.get(503, 0) >= 1 and 500 not in rest
        assert first_after - back_at < 5


# ---- a clearing lost in a fan-out outage -----------------------------------

async def test_a_clearing_lost_in_a_fan_out_outage_arrives_as_resync(database_url: str, media_root: Path,
                                                                     redis_binary: str) -> None:
    """Redis is down while Alice logs out: Bob's open socket misses `cleared`, gets `resync`, reloads."""
    port = free_port()
    settings = settings_for(database_url, media_root, broadcast_url=f"redis://127.0.0.1:{port}/0")
    with private_redis(redis_binary, port) as first_redis:
        await wait_for_redis(port)
        async with running_server(settings) as server:
            alice, bob = await server.person("alice").register(), await server.person("bob").register()
            bob_tab = await bob.connect()
            await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "soon gone"})
            await bob_tab.expect("chat")
            first_redis.terminate()
            first_redis.wait(timeout=10)
            assert (await alice.api("POST", "/api/logout/")).status_code == 200  # its `cleared` is lost
            with private_redis(redis_binary, port):
                await bob_tab.expect("resync", timeout=15)
                history = await bob.api("GET", "/api/messages/", params={"with": alice.username})
            assert history.json()["messages"] == []


# ---- the media disk fills up, then turns read-only -------------------------

@contextlib.contextmanager
def small_disk(path: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of `size` mounted for the test (root only), unmounted however it ends."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {mounted.stderr}")
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def stored_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


async def test_a_full_or_read_only_media_disk_answers_503_and_leaves_nothing(database_url: str,
                                                                             tmp_path: Path) -> None:
    with small_disk(tmp_path / "media") as media_root:
        settings = settings_for(database_url, media_root)
        async with running_server(settings) as server:
            alice, bob = await server.person("alice").register(), await server.person("bob").register()
            kept = await upload(alice, b"fits\n", "small.txt")
            full = await alice.api("POST", "/api/upload-file/", **form(b"x" * (2 * 1024 * 1024) + b"\n", "big.txt"))
            assert_error(full, 503, "unavailable")
            assert int(full.headers["Retry-After"]) >= 1
            assert [path.name.split(".")[0] for path in stored_files(media_root)] == [kept["id"]]
            subprocess.run(["mount", "-o", "remount,ro", str(media_root)], check=True)  # noqa: ASYNC221 - a moment's mount
            read_only = await alice.api("POST", "/api/upload-file/", **form(b"tiny\n", "tiny.txt"))
            assert_error(read_only, 503, "unavailable")
            chat = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "still here"})
            assert chat.status_code == 201
            assert (await bob.api("GET", kept["url"])).status_code == 404  # not sent to Bob: still private


async def test_an_upload_cut_off_midway_is_no_error_and_leaves_nothing(database_url: str, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Alice closes her laptop halfway through an upload. That is no bug: it was logged with a
    traceback and counted as `internal`, which anyone could inflate by hanging up. It is counted
    under `client_disconnected` now, logged as a line without a traceback, and the sealed part
    already written is gone from the disk."""
    caplog.set_level(logging.INFO)
    media_root = tmp_path / "media"
    async with running_server(settings_for(database_url, media_root)) as server:
        alice = await server.person("alice").register()
        before = await scrape(server)
        host, port = server.address.split(":")
        _reader, writer = await asyncio.open_connection(host, int(port))
        head = (f"POST /api/upload-file/ HTTP/1.1\r\nHost: {server.address}\r\nAuthorization: Bearer {alice.token}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {4 * 1024 * 1024}\r\n\r\n")
        part = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n"
                "Content-Type: text/plain\r\n\r\n")
        writer.write(head.encode() + part.encode() + b"x" * (1024 * 1024))  # a quarter, past the first flush
        await writer.drain()
        await eventually(lambda: has_files(media_root))  # the sealed part is on the disk
        writer.transport.abort()
        await eventually(lambda: counted(server, ("client_disconnected", "internal"), before))
        after = await scrape(server)
        assert stored_files(media_root) == []
    assert errors_between(before, after) == {"client_disconnected": 1}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("secure_link")] == []
    (told,) = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert told.levelno == logging.INFO and told.exc_info is None
    assert told.getMessage() == "client disconnected during POST /api/upload-file/"


async def has_files(root: Path) -> bool:
    return bool(stored_files(root))


def errors_between(before: str, after: str) -> dict[str, float]:
    """Errors counted between two scrapes, by code."""
    codes = set(re.findall(r'^secure_link_errors_total{code="(\w+)"}', after, re.MULTILINE))
    label = '{{code="{}"}}'.format
    counts = {code: sample(after, "secure_link_errors_total", label(code))
              - sample(before, "secure_link_errors_total", label(code)) for code in codes}
    return {code: count for code, count in counts.items() if count}


async def counted(server: Server, codes: tuple[str, ...], before: str) -> bool:
    """Whether an error of any of these codes was counted since `before`."""
    return any(code in codes for code in errors_between(before, await scrape(server)))


# ---- one account, too many sockets ------------------------------------------

async def test_one_account_cannot_hold_more_sockets_than_the_cap(database_url: str, media_root: Path) -> None:
    settings = settings_for(database_url, media_root, ws_max_sockets_per_user=3)
    async with running_server(settings) as server:
        mallory, bob = await server.person("mallory").register(), await server.person("bob").register()
        held = [await mallory.connect() for _ in range(3)]
        extra = await mallory.connect(ready=False)
        assert await extra.closed_with() == 1008
        assert extra.connection.close_reason == "too many sockets open for this account"  # docs/api.md
        await bob.connect()  # others are not affected
        await held[0].close()
        for _ in range(50):  # the closed one's place is free once its goodbye is recorded
            replacement = await mallory.connect(ready=False)
            with contextlib.suppress(ConnectionClosed):
                if (await replacement.next())["type"] == "ready":
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the closed socket's place was never given back")


# ---- thousands of sockets that vanish without a goodbye --------------------

# Sockets per round. The 5,000 take ~40 s a round on a loaded 2-core machine, too long for
# every CI run; CI runs 2,000 and the 5,000 figure comes from `SL_VANISHED_SOCKETS=5000 pytest -k vanished`.
DROPPED = int(os.environ.get("SL_VANISHED_SOCKETS", "2000"))


async def open_then_drop(people: list[Person], count: int, at_once: int = 50) -> None:
    """Open `count` authenticated sockets (spread over `people`), then cut every one without a close frame."""
    limit = asyncio.Semaphore(at_once)

    async def one(n: int) -> Socket:
        async with limit:
            return await people[n % len(people)].connect()

    opened = await asyncio.gather(*(one(n) for n in range(count)))
    for socket in opened:
        socket.connection.transport.abort()  # a TCP reset: the client vanished, no close frame
    for person in people:
        person.sockets.clear()


def resident_kib(pid: int) -> int:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0])


async def settled(server: Server, db, channels_at_rest: float) -> str:  # type: ignore[no-untyped-def]
    """/metrics once no socket is left: not in the worker, not in presence, no channel listened to
    but those the worker hears for its whole life (`sessions`, counted before any socket opened).

    Thousands of goodbyes at once take seconds: each socket's last channel
    is UNLISTENed in turn. The wait is bounded.
    """
    for _ in range(600):
        text = await scrape(server)
        rows = await db.fetchval("SELECT count(*) FROM live_connections")
        if (sample(text, "secure_link_websockets_open"), sample(text, "secure_link_fanout_channels"), rows) == (0, channels_at_rest, 0):
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"still there: sockets {sample(text, 'secure_link_websockets_open')}, channels "
                         f"{sample(text, 'secure_link_fanout_channels')}, presence rows {rows}")


@pytest.mark.slow
async def test_thousands_of_vanished_sockets_leak_nothing(database_url: str, settings: Settings, db) -> None:  # type: ignore[no-untyped-def]
    """Two rounds of sockets cut without a close frame: the second leaves the worker as the first did."""
    async with server_process(database_url, database_url, settings, WS_MAX_SOCKETS_PER_USER="0") as server:
        assert server.pid is not None
        people = []
        for batch in range(0, 250, 10):  # 10 at a time: more would fill the hashing line (503 busy)
            people += await asyncio.gather(*(server.person(f"crowd{n}").register() for n in range(batch, batch + 10)))
        channels_at_rest = sample(await scrape(server), "secure_link_fanout_channels")
        figures = []
        for _ in range(2):  # the first round brings pools, caches and the allocator to their working size
            started = time.monotonic()
            await open_then_drop(people, DROPPED)
            opened_s = time.monotonic() - started
            text = await settled(server, db, channels_at_rest)
            figures.append((opened_s, time.monotonic() - started - opened_s, resident_kib(server.pid),
                            sample(text, "secure_link_asyncio_tasks")))
        (_, _, baseline, tasks_before), (opened_s, gone_s, rss, tasks_after) = figures
        print(f"\n{DROPPED} sockets opened in {opened_s:.1f} s, all gone {gone_s:.1f} s after the cut; "
              f"RSS after each round {baseline / 1024:.1f} -> {rss / 1024:.1f} MiB; tasks {tasks_before:.0f} -> {tasks_after:.0f}")
        assert tasks_after <= tasks_before + 2
        assert rss <= baseline * 1.10, (baseline, rss)


# ---- a rolling restart under load -------------------------------------------

async def keep_sending(person: Person, to: Person, prefix: str, count: int, live: list[Server],
                       tally: Tally) -> None:
    """`count` messages, each retried until acknowledged, moving to another live server whenever
    this one closes (1012 on SIGTERM) or refuses."""
    holder: list[Socket | None] = [None]
    deadline = time.monotonic() + 120
    for n in range(count):
        tally.sent += 1
        while True:
            person.server = live[n % len(live)] if holder[0] is None else person.server
            try:
                await send_until_acked(person, to, f"{prefix}{n}", tally, holder, time.monotonic() + 5)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                holder[0] = None
        await asyncio.sleep(0.01)


async def acked_total(tallies: tuple[Tally, ...], at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sum(len(tally.acked) for tally in tallies) < at_least:
        assert time.monotonic() < deadline, "the senders stalled"
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_a_rolling_restart_under_load_loses_nothing(database_url: str, settings: Settings) -> None:
    """Two servers; each in turn gets SIGTERM and a replacement while Alice and Bob write to each other."""
    async with contextlib.AsyncExitStack() as stack:
        live = [await stack.enter_async_context(server_process(database_url, database_url, settings))
                for _ in range(2)]
        alice, bob = await live[0].person("alice").register(), await live[1].person("bob").register()
        bob.server = live[1]
        tallies = (Tally(), Tally())
        senders = asyncio.gather(keep_sending(alice, bob, "a", 150, live, tallies[0]),
                                 keep_sending(bob, alice, "b", 150, live, tallies[1]))
        for round_ in range(2):
            await acked_total(tallies, 60 * (round_ + 1))
            old = live.pop(0)
            assert old.pid is not None
            os.kill(old.pid, signal.SIGTERM)  # graceful: in-flight acks first, then 1012
            live.append(await stack.enter_async_context(server_process(database_url, database_url, settings)))
        await senders
        acked = sorted([*tallies[0].acked.values(), *tallies[1].acked.values()])
        for person in (alice, bob):
            person.server = live[0]
            replayed, _ = await sync(await person.connect(), 0)
            assert sorted(replayed) == acked  # every message, exactly once
        print(f"\nrolling restart: sent {tallies[0].sent + tallies[1].sent}, acked {len(acked)}, "
              f"delivered to each {len(acked)}, lost 0, unavailable answers "
              f"{tallies[0].unavailable + tallies[1].unavailable}, reconnects "
              f"{tallies[0].reconnects + tallies[1].reconnects - 2}")
