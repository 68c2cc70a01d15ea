"""What one master key step costs (secure_link/encryption/epochs.py), by how many data keys are live.

    .venv/bin/python -m bench.keysteps                    # 1,000, 10,000 and 50,000 keys
    .venv/bin/python -m bench.keysteps --keys 2000        # a quick look

On a scratch database of DATABASE_URL or the local PostgreSQL: `--keys` data keys (half
conversation keys, half file keys), each truly wrapped by the master key, then one step
timed: seconds in all, microseconds per key, and the WAL it wrote. Prints a table and
writes bench/results/keysteps.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any


from secure_link.encryption import contexts, datakeys, epochs
from secure_link.db import Database
from secure_link.ops import devdb
from secure_link.encryption.keyring import Keyring
from secure_link.schema import apply_schema

RESULTS = Path(__file__).resolve().parent / "results" / "keysteps.json"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


async def one_step(pg_url: str, count: int) -> dict[str, Any]:
    """`count` live data keys, one step over them: its seconds, µs per key and WAL bytes."""
    name = f"bench_steps_{secrets.token_hex(3)}"
    await devdb.create_database(pg_url, name)
    url = devdb.with_database(pg_url, name)
    try:
        await apply_schema(url)
        key_file = Path(tempfile.mkdtemp(prefix="bench-steps-")) / "master-key"
        db = await Database.connect(url, min_size=1, max_size=4)
        try:
            keyring = await datakeys.open_keyring(db, key_file)
            await stored_keys(db, keyring, count)
            wal_before = await db.pool.fetchval("SELECT pg_current_wal_lsn()")
            started = time.perf_counter()
            stepped = await epochs.step(db, keyring, key_file)
            seconds = time.perf_counter() - started
            wal = await db.pool.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", wal_before)
        finally:
            await db.close()
    finally:
        await devdb.drop_database(pg_url, name)
    assert stepped is not None and stepped.rewrapped == count, stepped
    return {"keys": count, "seconds": round(seconds, 3), "us_per_key": round(seconds / count * 1e6, 1),
            "wal_mb": round(float(wal) / 1e6, 2)}


async def stored_keys(db: Database, keyring: Keyring, count: int) -> None:
    """Half conversations (pairs of new users), half files, each with a really wrapped key."""
    pairs = count // 2
    async with db.transaction() as conn:
        users = [row["id"] for row in await conn.fetch(
            "INSERT INTO users (username, display_name, phrase_hash) "
            "SELECT 'steps_' || g, 'bench', '\\x00' FROM generate_series(1, $1) g RETURNING id", 2 * pairs)]
        rows = [(low, high, keyring.new_data_key(contexts.conversation_key(low, high))[1])
                for low, high in zip(users[0::2], users[1::2])]
        await conn.executemany("INSERT INTO conversation_keys (low_user_id, high_user_id, wrapped_key, "
                               "master_key_id) VALUES ($1, $2, $3, $4)",
                               [(low, high, wrapped, keyring.wrap_id) for low, high, wrapped in rows])
        files = [(f"f{n:08d}{secrets.token_hex(4)}", ) for n in range(count - pairs)]
        await conn.executemany(
            "INSERT INTO files (id, owner_id, purpose, path, name, content_type, size, sha256, wrapped_key, "
            "master_key_id) VALUES ($1, $2, 'attachment', $1, 'n.txt', 'text/plain', 1, '', $3, $4)",
            [(file_id, users[0], keyring.new_data_key(contexts.file_key(file_id))[1], keyring.wrap_id)
             for (file_id,) in files])
        await conn.execute("SELECT nextval('erasure_count')")  # an erasure awaits the step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="*", default=[1_000, 10_000, 50_000])
    args = parser.parse_args()
    pg_url = os.environ.get("DATABASE_URL") or LOCAL_PG
    runs = [asyncio.run(one_step(pg_url, count)) for count in args.keys]
    print(f"{'live data keys':>15}{'step, s':>10}{'µs a key':>10}{'WAL, MB':>10}")
    for run in runs:
        print(f"{run['keys']:>15,}{run['seconds']:>10.2f}{run['us_per_key']:>10.1f}{run['wal_mb']:>10.1f}")
    print(f"(load average {os.getloadavg()[0]:.1f})")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"runs": runs, "load_average": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
