"""Applying sql/schema.sql and its numbered migrations when a server starts.

Every `serve` start (and every worker's) runs `apply_schema`, usually beside
servers already busy with traffic: a rolling restart. So it must neither hold
their statements up nor deadlock with them:

- `schema.sql` runs only when it is new to the database (its SHA-256 is
  recorded in `schema_digests`): its `ALTER TABLE … IF NOT EXISTS` lock a
  table even when they change nothing.
- When it or a migration does run, its transaction first takes every table
  of the schema at once, waiting at most `LOCK_TIMEOUT` (below PostgreSQL's
  one-second `deadlock_timeout`), and then never waits again. If the tables
  are busy it gives way, rolls back, and tries again a moment later. It
  never waits while holding a lock that a running server's transaction
  waits for, so no deadlock can make one of their sends the victim.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from pathlib import Path

import asyncpg

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "sql"
LOCK_TIMEOUT = "200ms"  # per attempt: the longest a busy server's statements queue behind one
GIVE_WAY_FOR_S = 120.0  # then the start fails, saying why
log = logging.getLogger("secure_link.schema")


async def apply_schema(url: str, schema_dir: Path = SCHEMA_DIR) -> list[int]:
    """Create the schema if missing, then apply numbered migrations not yet recorded.

    `sql/schema.sql` is the whole current schema and records the versions it
    already contains; `sql/migrations/NNNN_name.sql` upgrade older databases.
    Returns the versions applied now.
    """
    schema = (schema_dir / "schema.sql").read_text(encoding="utf-8")
    digest = hashlib.sha256(schema.encode("utf-8")).hexdigest()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("SELECT pg_advisory_lock(7000, 0)")  # one migrator at a time
        await connection.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        if not await _schema_recorded(connection, digest):
            await _giving_way(connection, schema, "INSERT INTO schema_digests (digest) VALUES ($1) "
                                                  "ON CONFLICT DO NOTHING", digest)
        done = {row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, path in _migrations(schema_dir / "migrations"):
            if version not in done:
                await _giving_way(connection, path.read_text(encoding="utf-8"),
                                  "INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied.append(version)
        return applied
    finally:
        await connection.close()


async def _schema_recorded(connection: asyncpg.Connection, digest: str) -> bool:
    """Whether this very schema.sql was applied before: reading the record locks no busy table."""
    if await connection.fetchval("SELECT to_regclass('schema_digests')") is None:
        return False  # a new database, or one from before the record (or made with plain psql)
    return bool(await connection.fetchval("SELECT EXISTS (SELECT 1 FROM schema_digests WHERE digest = $1)", digest))


async def _giving_way(connection: asyncpg.Connection, script: str, record: str, key: object) -> None:
    """Run `script` and its `record` in one transaction that holds every table first; while
    the tables are busy, roll back and try again after a growing pause."""
    deadline = time.monotonic() + GIVE_WAY_FOR_S
    pause = 0.1
    while True:
        try:
            async with connection.transaction():
                await _take_every_table(connection)
                await connection.execute(script)
                await connection.execute(record, key)
            return
        except asyncpg.LockNotAvailableError:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("schema: tables busy with running servers; trying again in %.1f s", pause)
            await asyncio.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 5.0)


async def _take_every_table(connection: asyncpg.Connection) -> None:
    """ACCESS EXCLUSIVE on every table and view of the schema, in one statement: the script
    after it then waits for none of them. A new database has none yet."""
    names = await connection.fetchval(
        "SELECT string_agg(format('%I', relname), ', ' ORDER BY relname) FROM pg_class "
        "WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'v', 'p')")
    if names:
        await connection.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")


def _migrations(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        prefix = path.name.split("_", 1)[0]
        if not prefix.isdigit():
            raise ValueError(f"{path}: migration files are named NNNN_description.sql")
        found.append((int(prefix), path))
    return found
