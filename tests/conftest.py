"""Real parts for every test: a PostgreSQL server, a uvicorn server, real clients.

One PostgreSQL server per session (the embedded one, or TEST_DATABASE_URL),
a template database holding the schema, and a fresh copy of it per module.
Each module gets its own uvicorn on a free loopback port, stopped in `finally`.

Under pytest-xdist (`make test` runs three workers) the controller starts the
embedded server and every worker uses it; each worker has its own template,
and a module's tests on two workers get a database and a server each.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.parse
import uuid
from pathlib import Path
from typing import NoReturn
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
import uvicorn

from secure_link.ops import devdb
from secure_link.app import create_app
from secure_link.config import PROJECT_ROOT, Settings
from secure_link.encryption import BodyKeys, Keyring
from secure_link.db import Database
from secure_link.schema import apply_schema
from secure_link.fanout.backends import LISTEN_NAME

from .story import OPENED, Server

TEST_PEPPER = "tests-only-pepper"
OWN_KEYS_FOLDER = pytest.StashKey[Path]()  # the folder this session made, to remove at its end
PG_SERVER_URL = pytest.StashKey[str]()  # this process's server, started at most once


def pytest_configure(config: pytest.Config) -> None:
    """Servers the tests start share one pepper and one master key, in this process and in
    their own: on a real DATABASE_URL the server refuses to start without them. The key
    file is created by the first server (docs/privacy.md), in a folder of this session's.
    xdist workers inherit the controller's through the environment; so do the sessions
    mutmut forks after its first, which is why the folder is named when a session starts."""
    os.environ.setdefault("SECRET_PEPPER", TEST_PEPPER)
    if "MASTER_KEY_FILE" not in os.environ:
        folder = Path(tempfile.gettempdir()) / f"sl-test-keys-{os.getpid()}"
        config.stash[OWN_KEYS_FOLDER] = folder
        os.environ["MASTER_KEY_FILE"] = str(folder / "master-key")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session that made the key folder removes it; a worker that ends first must not
    remove it under the others."""
    folder = config.stash.get(OWN_KEYS_FOLDER, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        del os.environ["MASTER_KEY_FILE"]


def shared_master_key_file() -> Path:
    """The master key file every test server shares (set in pytest_configure)."""
    return Path(os.environ["MASTER_KEY_FILE"])


def session_server_url(config: pytest.Config) -> str:
    """TEST_DATABASE_URL, else the embedded server under var/, started once per process."""
    if PG_SERVER_URL not in config.stash:
        url = os.environ.get("TEST_DATABASE_URL")
        config.stash[PG_SERVER_URL] = url or devdb.start_server(PROJECT_ROOT / "var", folder="pgdata-test")
    return config.stash[PG_SERVER_URL]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # type: ignore[no-untyped-def]
    """xdist's controller hands its workers one server. Were each worker to start the
    embedded one, the wheel would stop it when the first of them exits, under the rest."""
    node.workerinput["pg_server_url"] = session_server_url(node.config)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    """Before the other hooks: tests on the machine's Redis form one xdist group, run one
    at a time: its pub/sub channels (`user:1`…) and client list are server-wide, so two
    test databases' servers would hear each other. Two items with one node id stop the
    run: xdist's loadgroup scheduler would run only the first of them (schemathesis on
    pytest 9.2 made 19 so). After them (pytest groups a module's tests): `slow` tests first,
    so no xdist worker is left with one at the end; under mutmut (one process, stopping at
    the first failure) `slow` tests last, so a mutant meets the quick tests first."""
    counts = collections.Counter(item.nodeid for item in items)
    shared = sorted(nodeid for nodeid, count in counts.items() if count > 1)
    if shared:
        raise pytest.UsageError(f"several tests share each of these node ids: {shared}")
    for item in items:
        if item.get_closest_marker("redis"):
            item.add_marker(pytest.mark.xdist_group("machine-redis"))
    yield
    slow_last = "MUTANT_UNDER_TEST" in os.environ
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None) != slow_last)


@pytest.fixture(autouse=True)
async def cut_leftover_sockets() -> AsyncIterator[None]:
    """When a test ends, cut the sockets its people left open (story.OPENED), then let the
    loop finish closing them. Left to the garbage collector, a socket whose server a test
    stopped a moment before could be collected still open: a ResourceWarning, which fails
    whichever test is running when the collector gets to it."""
    yield
    for opened in OPENED:
        opened.connection.transport.abort()
    OPENED.clear()
    await asyncio.sleep(0)


@pytest.fixture(scope="session")
def pg_server_url(request: pytest.FixtureRequest) -> str:
    """A PostgreSQL server URL: the xdist controller's, TEST_DATABASE_URL, else the embedded server."""
    workerinput = getattr(request.config, "workerinput", None)
    return workerinput["pg_server_url"] if workerinput else session_server_url(request.config)


@pytest.fixture(scope="session")
async def template_database(pg_server_url: str) -> AsyncIterator[str]:
    """A database with the schema applied once; each module copies it (~50 ms). Named by
    the process, not at import: sessions mutmut forks side by side share their imports."""
    template = f"sl_template_{os.getpid()}"
    await devdb.drop_database(pg_server_url, template)
    await devdb.create_database(pg_server_url, template)
    await apply_schema(devdb.with_database(pg_server_url, template))
    yield template
    await devdb.drop_database(pg_server_url, template)


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
        pytest.skip("REDIS_URL is not set (point it at a Redis: REDIS_URL=redis://127.0.0.1:6379/0 make test)")
    return url


def settings_for(database_url: str, media_root: Path, **changes: object) -> Settings:
    """Fast, permissive settings for tests; a test that checks a limit turns it on."""
    base = Settings(database_url=database_url, media_root=media_root, var_dir=media_root.parent / "var",
                    pepper=TEST_PEPPER, master_key_file=shared_master_key_file(), bcrypt_rounds=4,
                    register_rate_per_min=0, login_failures_per_15_min=0, chat_rate_per_s=0, ws_auth_timeout=2.0)
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


@pytest.fixture
async def own_database(pg_server_url: str, template_database: str) -> AsyncIterator[str]:
    """A database for one test that breaks it on purpose (drops a table, refuses connections)."""
    name = f"sl_own_{uuid.uuid4().hex[:12]}"
    await devdb.create_database(pg_server_url, name, template=template_database)
    yield devdb.with_database(pg_server_url, name)
    await devdb.drop_database(pg_server_url, name)


@pytest.fixture(scope="module")
async def server(settings: Settings) -> AsyncIterator[Server]:
    async with running_server(settings) as running:
        yield running


# Ports for the servers tests start in other processes: below Linux's ephemeral range (32768 and
# up), so no outgoing connection takes one before its server binds it, and a slice per xdist
# worker. bind(0) could hand two workers one port in turn (free again once probed): seen as one
# test's readyz and register answered by another test's server, then "connection refused".
SERVER_PORTS = range(10_000, 32_000)


def free_port(address: str = "127.0.0.1") -> int:
    """A port nobody listens on right now at `address`, from this xdist worker's slice."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    width = len(SERVER_PORTS) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    first = SERVER_PORTS.start + worker * width
    for _ in range(200):
        port = random.randrange(first, first + width)
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind((address, port))
            return port
    raise AssertionError(f"no free port in {first}..{first + width - 1}")


@contextlib.asynccontextmanager
async def server_process(database_url: str, broadcast_url: str, settings: Settings, workers: int = 1,
                         **extra_env: str) -> AsyncIterator[Server]:
    """A server in its own process (`workers` of them on one port); stopped by PID however the test ends."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "BROADCAST_URL": broadcast_url,
           "BCRYPT_ROUNDS": "4", "CHAT_RATE_PER_S": "0", "REGISTER_RATE_PER_MIN": "0",
           "LOGIN_FAILURES_PER_15_MIN": "0", "SECURE_LINK_LOG_LEVEL": "warning", **extra_env}
    process = subprocess.Popen([sys.executable, "-m", "secure_link", "serve", "--port", str(port),  # noqa: ASYNC220 - Popen returns at once; the process is stopped by PID
                                "--workers", str(workers)], env=env, cwd=PROJECT_ROOT)
    try:
        await wait_until_serving(port, process)
        yield Server(f"127.0.0.1:{port}", settings, pid=process.pid)
    finally:
        stop_process(process)


async def wait_until_serving(port: int, process: subprocess.Popen) -> None:
    """Poll /readyz until the process answers; fail at once if it exits."""
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            assert process.poll() is None, "server process exited during start-up"
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise AssertionError("server did not become ready in 15 s")


# The Debian package of each program a test runs, for the advice a skip gives.
DEBIAN_PACKAGES = {"nginx": "nginx", "chromium": "chromium", "redis-server": "redis-server",
                   "systemd-analyze": "systemd", "openssl": "openssl", "ip": "iproute2", "ss": "iproute2"}


def missing_in_ci(message: str) -> NoReturn:
    """A tool or right a test needs is missing: a failure in CI, a skip saying which elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def required_tool(name: str) -> str:
    """The path of a program a test runs (missing: see `missing_in_ci`)."""
    path = shutil.which(name)
    if path is None:
        missing_in_ci(f"{name} is not installed (sudo apt-get install {DEBIAN_PACKAGES.get(name, name)})")
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """A green run must not hide what it did not test: the skipped tests, counted by reason,
    each reason saying what to install (`make test` installs what it can when run as root)."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons = collections.Counter(_skip_reason(report) for report in skipped)
    terminalreporter.section(f"{len(skipped)} test(s) SKIPPED: this run did not test everything", sep="!")
    for reason, count in reasons.most_common():
        terminalreporter.line(f"{count:5d} × {reason}")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


@pytest.fixture
def redis_binary() -> str:
    """redis-server, for tests that stop and start a Redis of their own."""
    return required_tool("redis-server")


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
    """Until the private Redis accepts connections."""
    for _ in range(100):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise AssertionError("redis did not start")


@contextlib.asynccontextmanager
async def database_refusing(pg_server_url: str, database_url: str, cut: str | None = None) -> AsyncIterator[None]:
    """The database refuses new connections until the block ends, after cutting the
    connections named `cut` (by application_name), or all of them when None.

    Pools keep any connection not cut, so in a LISTEN outage a send still
    commits while whatever it publishes is surely lost live.
    """
    name = urllib.parse.urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(pg_server_url)  # the server's default database: not the one refusing
    victims = "datname = $1 AND ($2::text IS NULL OR application_name = $2)"
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            await admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {victims}", name, cut)
            while await admin.fetchval(f"SELECT count(*) FROM pg_stat_activity WHERE {victims}", name, cut):
                await asyncio.sleep(0.01)
            yield
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()


async def run_cli(*args: str, **env: str) -> tuple[int, str, str]:
    """`secure-link ARGS` in its own process, as an operator runs it: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "secure_link", *args, cwd=PROJECT_ROOT,
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def body_keys(database_url: str) -> AsyncIterator[tuple[Database, BodyKeys]]:
    """A pool and the servers' conversation keys, through the tests' master key file: for a test
    that runs the send statement itself, and must seal bodies as the writer does."""
    database = await Database.connect(database_url, min_size=1, max_size=2)
    try:
        yield database, BodyKeys(database, Keyring.load(shared_master_key_file()))
    finally:
        await database.close()


def listen_outage(pg_server_url: str, database_url: str) -> contextlib.AbstractAsyncContextManager[None]:
    """The fan-out's LISTEN connections cut, and kept from coming back until the block ends."""
    return database_refusing(pg_server_url, database_url, cut=LISTEN_NAME)
