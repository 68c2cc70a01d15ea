"""`secure-link keys rotate`: a new master key, every data key rewrapped, the old key retired.

Crash-safe at every step, and a rerun finishes what a crash left:
1. the new key's id is registered in `master_keys`, then the key is written to
   `MASTER_KEY_FILE.next` (an existing `.next` is reused: a resumed rotation);
   servers hold both files' keys and wrap new data keys with `.next`;
2. every conversation key and file key not wrapped by the new key is
   rewrapped, in batches of `BATCH` rows, one transaction each;
3. every other master key id is deleted from `master_keys`, which the foreign
   keys allow only once no row names it (a server still wrapping with the old
   key meanwhile makes this fail: back to 2);
4. `.next` replaces `MASTER_KEY_FILE` (an atomic rename): the old key is gone.
Only step 4 destroys a key, and only when nothing is wrapped by it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import asyncpg

from . import secretfile
from .db import Database
from .keyring import Keyring, encode_key, key_id, new_master_key, next_path
from .keys import conversation_context, file_key_context

BATCH = 500


@dataclasses.dataclass(frozen=True)
class Rotated:
    """What a rotation did: the master key now in use, keys rewrapped, master keys retired."""

    master_key_id: str
    rewrapped: int
    retired: tuple[str, ...]


async def prepare(db: Database, path: Path) -> Keyring:
    """Step 1: the new key registered and in `path.next` (reused if there); the keyring of both files."""
    upcoming = next_path(path)
    if not upcoming.exists():
        master = new_master_key()
        await db.execute("register_master_key", key_id(master))  # before any server can wrap with it
        secretfile.create(upcoming, encode_key(master))
    keyring = Keyring.load(path)
    await db.execute("register_master_key", keyring.wrap_id)
    return keyring


async def rotate(db: Database, path: Path) -> Rotated:
    """Steps 1 to 4; safe to run again after a crash at any point, and while servers run."""
    keyring = await prepare(db, path)
    rewrapped = 0
    while True:
        rewrapped += await _rewrap_all(db, keyring)
        retired = await _retire_others(db, keyring.wrap_id)
        if retired is not None:
            break
    if next_path(path).exists():
        os.replace(next_path(path), path)
        _sync_folder(path.parent)
    return Rotated(keyring.wrap_id, rewrapped, retired)


async def _rewrap_all(db: Database, keyring: Keyring) -> int:
    """Step 2: rewrap every key not wrapped by the keyring's current master key; how many were."""
    done = 0
    while count := await _rewrap_batch(db, keyring):
        done += count
    return done


async def _rewrap_batch(db: Database, keyring: Keyring) -> int:
    """One batch of conversation keys, then of file keys, each in its own transaction."""
    async with db.transaction() as conn:
        rows = await db.fetch("list_conversation_keys_to_rewrap", keyring.wrap_id, BATCH, conn=conn)
        if rows:
            wrapped = [keyring.rewrap(row["wrapped_key"], conversation_context(row["low_user_id"], row["high_user_id"]))
                       for row in rows]
            await db.execute("rewrap_conversation_keys", [row["low_user_id"] for row in rows],
                             [row["high_user_id"] for row in rows], wrapped, keyring.wrap_id, conn=conn)
    async with db.transaction() as conn:
        files = await db.fetch("list_file_keys_to_rewrap", keyring.wrap_id, BATCH, conn=conn)
        if files:
            wrapped = [keyring.rewrap(row["wrapped_key"], file_key_context(row["id"])) for row in files]
            await db.execute("rewrap_file_keys", [row["id"] for row in files], wrapped, keyring.wrap_id, conn=conn)
    return len(rows) + len(files)


async def _retire_others(db: Database, keep: str) -> tuple[str, ...] | None:
    """Step 3: delete every other master key id; None if a row still names one (rewrap again)."""
    retired = []
    for row in await db.fetch("list_master_keys"):
        if row["id"] == keep:
            continue
        try:
            await db.execute("retire_master_key", row["id"])
        except asyncpg.ForeignKeyViolationError:
            return None
        retired.append(row["id"])
    return tuple(retired)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable before reporting success."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
