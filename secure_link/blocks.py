"""Blocking (contract v1.2): one user keeps another away; either direction keeps both apart.

A block is made under both users' send lock (as logout and deletion take it), and
the send statement reads blocks as they are once it holds those locks
(`blocked_after`, schema.sql): no send between them is stored once the block has
committed, on any worker. Timers and deletes are refused, typing, read receipts,
presence and profile changes withheld, history kept; a logout keeps the block.
"""

from __future__ import annotations

from typing import Any

from . import auth, chat
from .auth import User
from .services import Services


async def block(services: Services, user: User, username: str) -> dict[str, Any]:
    """Block someone (again: unchanged); both stop seeing each other online at once."""
    peer = await chat.find_peer(services, user, username)
    async with services.db.transaction() as conn:
        await services.db.execute("lock_pair_messages", user.id, peer["id"], conn=conn)  # sends in flight first
        since = await services.db.fetchval("insert_block", user.id, peer["id"], conn=conn)
    await _tell_presence(services, user, peer, online=False)
    return {"username": peer["username"], "since": auth.rfc3339(since)}


async def unblock(services: Services, user: User, username: str) -> dict[str, str]:
    """Lift one's own block (fine when there is none); with no block left either way, each
    sees the other's real presence again."""
    peer = await chat.find_peer(services, user, username)
    await services.db.execute("delete_block", user.id, peer["id"])
    if not await chat.kept_apart(services, user.id, peer["id"]):
        await _tell_presence(services, user, peer, online=None)
    return {"unblocked": peer["username"]}


async def list_blocks(services: Services, user: User) -> list[dict[str, str]]:
    """The user's blocks, newest first."""
    return [{"username": row["username"], "since": auth.rfc3339(row["since"])}
            for row in await services.db.fetch("list_blocks", user.id)]


async def _tell_presence(services: Services, user: User, peer: Any, online: bool | None) -> None:
    """Each party's sockets learn the other's presence as it now stands between them: `online`
    False (a block: offline whatever the truth), or None (unblocked: the truth). Only between
    conversation partners, as presence goes."""
    if not await services.db.fetchval("conversation_exists", user.id, peer["id"]):
        return
    for viewer_id, seen_id, seen_name in ((user.id, peer["id"], peer["username"]), (peer["id"], user.id, user.username)):
        shown = online if online is not None else bool(await services.db.fetchval("count_connections", seen_id))
        event = chat.encode_event({"type": "presence", "user": seen_name, "online": shown})
        await chat.publish(services, [chat.user_channel(viewer_id)], event)
