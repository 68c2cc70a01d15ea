"""Real parts for every test: a PostgreSQL server, a uvicorn server, real clients.

One PostgreSQL server per session (the embedded one, or TEST_DATABASE_URL),
a template database holding the schema, and a fresh copy of it per module.
Each module gets its own uvicorn on a free loopback port, stopped in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import uuid
from pathlib import Path
from typing import AsyncIterator

import asyncpg
import pytest
import uvicorn

from secure_link import devdb
from secure_link.app import create_app
from secure_link.config import PROJECT_ROOT, Settings
from secure_link.db import apply_schema

from .story import Server

TEMPLATE = f"sl_template_{os.getpid()}"
TEST_PEPPER = "tests-only-pepper"


def pytest_configure(config: pytest.Config) -> None:
    """Servers the tests start in their own processes share one pepper: on a real
    DATABASE_URL the server refuses to start without one (docs/security.md)."""
    os.environ.setdefault("SECRET_PEPPER", TEST_PEPPER)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """A PostgreSQL server URL: TEST_DATABASE_URL, else the embedded server under var/."""
    url = os.environ.get("TEST_DATABASE_URL")
    return url or devdb.start_server(PROJECT_ROOT / "var", folder="pgdata-test")


@pytest.fixture(scope="session")
async def template_database(pg_server_url: str) -> AsyncIterator[str]:
    """A database with the schema applied once; each module copies it (~50 ms)."""
    await devdb.drop_database(pg_server_url, TEMPLATE)
    await devdb.create_database(pg_server_url, TEMPLATE)
    await apply_schema(devdb.with_database(pg_server_url, TEMPLATE))
    yield TEMPLATE
    await devdb.drop_database(pg_server_url, TEMPLATE)


@pytest.fixture(scope="module")
async def database_url(pg_server_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh database for this module, dropped afterwards."""
    name = f"sl_test_{uuid.uuid4().hex[:12]}"
    await devdb.create_database(pg_server_url, name, template=template_database)
    yield devdb.with_database(pg_server_url, name)
    await devdb.drop_database(pg_server_url, name)


@pytest.fixture(scope="module")
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection, to check what was (and was not) stored."""
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """REDIS_URL; outside CI an unset one skips, in CI an unreachable one fails."""
    url = os.environ.get("REDIS_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("REDIS_URL must be set in CI")
        pytest.skip("REDIS_URL is not set")
    return url


def settings_for(database_url: str, media_root: Path, **changes: object) -> Settings:
    """Fast, permissive settings for tests; a test that checks a limit turns it on."""
    base = Settings(database_url=database_url, media_root=media_root, var_dir=media_root.parent / "var",
                    pepper=TEST_PEPPER, bcrypt_rounds=4, register_rate_per_min=0, login_failures_per_15_min=0,
                    chat_rate_per_s=0, ws_auth_timeout=2.0)
    return base.replace(**changes)


@pytest.fixture(scope="module")
def media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def settings(database_url: str, media_root: Path) -> Settings:
    """The module's settings; override this fixture in a module to change a limit."""
    return settings_for(database_url, media_root)


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a process a test started, by its PID: SIGTERM, then SIGKILL if it will not go."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[str]:
    """uvicorn on a free loopback port, in this event loop; yields host:port, stops in finally."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(config)
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


@contextlib.asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[Server]:
    """The app with these settings, served as `secure-link serve` would."""
    config = uvicorn.Config(create_app(settings), lifespan="on", log_level="warning",
                            ws_max_size=settings.ws_max_frame_bytes, ws_per_message_deflate=False,
                            proxy_headers=False, access_log=False, timeout_graceful_shutdown=5)
    async with serving(config) as address:
        yield Server(address, settings)


@pytest.fixture
async def blank_database(pg_server_url: str) -> AsyncIterator[str]:
    """An empty database (no schema), dropped afterwards."""
    name = f"sl_blank_{uuid.uuid4().hex[:8]}"
    await devdb.create_database(pg_server_url, name)
    yield devdb.with_database(pg_server_url, name)
    await devdb.drop_database(pg_server_url, name)


@pytest.fixture(scope="module")
async def server(settings: Settings) -> AsyncIterator[Server]:
    async with running_server(settings) as running:
        yield running
