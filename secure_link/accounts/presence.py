"""Who is online, counted across workers, announced to those who share a conversation.

Each worker registers itself and heartbeats; a socket registers a connection
row under it. A user is online while any of their connections' workers is
alive, so two tabs on two workers count as one user, online until both close.
A change of display name or avatar (`profile`) goes to the same people, and to
the user's own other sockets.
"""

from __future__ import annotations

import uuid


from secure_link.accounts.users import User
from secure_link.db import Conn, Database
from secure_link.fanout import Fanout, events
from secure_link.wire import JsonObject

DEAD_AFTER_S = 30.0


class TooManySockets(Exception):
    """The user already holds WS_MAX_SOCKETS_PER_USER sockets, counted across workers."""


async def connection_opened(db: Database, fanout: Fanout, worker_id: uuid.UUID, cap: int, user: User,
                            connection_id: uuid.UUID) -> None:
    """Record a socket; the user's first one announces them online; one past the `cap` is refused."""
    async with db.transaction() as conn:
        await db.execute("lock_user_presence", user.id, conn=conn)
        before = await db.fetchval("open_connection", connection_id, worker_id, user.id, max(cap, 0), conn=conn)
        if 0 < cap <= before:
            raise TooManySockets(f"{before} sockets open")
        if before == 0:  # announced under the lock: a reload's offline/online cannot swap
            await announce_presence(db, fanout, user.id, user.username, online=True, conn=conn)


async def connection_closed(db: Database, fanout: Fanout, user: User, connection_id: uuid.UUID) -> None:
    """Forget a socket; the user's last one announces them offline."""
    async with db.transaction() as conn:
        await db.execute("lock_user_presence", user.id, conn=conn)
        remaining = await db.fetchval("close_connection", connection_id, user.id, conn=conn)
        if remaining == 0:
            await announce_presence(db, fanout, user.id, user.username, online=False, conn=conn)


async def announce_presence(db: Database, fanout: Fanout, user_id: int, username: str, online: bool,
                            conn: Conn | None = None) -> None:
    """Send `presence` to every user who shares a conversation with this one.

    Inside a transaction, pass its `conn`: taking a second pool connection while
    holding one could exhaust the pool under a burst of socket opens.
    """
    peers = await db.fetch("list_peer_ids", user_id, conn=conn)
    if peers:  # one round trip for all of them: this runs while the presence lock is held
        await events.publish(fanout, [events.user_channel(row["peer_id"]) for row in peers],
                             events.presence(username, online))


async def seen_online(db: Database, user: User, peer_id: int) -> bool:
    """Whether the user may see this peer online now: a conversation partner only, as with `presence`."""
    return bool(await db.fetchval("peer_is_online", user.id, peer_id))


async def announce_profile(db: Database, fanout: Fanout, user: JsonObject) -> None:
    """Send `profile` (the public User, as changed) to the user's conversation partners and own sockets,
    so a new name or avatar shows at once rather than at their next reload."""
    peers = await db.fetch("list_peer_ids", user["id"])
    channels = [events.user_channel(user["id"]), *(events.user_channel(row["peer_id"]) for row in peers)]
    await events.publish(fanout, channels, events.profile(user))


async def online_peers(db: Database, user: User) -> list[str]:
    """Usernames of this user's conversation partners who are online now."""
    peers = [row["peer_id"] for row in await db.fetch("list_peer_ids", user.id)]
    return [row["username"] for row in await db.fetch("list_online_peers", peers)] if peers else []


async def sweep_dead_workers(db: Database, fanout: Fanout) -> None:
    """Drop the connections of workers that died without a goodbye, announcing offline users."""
    for row in await db.fetch("delete_dead_workers", DEAD_AFTER_S):
        async with db.transaction() as conn:  # the same lock as open/close: no stale "offline"
            await db.execute("lock_user_presence", row["user_id"], conn=conn)
            if await db.fetchval("count_connections", row["user_id"], conn=conn) == 0:
                user = await db.fetchrow("find_user_by_id", row["user_id"], conn=conn)
                if user is not None:
                    await announce_presence(db, fanout, user["id"], user["username"], online=False, conn=conn)
