"""Blocking (contract v1.2): one user keeps another away; either direction keeps both apart.

A block is made under both users' send lock (as logout and deletion take it), and
the send statement reads blocks as they are once it holds those locks
(`blocked_after`, schema.sql): no send between them is stored once the block has
committed, on any worker. Timers and deletes are refused, typing, read receipts,
presence and profile changes withheld, history kept; a logout keeps the block.
"""

from __future__ import annotations

import asyncpg

from secure_link.accounts.people import find_peer
from secure_link.accounts.users import User
from secure_link.db import Database
from secure_link.fanout import Fanout, events
from secure_link.wire import JsonObject, rfc3339


async def kept_apart(db: Database, user_id: int, peer_id: int) -> bool:
    """Whether either of the two blocks the other: nothing passes between them."""
    return bool(await db.fetchval("blocked_between", user_id, peer_id))


async def block(db: Database, fanout: Fanout, user: User, username: str) -> JsonObject:
    """Block someone (again: unchanged); both stop seeing each other online at once."""
    peer = await find_peer(db, user, username)
    async with db.transaction() as conn:
        await db.execute("lock_pair_messages", user.id, peer["id"], conn=conn)  # sends in flight end first
        since = await db.fetchval("insert_block", user.id, peer["id"], conn=conn)
    await _tell_presence(db, fanout, user, peer, online=False)
    return {"username": peer["username"], "since": rfc3339(since)}


async def unblock(db: Database, fanout: Fanout, user: User, username: str) -> JsonObject:
    """Lift one's own block (fine when there is none); with no block left either way, each
    sees the other's real presence again."""
    peer = await find_peer(db, user, username)
    await db.execute("delete_block", user.id, peer["id"])
    if not await kept_apart(db, user.id, peer["id"]):
        await _tell_presence(db, fanout, user, peer, online=None)
    return {"unblocked": peer["username"]}


async def list_blocks(db: Database, user: User) -> list[JsonObject]:
    """The user's blocks, newest first."""
    return [{"username": row["username"], "since": rfc3339(row["since"])} for row in await db.fetch("list_blocks", user.id)]


async def _tell_presence(db: Database, fanout: Fanout, user: User, peer: asyncpg.Record, online: bool | None) -> None:
    """Each party's sockets learn the other's presence as it now stands between them: `online`
    False (a block: offline whatever the truth), or None (unblocked: the truth). Only between
    conversation partners, as presence goes."""
    if not await db.fetchval("conversation_exists", user.id, peer["id"]):
        return
    for viewer_id, seen_id, seen_name in ((user.id, peer["id"], peer["username"]), (peer["id"], user.id, user.username)):
        shown = online if online is not None else bool(await db.fetchval("count_connections", seen_id))
        await events.publish(fanout, [events.user_channel(viewer_id)], events.presence(seen_name, shown))
