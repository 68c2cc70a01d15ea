"""Data keys in the database (each conversation's and file's own key, wrapped by the master
key), and the master key checked against them when a server starts.

keyring.py holds the master keys in memory; this module is where they meet the
database. The database knows which master keys wrap its rows (`master_keys`, ids only),
so a server started with the wrong MASTER_KEY_FILE, or without it, refuses
to start in one line instead of creating a new key that opens nothing, or
serving what it cannot decrypt (docs/privacy.md, "Encryption at rest").
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import TypeVar
from collections.abc import Awaitable, Callable

import asyncpg

from secure_link.config import ConfigError, Settings
from secure_link.db import Conn, Database
from secure_link.encryption import aead, contexts, secretfile
from secure_link.encryption.keyring import Keyring, encode_key, new_master_key

Generation = tuple[datetime.datetime, bytes]  # a conversation key's birth (its generation) and the key

MASTER_KEY_FILE_NAME = "master-key"
STEPS_AT_START = 100_000  # a host down 69 days at a step a minute still finds its way (<1 s); else copy the file
# The foreign keys that refuse a row wrapped by a retired master key.
_RETIRED_KEY_CONSTRAINTS = {"conversation_keys_master_key_fk", "files_master_key_fk"}
T = TypeVar("T")
log = logging.getLogger("secure_link.keys")


def master_key_path(settings: Settings) -> Path:
    """MASTER_KEY_FILE; on the embedded database, var/master-key; else a one-line refusal."""
    if settings.master_key_file:
        return settings.master_key_file
    if settings.database_url is None:
        return settings.var_dir / MASTER_KEY_FILE_NAME
    raise ConfigError(
        "MASTER_KEY_FILE must be set when DATABASE_URL is: the master key of encryption at rest lives in "
        "that file, never in the database. Name a path the server may write (it is created, mode 0600, "
        "on first start) and keep it off the database's and MEDIA_ROOT's disks and backups")


async def open_keyring(db: Database, path: Path) -> Keyring:
    """The master key in `path`, checked against the ids the database knows; created on first start.

    A file is created only while the database knows no master key: otherwise
    a missing file means a lost or misplaced key, and a new one would open nothing.
    Every master key the database names must be held; a key the files hold
    and the database does not name yet (a first start, or a rotation's `.next`)
    is registered before it wraps anything.
    """
    async with db.transaction() as conn:
        await db.execute("lock_master_keys", conn=conn)
        known = {row["id"] for row in await db.fetch("list_master_keys", conn=conn)}
        if not path.exists():
            if known:
                raise ConfigError(f"MASTER_KEY_FILE {path} does not exist, and this database's keys are wrapped "
                                  f"by master key {', '.join(sorted(known))}: restore that file")
            master = new_master_key()
            secretfile.create(path, encode_key(master))
        keyring = Keyring.load(path)
        if missing := {master_id for master_id in known if not keyring.reach(master_id, STEPS_AT_START)}:
            raise ConfigError(f"MASTER_KEY_FILE {path} holds master key {', '.join(sorted(keyring.ids))}, but "
                              f"this database also has keys wrapped by {', '.join(sorted(missing))}: use the file "
                              "that holds it (with several hosts, copy it from the first one; during a rotation, "
                              "its .next file too)")
        if stepped := _newest_step(keyring, known):  # other hosts stepped while this one was down
            keyring.adopt(stepped)
        if keyring.wrap_id not in known:
            if known:  # a rotation killed between writing .next and registering it (rotation.py, step 1)
                log.warning("%s.next holds master key %s, which this database did not know: registered now; "
                            "`secure-link keys rotate` finishes the rotation", path, keyring.wrap_id)
            await db.execute("register_master_key", keyring.wrap_id, conn=conn)
    return keyring


def _newest_step(keyring: Keyring, known: set[str]) -> str | None:
    """The newest master key the database knows that is a step after the one the keyring wraps with."""
    ahead = Keyring([keyring.current])
    newest = None
    for master_id in known:
        if master_id != keyring.wrap_id and ahead.reach(master_id, STEPS_AT_START):
            newest = master_id
    return newest


async def catch_up(db: Database, keyring: Keyring, conn: Conn | None = None) -> None:
    """Wrap with the deployment's newest master key: another worker or host may have stepped it
    (epochs.py). One read (on `conn`, when the caller holds one); called before a data key is
    wrapped, and by housekeeping."""
    newest = await db.fetchval("find_newest_master_key", conn=conn)
    if newest is not None and newest != keyring.wrap_id and keyring.reach(newest):
        keyring.adopt(newest)


async def conversation_key(db: Database, keyring: Keyring, user_id: int, peer_id: int,
                           conn: Conn | None = None) -> Generation:
    """The data key of the conversation between two users and its generation, created on its first use.

    Pass `conn` to take part in the caller's transaction (a send, a clearing).
    """
    low, high = sorted((user_id, peer_id))

    async def insert(wrapped: bytes, master_id: str, savepoint: Conn) -> None:
        await db.execute("insert_conversation_key", low, high, wrapped, master_id, conn=savepoint)

    while (found := await existing_conversation_key(db, keyring, low, high, conn)) is None:
        # a logout may destroy it between the insert and the read: then make another
        await insert_wrapped(db, keyring, aead.new_key(), contexts.conversation_key(low, high), insert, conn)
    return found


async def existing_conversation_key(db: Database, keyring: Keyring, low: int, high: int,
                                    conn: Conn | None = None) -> Generation | None:
    """The conversation's current key and its generation, or None: never created, or destroyed."""
    row = await db.fetchrow("find_conversation_key", low, high, conn=conn)
    if row is None:
        return None
    return row["created_at"], keyring.unwrap(row["wrapped_key"], contexts.conversation_key(low, high))


async def forget_conversation_keys(db: Database, user_id: int, conn: Conn) -> int:
    """Destroy the keys of every conversation of the user (logout, first thing in its transaction)."""
    return len(await db.fetch("delete_user_conversation_keys", user_id, conn=conn))


async def insert_wrapped(db: Database, keyring: Keyring, key: bytes, context: bytes,
                         insert: Callable[[bytes, str, Conn], Awaitable[T]],
                         conn: Conn | None = None) -> T:
    """Run `insert(wrapped, master_key_id, conn)` with `key` wrapped by the current master key.

    If a rotation retired that master key since this process last read the key
    files, the foreign key refuses the row: the files are read again and the
    key rewrapped by the new master key, once. A savepoint keeps the caller's
    transaction usable meanwhile.
    """
    if conn is None:
        async with db.transaction() as own:
            return await insert_wrapped(db, keyring, key, context, insert, own)
    await catch_up(db, keyring, conn)
    try:
        async with conn.transaction():
            return await insert(keyring.wrap(key, context), keyring.wrap_id, conn)
    except asyncpg.ForeignKeyViolationError as exc:
        if exc.constraint_name not in _RETIRED_KEY_CONSTRAINTS:
            raise
    keyring.reload()
    await catch_up(db, keyring, conn)
    async with conn.transaction():
        return await insert(keyring.wrap(key, context), keyring.wrap_id, conn)
