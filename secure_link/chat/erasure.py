"""Removing messages for good: delete for everyone, and the expiry sweeper.

What a removal deletes goes in one transaction: the rows, and the conversation's
key when nothing is left under it (clearing.py clears whole conversations:
logout, deleting an account). A file's path is recorded in `doomed_files` in the same commit that
deletes its row, and the record goes only once the file is gone from disk
(files/cleanup.py): a process killed in between leaves the record, and a later
sweep (on any worker) unlinks the file. Both parties' connections hear of each
removal (`deleted`, or `cleared` for a whole conversation).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from pathlib import Path

import asyncpg

from secure_link.accounts import User
from secure_link.chat.messages import ChatServices
from secure_link.db import Database
from secure_link.encryption import pair_of
from secure_link.errors import AppError, blocked
from secure_link.fanout import Fanout, Outgoing, events
from secure_link.files import unlink_doomed

SWEEP_BATCH = 500
STALE_DOOMED_S = 30.0  # a record this old was left by a process that died before unlinking
log = logging.getLogger("secure_link.erasure")


async def delete_for_everyone(services: ChatServices, user: User, message_id: int) -> dict[str, int]:
    """Delete one message of the user's conversations, its file gone from disk before the answer;
    the conversation's key too when that was its last message and it has no timer."""
    db = services.db
    async with db.transaction() as conn:
        parties = await db.fetchrow("find_message_parties", message_id, user.id, conn=conn)
        if parties is not None:
            await db.execute("lock_pair_messages", *parties, conn=conn)
            if await db.fetchval("blocked_between", *parties, conn=conn):
                raise blocked()
        row = await db.fetchrow("delete_message_for_everyone", message_id, user.id, conn=conn)
        if row is None:
            raise AppError(404, "not_found", "No such message (or it has expired).")
        pair = pair_of(row["sender_id"], row["recipient_id"])
        if await db.fetchval("forget_unused_conversation_key", *pair, conn=conn) is not None:
            services.bodies.forget(pair)
    await unlink_doomed(db, services.settings.media_root, row["doomed"] or [])
    await announce_removals(services.fanout, [row], "deleted")
    return {"id": row["id"], "files": row["files"]}


async def sweep_expired(db: Database, fanout: Fanout, media_root: Path) -> int:
    """Delete what has expired, batch by batch, and tell both parties; returns how many went."""
    swept = 0
    while True:
        rows = await db.fetch("sweep_expired_messages", SWEEP_BATCH)
        if rows:
            await unlink_doomed(db, media_root, rows[0]["doomed"] or [])
            await announce_removals(fanout, rows, "expired")
        swept += len(rows)
        if len(rows) < SWEEP_BATCH:
            return swept


async def finish_doomed(db: Database, media_root: Path) -> None:
    """Unlink the files whose rows are gone but whose process died before their unlinking."""
    rows = await db.fetch("list_stale_doomed_files", STALE_DOOMED_S, SWEEP_BATCH)
    await unlink_doomed(db, media_root, [row["path"] for row in rows])


async def run_sweeper(db: Database, fanout: Fanout, media_root: Path, interval: float) -> None:
    """Forever: sweep every `interval` seconds (workers share the work: SKIP LOCKED)."""
    while True:
        try:
            await sweep_expired(db, fanout, media_root)
            await finish_doomed(db, media_root)
        except Exception:  # the database may be restarting: the next round tries again
            log.warning("expiry sweep failed; retrying in %.1f s", interval, exc_info=True)
        await asyncio.sleep(interval)


async def announce_removals(fanout: Fanout, rows: list[asyncpg.Record], reason: str) -> None:
    """`deleted` to every connection of both parties, one frame per conversation and side, all
    in one fan-out round trip (a sweep may end hundreds of conversations at once)."""
    by_side: dict[tuple[int, str], list[int]] = defaultdict(list)
    for row in rows:
        by_side[(row["sender_id"], row["recipient"])].append(row["id"])
        by_side[(row["recipient_id"], row["sender"])].append(row["id"])
    batch = [Outgoing([events.user_channel(user_id)], events.deleted(peer, ids, reason).envelope())
             for (user_id, peer), ids in by_side.items()]
    try:
        await fanout.publish_batch(batch)
    except Exception:  # deleted already: a missed frame is made up by the client's reload on resync
        log.warning("announcing %d deletions failed", len(rows), exc_info=True)
