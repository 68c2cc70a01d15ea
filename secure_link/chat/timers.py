"""Conversation timers (contract v1.1): either party sets one; it stamps later messages' expiry.

The timer is read by `insert_messages` in the statement that stores each
message, so a message's `expires_at` always follows the timer committed
before it; the sweeper (erasure.py) deletes what expires.
"""

from __future__ import annotations

from typing import Any

from secure_link.accounts import auth
from secure_link.chat import messages as chat
from secure_link.accounts.auth import User
from secure_link.errors import AppError
from secure_link.services import Services

MAX_SECONDS = 2_419_200  # four weeks


async def get_timer(services: Services, user: User, peer_name: str) -> dict[str, Any]:
    """The conversation's Timer (off, never set, when there is no row)."""
    peer = await chat.find_peer(services, user, peer_name)
    row = await services.db.fetchrow("find_conversation_timer", user.id, peer["id"])
    return {"with": peer["username"], "seconds": row["seconds"] if row else 0,
            "set_by": row["set_by"] if row else None,
            "set_at": auth.rfc3339(row["set_at"]) if row else None}


def parse_seconds(body: Any) -> int:
    """`{"seconds": int}`: 0 (off) or 1 to four weeks; any other value is 422 `invalid_timer`."""
    if not isinstance(body, dict):
        raise AppError(422, "invalid_input", "The body must be a JSON object.")
    seconds = body.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= MAX_SECONDS:
        raise AppError(422, "invalid_timer", f"The timer is 0 (off) or 1 to {MAX_SECONDS:,} seconds.",
                       fields={"seconds": f"must be a whole number from 0 to {MAX_SECONDS}"})
    return seconds


async def set_timer(services: Services, user: User, peer_name: str, seconds: int) -> dict[str, Any]:
    """Set the timer and tell every connection of both parties (`timer` frames)."""
    peer = await chat.find_peer(services, user, peer_name)
    row = await services.db.fetchrow("upsert_conversation_timer", user.id, peer["id"], seconds)
    for user_id, other in ((peer["id"], user.username), (user.id, peer["username"])):
        frame = {"type": "timer", "with": other, "seconds": row["seconds"], "by": user.username}
        await chat.publish(services, [chat.user_channel(user_id)], chat.encode_event(frame))
    return {"with": peer["username"], "seconds": row["seconds"], "set_by": user.username,
            "set_at": auth.rfc3339(row["set_at"])}
