"""The `secure-link` command, run as a user would: a real process each time."""

from __future__ import annotations

import asyncpg

from ..conftest import run_cli


async def test_db_init_creates_the_schema_and_db_url_names_the_database(blank_database: str) -> None:
    code, out, err = await run_cli("db", "init", DATABASE_URL=blank_database)
    assert code == 0, err
    assert "schema ready" in out
    connection = await asyncpg.connect(blank_database)
    try:
        versions = [row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == [1, 2, 3, 4, 5, 6, 7]  # everything schema.sql holds, recorded once
    finally:
        await connection.close()
    code, out, _ = await run_cli("db", "url", DATABASE_URL=blank_database)
    assert code == 0 and out.strip() == blank_database


async def test_help_lists_every_command() -> None:
    code, out, _ = await run_cli("--help")
    assert code == 0
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == {"serve", "db", "media", "keys", "openapi", "audit", "invites", "users"}
    code, out, _ = await run_cli("serve", "--help")
    assert code == 0 and "--workers" in out and "--reload" in out
    code, out, _ = await run_cli("keys", "rotate", "--help")
    assert code == 0 and "--prepare" in out
