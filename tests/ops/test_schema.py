"""The schema bootstraps with plain psql, migrations apply once, queries load strictly."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from secure_link.ops import devdb
from secure_link.db import load_queries
from secure_link.schema import SCHEMA_DIR, apply_schema

from ..story import eventually, waiting_for_a_lock

TABLES = {"users", "sessions", "login_failures", "files", "messages", "conversation_reads",
          "workers", "live_connections", "fanout_spill", "schema_migrations", "master_keys", "conversation_keys",
          "conversation_timers", "doomed_files", "schema_digests", "used_client_ids", "invites", "blocks",
          "retired_usernames"}


async def tables_of(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row["tablename"] for row in rows}
    finally:
        await connection.close()


async def psql_file(url: str, path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        str(devdb.psql_path()), "-v", "ON_ERROR_STOP=1", "-q", "-f", str(path), url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _out, err = await process.communicate()
    assert process.returncode == 0, err.decode()


async def test_plain_psql_bootstraps_an_blank_database_twice(blank_database: str) -> None:
    assert await tables_of(blank_database) == set()
    await psql_file(blank_database, SCHEMA_DIR / "schema.sql")
    await psql_file(blank_database, SCHEMA_DIR / "schema.sql")  # idempotent
    assert await tables_of(blank_database) == TABLES


async def test_migrations_apply_in_order_once(blank_database: str, tmp_path: Path) -> None:
    shutil.copy(SCHEMA_DIR / "schema.sql", tmp_path / "schema.sql")
    shutil.copytree(SCHEMA_DIR / "migrations", tmp_path / "migrations")
    (tmp_path / "migrations" / "0101_nicknames.sql").write_text("ALTER TABLE users ADD COLUMN nickname text;")
    (tmp_path / "migrations" / "0102_index.sql").write_text("CREATE INDEX users_nickname_idx ON users (nickname);")
    assert await apply_schema(blank_database, tmp_path) == [101, 102]  # schema.sql holds the shipped ones
    assert await apply_schema(blank_database, tmp_path) == []
    connection = await asyncpg.connect(blank_database)
    try:
        versions = [row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        await connection.close()
    assert versions == [1, 2, 3, 4, 5, 6, 7, 101, 102]


async def test_a_database_from_before_a_migration_is_brought_up_to_date(blank_database: str) -> None:
    """A version-1 database (fanout_spill without its channels) gets migration 0002 at start."""
    await apply_schema(blank_database)
    connection = await asyncpg.connect(blank_database)
    try:
        await connection.execute("ALTER TABLE fanout_spill DROP COLUMN channels; DELETE FROM schema_migrations WHERE version = 2")
        assert await apply_schema(blank_database) == [2]
        assert await connection.fetchval("SELECT count(*) FROM information_schema.columns "
                                         "WHERE table_name = 'fanout_spill' AND column_name = 'channels'") == 1
    finally:
        await connection.close()


async def test_a_start_beside_busy_servers_waits_for_no_lock_on_their_tables(blank_database: str) -> None:
    """Every `serve` start applies the schema. Once this schema.sql is applied, a start must not
    queue behind the sends and uploads of servers already running (a rolling restart): its
    ALTER TABLE would hold their next statements up, or deadlock with them."""
    await apply_schema(blank_database)
    busy, watcher = await asyncpg.connect(blank_database), await asyncpg.connect(blank_database)
    try:
        async with busy.transaction():
            await busy.execute("LOCK TABLE messages, files, users IN ROW EXCLUSIVE MODE")  # as a send, an upload
            starting = asyncio.create_task(apply_schema(blank_database))
            while not starting.done():
                waiting = await watcher.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                                 "AND datname = current_database()")
                if waiting:
                    starting.cancel()
                    pytest.fail("the start waited for a lock held by a busy server")
                await asyncio.sleep(0.01)
            assert starting.result() == []
    finally:
        await watcher.close()
        await busy.close()


async def test_a_changed_schema_file_is_applied_at_the_next_start(blank_database: str, tmp_path: Path) -> None:
    """A release that edits schema.sql: its digest is new, so the file runs (and is recorded) once."""
    shutil.copy(SCHEMA_DIR / "schema.sql", tmp_path / "schema.sql")
    shutil.copytree(SCHEMA_DIR / "migrations", tmp_path / "migrations")
    await apply_schema(blank_database, tmp_path)
    with (tmp_path / "schema.sql").open("a") as schema:
        schema.write("\nCREATE TABLE IF NOT EXISTS nicknames (user_id bigint PRIMARY KEY);\n")
    await apply_schema(blank_database, tmp_path)
    assert "nicknames" in await tables_of(blank_database)
    connection = await asyncpg.connect(blank_database)
    try:
        assert await connection.fetchval("SELECT count(*) FROM schema_digests") == 2  # each file once
    finally:
        await connection.close()


async def test_a_schema_change_beside_a_busy_server_gives_way_and_fails_none_of_its_work(
        blank_database: str, tmp_path: Path) -> None:
    """A release that changes schema.sql starts beside a server in the middle of a transaction
    that holds `messages` and then wants `files`, as a send with an attachment does. The start
    may not wait for `messages` while holding `files` (the old start deadlocked there): it gives
    way, the busy transaction goes on, and the start goes through once that one has ended."""
    shutil.copy(SCHEMA_DIR / "schema.sql", tmp_path / "schema.sql")
    shutil.copytree(SCHEMA_DIR / "migrations", tmp_path / "migrations")
    await apply_schema(blank_database, tmp_path)
    with (tmp_path / "schema.sql").open("a") as schema:
        schema.write("\nCREATE TABLE IF NOT EXISTS nicknames (user_id bigint PRIMARY KEY);\n")
    busy, watcher = await asyncpg.connect(blank_database), await asyncpg.connect(blank_database)
    try:
        async with busy.transaction():
            await busy.execute("LOCK TABLE messages IN ROW EXCLUSIVE MODE")
            starting = asyncio.create_task(apply_schema(blank_database, tmp_path))
            await eventually(lambda: waiting_for_a_lock(watcher, "%"))  # holding what it took before
            await busy.execute("LOCK TABLE files IN ROW EXCLUSIVE MODE")  # no deadlock, no failure
        assert await starting == []
        assert "nicknames" in await tables_of(blank_database)
    finally:
        await watcher.close()
        await busy.close()


async def test_every_named_query_prepares_against_the_schema(db: asyncpg.Connection) -> None:
    queries = load_queries()
    assert {"insert_user", "insert_messages", "authenticate_session"} <= set(queries)
    for query in queries.values():
        try:
            await db.prepare(query.sql)
        except asyncpg.PostgresError as error:
            pytest.fail(f"{query.origin} {query.name}: {error}")


@pytest.mark.parametrize(("text", "problem"), [
    ("-- name: one\nSELECT 1;\n-- name: one\nSELECT 2;\n", "a.sql:3: duplicate query name 'one'"),
    ("-- name: empty\n-- only a comment\n-- name: two\nSELECT 2;\n", "a.sql:1: query 'empty' is empty"),
])
def test_malformed_query_files_fail_with_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "a.sql").write_text(text)
    with pytest.raises(ValueError, match=problem):
        load_queries(tmp_path)


def test_dead_processes_are_dropped_from_the_embedded_servers_handles(tmp_path: Path) -> None:
    """A killed test run must not keep every later run from stopping the server."""
    import os
    import subprocess
    import sys

    from secure_link.ops import devdb

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".handle_pids.json").write_text(f"[{dead.pid}, {os.getpid()}]")
    devdb._forget_dead_handles(tmp_path)
    assert (tmp_path / ".handle_pids.json").read_text() == f"[{os.getpid()}]"
