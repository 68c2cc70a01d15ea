"""`secure-link keys rotate`: a new master key, every data key rewrapped, the old key retired.

One rotation runs at a time (a lock in PostgreSQL; a second is refused at
once). A rotation killed at any step leaves a state servers start in, and a
rerun finishes it (docs/privacy.md, "Rotating the master key"):
1. under the lock servers take to check the key files at start, the new key
   is written to `MASTER_KEY_FILE.next` (a private file, fsynced with its
   folder; an existing `.next` is kept: a resumed rotation), and only then
   its id is registered in `master_keys`. So every id the database names has
   its file; a `.next` not yet registered (killed in between) is registered
   by the next server to start or by the rerun (datakeys.open_keyring). Servers
   hold both files' keys and wrap new data keys with `.next`;
2. every conversation key and file key not wrapped by the new key is
   rewrapped, in batches of `BATCH` rows, one transaction each;
3. every other master key id is deleted from `master_keys`, which the foreign
   keys allow only once no row names it (a server still wrapping with the old
   key meanwhile makes this fail: back to 2);
4. `.next` replaces `MASTER_KEY_FILE` (an atomic rename), then the folder is
   fsynced. Killed after the rename, the rotation is done (a rerun starts
   another); a power cut before the fsync may undo the rename: the state after 3.
Only step 4 destroys a key, and only when nothing is wrapped by it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from collections.abc import AsyncIterator

import asyncpg

from secure_link.config import ConfigError
from secure_link.db import Database
from secure_link.encryption import contexts, datakeys, secretfile
from secure_link.encryption.keyring import Keyring, encode_key, new_master_key, next_path

BATCH = 500


class RotationRunning(Exception):
    """Another `keys rotate` holds the rotation lock on this database."""


@dataclasses.dataclass(frozen=True)
class Rotated:
    """What a rotation did: the master key now in use, keys rewrapped, master keys retired."""

    master_key_id: str
    rewrapped: int
    retired: tuple[str, ...]


async def prepare(db: Database, path: Path) -> Keyring:
    """Step 1 alone (`keys rotate --prepare`, before copying `.next` to other hosts)."""
    async with _one_at_a_time(db):
        return await _prepare(db, path)


async def rotate(db: Database, path: Path) -> Rotated:
    """Steps 1 to 4; safe to run again after a crash at any point, and while servers run."""
    async with _one_at_a_time(db):
        keyring = await _prepare(db, path)
        rewrapped = 0
        while True:
            rewrapped += await rewrap_all(db, keyring)
            retired = await retire_others(db, keyring.wrap_id)
            if retired is not None:
                break
        os.replace(next_path(path), path)
        secretfile.sync_folder(path.parent)
    return Rotated(keyring.wrap_id, rewrapped, retired)


@contextlib.asynccontextmanager
async def _one_at_a_time(db: Database) -> AsyncIterator[None]:
    """The rotation lock, held by a connection of its own until the rotation ends.

    Two rotations at once could each make a new key, and register one no file
    keeps. A session lock, not a transaction's: the rotation is many
    transactions. A killed rotation's session ends with it, and so does the lock.
    """
    async with holding_the_key_lock(db) as held:
        if not held:
            holder = await db.fetchval("find_rotation_holder")
            raise RotationRunning(f"another `secure-link keys rotate` is running on this database (PostgreSQL "
                                  f"session {holder}): let it finish, or run this again once it has stopped")
        yield


@contextlib.asynccontextmanager
async def holding_the_key_lock(db: Database) -> AsyncIterator[bool]:
    """The lock of whatever changes the master key (a rotation, a step: epochs.py), if free."""
    async with db.pool.acquire() as conn:
        held = bool(await db.fetchval("try_lock_rotation", conn=conn))
        try:
            yield held
        finally:
            if held:
                await db.execute("unlock_rotation", conn=conn)


async def _prepare(db: Database, path: Path) -> Keyring:
    """Step 1: the new key in `path.next` (kept if there), then registered; the keyring of both files."""
    for named in (path, next_path(path)):
        if named.is_symlink():  # renamed over, or into, MASTER_KEY_FILE: a key would stay where a link points
            raise ConfigError(f"{named} is a symbolic link: a rotation renames .next over MASTER_KEY_FILE, which "
                              "would replace the link and leave the key where it points. Put the file itself there")
    await datakeys.open_keyring(db, path)  # the files are the ones this database needs
    async with db.transaction() as conn:
        await db.execute("lock_master_keys", conn=conn)
        secretfile.create(next_path(path), encode_key(new_master_key()))  # False: a resumed rotation's is kept
        keyring = Keyring.load(path)
        await db.execute("register_master_key", keyring.wrap_id, conn=conn)
    return keyring


async def rewrap_all(db: Database, keyring: Keyring) -> int:
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
            wrapped = [keyring.rewrap(row["wrapped_key"], contexts.conversation_key(row["low_user_id"], row["high_user_id"]))
                       for row in rows]
            await db.execute("rewrap_conversation_keys", [row["low_user_id"] for row in rows],
                             [row["high_user_id"] for row in rows], wrapped, keyring.wrap_id, conn=conn)
    async with db.transaction() as conn:
        files = await db.fetch("list_file_keys_to_rewrap", keyring.wrap_id, BATCH, conn=conn)
        if files:
            wrapped = [keyring.rewrap(row["wrapped_key"], contexts.file_key(row["id"])) for row in files]
            await db.execute("rewrap_file_keys", [row["id"] for row in files], wrapped, keyring.wrap_id, conn=conn)
    return len(rows) + len(files)


async def retire_others(db: Database, keep: str) -> tuple[str, ...] | None:
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
