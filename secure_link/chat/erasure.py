"""Removing messages for good: delete for everyone, the expiry sweeper, and files to unlink.

A file's path is recorded in `doomed_files` in the same commit that deletes
its row, and the record goes only once the file is gone from disk
(`media.unlink_doomed`): a process killed in between leaves the record, and a
later sweep (on any worker) unlinks the file. Both parties' connections hear of each removal (`deleted`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from secure_link.chat import messages as chat
from secure_link.files import uploads as media
from secure_link.accounts.auth import User
from secure_link.encryption.bodies import pair_of
from secure_link.errors import AppError
from secure_link.fanout.core import Outgoing
from secure_link.services import Services

SWEEP_BATCH = 500
STALE_DOOMED_S = 30.0  # a record this old was left by a process that died before unlinking
log = logging.getLogger("secure_link.erasure")


async def delete_for_everyone(services: Services, user: User, message_id: int) -> dict[str, int]:
    """Delete one message of the user's conversations, its file gone from disk before the answer;
    the conversation's key too when that was its last message and it has no timer."""
    async with services.db.transaction() as conn:
        parties = await services.db.fetchrow("find_message_parties", message_id, user.id, conn=conn)
        if parties is not None:
            await services.db.execute("lock_pair_messages", *parties, conn=conn)
        row = await services.db.fetchrow("delete_message_for_everyone", message_id, user.id, conn=conn)
        if row is None:
            raise AppError(404, "not_found", "No such message (or it has expired).")
        pair = pair_of(row["sender_id"], row["recipient_id"])
        if await services.db.fetchval("forget_unused_conversation_key", *pair, conn=conn) is not None:
            services.bodies.forget(pair)
    await media.unlink_doomed(services, row["doomed"] or [])
    await announce(services, [row], "deleted")
    return {"id": row["id"], "files": row["files"]}


async def sweep_expired(services: Services) -> int:
    """Delete what has expired, batch by batch, and tell both parties; returns how many went."""
    swept = 0
    while True:
        rows = await services.db.fetch("sweep_expired_messages", SWEEP_BATCH)
        if rows:
            await media.unlink_doomed(services, rows[0]["doomed"] or [])
            await announce(services, rows, "expired")
        swept += len(rows)
        if len(rows) < SWEEP_BATCH:
            return swept


async def finish_doomed(services: Services) -> None:
    """Unlink the files whose rows are gone but whose process died before their unlinking."""
    rows = await services.db.fetch("list_stale_doomed_files", STALE_DOOMED_S, SWEEP_BATCH)
    await media.unlink_doomed(services, [row["path"] for row in rows])


async def run_sweeper(services: Services, interval: float) -> None:
    """Forever: sweep every `interval` seconds (workers share the work: SKIP LOCKED)."""
    while True:
        try:
            await sweep_expired(services)
            await finish_doomed(services)
        except Exception:  # the database may be restarting: the next round tries again
            log.warning("expiry sweep failed; retrying in %.1f s", interval, exc_info=True)
        await asyncio.sleep(interval)


async def announce(services: Services, rows: list[Any], reason: str) -> None:
    """`deleted` to every connection of both parties, one frame per conversation and side, all
    in one fan-out round trip (a sweep may end hundreds of conversations at once)."""
    by_side: dict[tuple[int, str], list[int]] = defaultdict(list)
    for row in rows:
        by_side[(row["sender_id"], row["recipient"])].append(row["id"])
        by_side[(row["recipient_id"], row["sender"])].append(row["id"])
    events = [Outgoing([chat.user_channel(user_id)],
                       chat.encode_event({"type": "deleted", "with": peer, "ids": ids, "reason": reason}))
              for (user_id, peer), ids in by_side.items()]
    try:
        await services.fanout.publish_batch(events)
    except Exception:  # deleted already: a missed frame is made up by the client's reload on resync
        log.warning("announcing %d deletions failed", len(rows), exc_info=True)
