"""Who is online, counted across workers, announced to those who share a conversation.

Each worker registers itself and heartbeats; a socket registers a connection
row under it. A user is online while any of their connections' workers is
alive, so two tabs on two workers count as one user, online until both close.
A change of display name or avatar (`profile`) goes to the same people, and to
the user's own other sockets.
"""

from __future__ import annotations

import uuid
from typing import Any

from secure_link.chat import messages as chat
from secure_link.accounts.auth import User
from secure_link.services import Services

DEAD_AFTER_S = 30.0


class TooManySockets(Exception):
    """The user already holds WS_MAX_SOCKETS_PER_USER sockets, counted across workers."""


async def connection_opened(services: Services, user: User, connection_id: uuid.UUID) -> None:
    """Record a socket; the user's first one announces them online; one past the cap is refused."""
    cap = services.settings.ws_max_sockets_per_user
    async with services.db.transaction() as conn:
        await services.db.execute("lock_user_presence", user.id, conn=conn)
        before = await services.db.fetchval("open_connection", connection_id, services.worker_id, user.id,
                                            max(cap, 0), conn=conn)
        if 0 < cap <= before:
            raise TooManySockets(f"{before} sockets open")
        if before == 0:  # announced under the lock: a reload's offline/online cannot swap
            await announce(services, user.id, user.username, online=True, conn=conn)


async def connection_closed(services: Services, user: User, connection_id: uuid.UUID) -> None:
    """Forget a socket; the user's last one announces them offline."""
    async with services.db.transaction() as conn:
        await services.db.execute("lock_user_presence", user.id, conn=conn)
        remaining = await services.db.fetchval("close_connection", connection_id, user.id, conn=conn)
        if remaining == 0:
            await announce(services, user.id, user.username, online=False, conn=conn)


async def announce(services: Services, user_id: int, username: str, online: bool,
                   conn: Any = None) -> None:
    """Send `presence` to every user who shares a conversation with this one.

    Inside a transaction, pass its `conn`: taking a second pool connection while
    holding one could exhaust the pool under a burst of socket opens.
    """
    event = chat.encode_event({"type": "presence", "user": username, "online": online})
    peers = await services.db.fetch("list_peer_ids", user_id, conn=conn)
    if peers:  # one round trip for all of them: this runs while the presence lock is held
        await chat.publish(services, [chat.user_channel(row["peer_id"]) for row in peers], event)


async def seen_online(services: Services, user: User, peer_id: int) -> bool:
    """Whether the user may see this peer online now: a conversation partner only, as with `presence`."""
    return bool(await services.db.fetchval("peer_is_online", user.id, peer_id))


async def announce_profile(services: Services, user: dict[str, Any]) -> None:
    """Send `profile` (the public User, as changed) to the user's conversation partners and own sockets,
    so a new name or avatar shows at once rather than at their next reload."""
    event = chat.encode_event({"type": "profile", "user": user})
    peers = await services.db.fetch("list_peer_ids", user["id"])
    await chat.publish(services, [chat.user_channel(user["id"]), *(chat.user_channel(row["peer_id"]) for row in peers)],
                       event)


async def online_peers(services: Services, user: User) -> list[str]:
    """Usernames of this user's conversation partners who are online now."""
    peers = [row["peer_id"] for row in await services.db.fetch("list_peer_ids", user.id)]
    return [row["username"] for row in await services.db.fetch("list_online_peers", peers)] if peers else []


async def sweep_dead_workers(services: Services) -> None:
    """Drop the connections of workers that died without a goodbye, announcing offline users."""
    for row in await services.db.fetch("delete_dead_workers", DEAD_AFTER_S):
        async with services.db.transaction() as conn:  # the same lock as open/close: no stale "offline"
            await services.db.execute("lock_user_presence", row["user_id"], conn=conn)
            if await services.db.fetchval("count_connections", row["user_id"], conn=conn) == 0:
                user = await services.db.fetchrow("find_user_by_id", row["user_id"], conn=conn)
                if user is not None:
                    await announce(services, user["id"], user["username"], online=False, conn=conn)
