"""Conversation timers (contract v1.1): either party sets one; it stamps later messages' expiry.

The timer is read by `insert_messages` in the statement that stores each
message, so a message's `expires_at` always follows the timer committed
before it; the sweeper (erasure.py) deletes what expires.
"""

from __future__ import annotations


from secure_link.accounts import User, find_peer, kept_apart
from secure_link.db import Database
from secure_link.errors import AppError, blocked
from secure_link.fanout import Fanout, events
from secure_link.wire import JsonObject, rfc3339

MAX_SECONDS = 2_419_200  # four weeks


async def get_timer(db: Database, user: User, peer_name: str) -> JsonObject:
    """The conversation's Timer (off, never set, when there is no row)."""
    peer = await find_peer(db, user, peer_name)
    row = await db.fetchrow("find_conversation_timer", user.id, peer["id"])
    return {"with": peer["username"], "seconds": row["seconds"] if row else 0,
            "set_by": row["set_by"] if row else None,
            "set_at": rfc3339(row["set_at"]) if row else None}


def parse_seconds(body: object) -> int:
    """`{"seconds": int}`: 0 (off) or 1 to four weeks; any other value is 422 `invalid_timer`."""
    if not isinstance(body, dict):
        raise AppError(422, "invalid_input", "The body must be a JSON object.")
    seconds = body.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= MAX_SECONDS:
        raise AppError(422, "invalid_timer", f"The timer is 0 (off) or 1 to {MAX_SECONDS:,} seconds.",
                       fields={"seconds": f"must be a whole number from 0 to {MAX_SECONDS}"})
    return seconds


async def set_timer(db: Database, fanout: Fanout, user: User, peer_name: str, seconds: int) -> JsonObject:
    """Set the timer and tell every connection of both parties (`timer` frames); 403 `blocked`
    while either blocks the other."""
    peer = await find_peer(db, user, peer_name)
    if await kept_apart(db, user.id, peer["id"]):
        raise blocked()
    row = await db.fetchrow("upsert_conversation_timer", user.id, peer["id"], seconds)
    assert row is not None  # an upsert … RETURNING
    for user_id, other in ((peer["id"], user.username), (user.id, peer["username"])):
        await events.publish(fanout, [events.user_channel(user_id)], events.timer(other, row["seconds"], user.username))
    return {"with": peer["username"], "seconds": row["seconds"], "set_by": user.username,
            "set_at": rfc3339(row["set_at"])}
