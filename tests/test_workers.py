"""Two server processes share one database: Alice on one, Bob on the other.

Each process is a real `python -m secure_link serve`, started on a free port
and stopped by its PID. The fan-out between them is PostgreSQL LISTEN/NOTIFY
or Redis; both are cut mid-conversation and nobody may lose a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from typing import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from secure_link.config import PROJECT_ROOT

from .conftest import stop_process
from .story import Person, Server, Socket
from .test_sync import sync


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.asynccontextmanager
async def server_process(database_url: str, broadcast_url: str, settings, workers: int = 1,  # type: ignore[no-untyped-def]
                         **extra_env: str) -> AsyncIterator[Server]:
    """A server in its own process; stopped by PID however the test ends."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "BROADCAST_URL": broadcast_url,
           "BCRYPT_ROUNDS": "4", "CHAT_RATE_PER_S": "0", "REGISTER_RATE_PER_MIN": "0",
           "LOGIN_FAILURES_PER_15_MIN": "0", "SECURE_LINK_LOG_LEVEL": "warning", **extra_env}
    process = subprocess.Popen([sys.executable, "-m", "secure_link", "serve", "--port", str(port),
                                "--workers", str(workers)], env=env, cwd=PROJECT_ROOT)
    try:
        await _wait_until_serving(port, process)
        yield Server(f"127.0.0.1:{port}", settings, pid=process.pid)
    finally:
        stop_process(process)


async def _wait_until_serving(port: int, process: subprocess.Popen) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            assert process.poll() is None, "server process exited during start-up"
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError("server did not become ready in 15 s")


@pytest.fixture
def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server must be installed in CI")
        pytest.skip("redis-server is not installed")
    return path


@contextlib.contextmanager
def private_redis(binary: str, port: int) -> Iterator[subprocess.Popen]:
    """A Redis of our own on a free port, so restarting it disturbs nobody else's."""
    folder = tempfile.mkdtemp(prefix="sl-redis-")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", folder], stdout=subprocess.DEVNULL)
    try:
        yield process
    finally:
        stop_process(process)
        shutil.rmtree(folder, ignore_errors=True)


async def wait_for_redis(port: int) -> None:
    for _ in range(100):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise AssertionError("redis did not start")


async def converse(alice: Person, alice_tab: Socket, bob: Person, bob_tab: Socket, text: str) -> dict:
    """Alice says something on her worker; Bob hears it live on his."""
    sent = await alice.say(alice_tab, bob, text)
    assert (await bob_tab.expect("chat", timeout=10))["message"] == sent
    return sent


async def pair(a: Server, b: Server) -> tuple[Person, Socket, Person, Socket]:
    alice, bob = await a.person("alice").register(), await b.person("bob").register()
    return alice, await alice.connect(), bob, await bob.connect()


@pytest.mark.parametrize("backend", ["postgres", "redis"])
async def test_messages_cross_workers(backend: str, database_url: str, settings, request) -> None:  # type: ignore[no-untyped-def]
    broadcast = database_url if backend == "postgres" else request.getfixturevalue("redis_url")
    async with server_process(database_url, broadcast, settings) as one, \
            server_process(database_url, broadcast, settings) as two:
        alice, alice_tab, bob, bob_tab = await pair(one, two)
        await converse(alice, alice_tab, bob, bob_tab, "from worker one")
        await converse(bob, bob_tab, alice, alice_tab, "and back from two")
        alice_phone = await alice.connect()  # a second tab, on the other worker's peer
        sent = await alice.say(alice_tab, bob, "both tabs")
        assert (await alice_phone.expect("chat", timeout=10))["message"] == sent


async def test_killing_the_listen_connection_loses_nothing(database_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    async with server_process(database_url, database_url, settings) as one, \
            server_process(database_url, database_url, settings) as two:
        alice, alice_tab, bob, bob_tab = await pair(one, two)
        first = await converse(alice, alice_tab, bob, bob_tab, "before the cut")
        admin = await asyncpg.connect(database_url)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'secure_link_fanout_listen'")
        finally:
            await admin.close()
        assert killed >= 2
        during = [(await alice.say(alice_tab, bob, f"during {i}"))["id"] for i in range(5)]
        await _delivery_resumes(alice, alice_tab, bob, bob_tab)
        ids, _ = await sync(bob_tab, first["id"])
        assert set(during) <= set(ids)


async def _delivery_resumes(alice: Person, alice_tab: Socket, bob: Person, bob_tab: Socket) -> None:
    """Within a bounded time, a fresh message arrives live again."""
    for attempt in range(40):
        sent = await alice.say(alice_tab, bob, f"are you back? {attempt}")
        with contextlib.suppress(asyncio.TimeoutError):
            while True:
                frame = await bob_tab.expect("chat", timeout=0.5)
                if frame["message"]["id"] == sent["id"]:
                    return
    raise AssertionError("live delivery did not resume")


@pytest.mark.redis
async def test_restarting_redis_loses_nothing(database_url: str, settings, redis_binary: str) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    broadcast = f"redis://127.0.0.1:{port}/0"
    with private_redis(redis_binary, port) as first_redis:
        await wait_for_redis(port)
        async with server_process(database_url, broadcast, settings) as one, \
                server_process(database_url, broadcast, settings) as two:
            alice, alice_tab, bob, bob_tab = await pair(one, two)
            first = await converse(alice, alice_tab, bob, bob_tab, "before the restart")
            first_redis.terminate()
            first_redis.wait(timeout=10)
            during = [(await alice.say(alice_tab, bob, f"while redis is down {i}"))["id"] for i in range(3)]
            with private_redis(redis_binary, port):
                await wait_for_redis(port)
                await _delivery_resumes(alice, alice_tab, bob, bob_tab)
                ids, _ = await sync(bob_tab, first["id"])
                assert set(during) <= set(ids)
