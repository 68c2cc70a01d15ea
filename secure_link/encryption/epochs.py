"""Master key steps: an erasure becomes final even for someone holding the disk and the master key.

Deleting a row deletes nothing from PostgreSQL's disk at once: its WAL, dead
tuples and backups keep the row, and with it the data key the row held,
wrapped by the master key. So whoever held MASTER_KEY_FILE and the data folder
could unwrap a cleared conversation's key and read its copies (bodies, fan-out
payloads) long after the logout. Hence, after any erasure (a trigger counts
every statement that deletes conversation or file keys: `erasure_count`), the
deployment's master key takes a step:

1. the next key is derived from the current one by a one-way function
   (keyring.next_master) and its id registered, with the erasure count it covers;
2. every live data key is rewrapped by it (rotation.rewrap_all);
3. the old key is retired: `master_keys` refuses while any row still names it
   (a worker that wrapped with it meanwhile: rewrap again);
4. the key file is replaced by the new key, and the old file's bytes overwritten.

Nothing erased before the step is wrapped by a key anyone keeps, and no later
key leads back to it. Every worker and host derives the new key itself when it
meets its id (no file to copy), and rewrites its own key file (housekeeping:
`follow_on_this_host`). At most one step each KEY_STEP_INTERVAL, one at a time
in the deployment, never during a rotation. A step killed at any point leaves
two registered keys, the new one reachable from the old: the next step finishes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

from secure_link.db import Database
from secure_link.encryption import datakeys, rotation, secretfile
from secure_link.encryption.keyring import Keyring, encode_key, key_id, next_path, read_key

RETIRE_PAUSE_S = 0.05  # a worker wrapped with the old key meanwhile: rewrap again after this
log = logging.getLogger("secure_link.epochs")


@dataclasses.dataclass(frozen=True)
class Stepped:
    """What a step did: the master key now in use, data keys rewrapped, master keys retired."""

    master_key_id: str
    rewrapped: int
    retired: tuple[str, ...]


async def run(db: Database, keyring: Keyring, path: Path, interval: float) -> None:
    """Forever: step the master key when an erasure awaits it and the last step is `interval` old."""
    while True:
        try:
            await step_if_due(db, keyring, path, interval)
        except Exception:  # the database may be restarting: the next round tries again
            log.warning("master key step failed; retrying shortly", exc_info=True)
        await asyncio.sleep(min(1.0, max(0.1, interval / 2)))


async def step_if_due(db: Database, keyring: Keyring, path: Path, interval: float) -> Stepped | None:
    """A step, when an erasure came after the current key and that key is `interval` seconds old
    (or a step was left half done)."""
    if not await db.fetchval("master_key_step_due", float(interval)):
        return None
    return await step(db, keyring, path)


async def step(db: Database, keyring: Keyring, path: Path) -> Stepped | None:
    """One step (steps 1 to 4 above); None when another step or a rotation holds the lock, or
    a rotation is under way."""
    async with rotation.holding_the_key_lock(db) as held:
        if not held or next_path(path).exists():
            return None
        await datakeys.catch_up(db, keyring)
        registered = {row["id"] for row in await db.fetch("list_master_keys")}
        if registered == {keyring.wrap_id}:
            await db.execute("register_master_key", keyring.next_id())
            await datakeys.catch_up(db, keyring)
        elif not _behind(keyring, registered - {keyring.wrap_id}):
            return None  # a rotation's new key, held by another host: its rerun finishes it
        rewrapped = 0
        while True:
            rewrapped += await rotation.rewrap_all(db, keyring)
            retired = await rotation.retire_others(db, keyring.wrap_id)
            if retired is not None:
                break
            await asyncio.sleep(RETIRE_PAUSE_S)
        advance_key_file(path, keyring.current)
        keyring.forget(set(retired))
        log.info("master key stepped to %s: %d data keys rewrapped, %s retired", keyring.wrap_id, rewrapped,
                 ", ".join(retired) or "none")
        return Stepped(keyring.wrap_id, rewrapped, retired)


async def follow_on_this_host(db: Database, keyring: Keyring, path: Path) -> None:
    """Wrap with the deployment's newest key, forget retired ones, and give this host's key file
    the new key once its own is retired (housekeeping, on every host)."""
    await datakeys.catch_up(db, keyring)
    registered = {row["id"] for row in await db.fetch("list_master_keys")}
    if keyring.wrap_id in registered and not next_path(path).exists():
        keyring.forget(keyring.ids - registered)
        if read_key(path) != keyring.current and key_id(read_key(path)) not in registered:
            advance_key_file(path, keyring.current)


def _behind(keyring: Keyring, others: set[str]) -> bool:
    """Whether every other registered key is an earlier step of the one the keyring wraps with."""
    return all(other in keyring.ids and Keyring([keyring.key_for(other)]).reach(keyring.wrap_id)
               for other in others)


def advance_key_file(path: Path, master: bytes) -> bool:
    """Write `master` to the key file if it is a later step of the file's key (never an earlier one,
    nor another key); the old key's bytes are overwritten. One worker of a host at a time."""
    with secretfile.locked_folder(path.parent):
        held = read_key(path)
        if held == master or not Keyring([held]).reach(key_id(master), datakeys.STEPS_AT_START):
            return False
        secretfile.replace(path, encode_key(master))
        return True
