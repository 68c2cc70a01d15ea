"""The README's first command: `secure-link serve` with nothing configured.

It starts an embedded PostgreSQL under its var/ folder, serves, and on SIGTERM
stops that PostgreSQL too (uvicorn re-raises the signal, which used to skip
the cleanup and orphan the database server).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from secure_link.config import PROJECT_ROOT

from ..conftest import free_port, server_process, stop_process, wait_until_serving
from ..story import PHRASE


@pytest.fixture
def var_dir() -> Iterator[Path]:
    folder = PROJECT_ROOT / "var" / f"test-serve-{uuid.uuid4().hex[:8]}"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def postmaster_pid(var_dir: Path) -> int:
    return int((var_dir / "pgdata" / "postmaster.pid").read_text().split()[0])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("workers", [1, 2])
async def test_zero_configuration_serve_starts_and_stops_its_database(var_dir: Path, workers: int) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROADCAST_URL", "SECRET_PEPPER", "MASTER_KEY_FILE")}
    env.update(SECURE_LINK_VAR_DIR=str(var_dir), BCRYPT_ROUNDS="4", SECURE_LINK_LOG_LEVEL="warning")
    process = subprocess.Popen([sys.executable, "-m", "secure_link", "serve", "--port", str(port),  # noqa: ASYNC220 - Popen returns at once; the process is stopped by PID
                                "--workers", str(workers)], env=env, cwd=PROJECT_ROOT)
    try:
        await wait_until_serving(port, process)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            response = await http.post("/api/register/", json={"username": "first_user", "phrase": PHRASE})
            assert response.status_code == 201, response.text
            # every worker keys phrases with the one pepper created on first start
            logins = [await http.post("/api/login/", json={"username": "first_user", "phrase": PHRASE})
                      for _ in range(4)]
        assert [login.status_code for login in logins] == [200] * 4
        # and every worker encrypts with the one master key created beside it
        for secret in (var_dir / "secret-pepper", var_dir / "master-key"):
            assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text().strip()) >= 40
        database_pid = postmaster_pid(var_dir)
        assert alive(database_pid)
    finally:
        stop_process(process)
    for _ in range(100):
        if not alive(database_pid):
            break
        await asyncio.sleep(0.05)
    orphaned = alive(database_pid)
    if orphaned:
        os.kill(database_pid, signal.SIGTERM)  # leave nothing running, then fail
    assert not orphaned, "the embedded PostgreSQL outlived the server"


async def test_shutdown_acknowledges_the_message_in_flight_then_closes_with_1012(database_url: str, settings) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM while Alice's message is mid-send: she gets its ack, then 1012."""
    from websockets.asyncio.client import connect

    async with server_process(database_url, database_url, settings) as server:
        process_pid = server.pid
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        holder = await asyncpg.connect(database_url)
        try:
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("SELECT pg_advisory_xact_lock(7001, $1::int)", bob.user["id"])
            async with connect(server.ws_url, additional_headers=alice.headers) as socket:
                assert json.loads(await socket.recv())["type"] == "ready"
                await socket.send(json.dumps({"type": "chat", "to": bob.username, "message": "last words",
                                              "client_id": "drain-1"}))
                await asyncio.sleep(0.3)  # the send now waits for Bob's lock
                os.kill(process_pid, signal.SIGTERM)
                await asyncio.sleep(0.5)
                await transaction.commit()  # the send completes during the drain
                ack = json.loads(await asyncio.wait_for(socket.recv(), 5))
                assert ack["type"] == "ack" and ack["client_id"] == "drain-1"
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(socket.recv(), 10)
                assert socket.close_code == 1012
        finally:
            await holder.close()
