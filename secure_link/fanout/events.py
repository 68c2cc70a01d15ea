"""Every frame the server sends, each made by one constructor here, and the envelope it travels in.

A frame is serialised once, for all its receivers. What a receiver must know
without reading the frame travels in the envelope's header, beside it: the
frame's kind, the connection that sent it (that one gets an `ack` instead), a
chat message's id (to count and log its deliveries) and the session a
revocation ends. A socket acts on the header and sends the frame's text as it
is: nothing ever looks inside the JSON. docs/api.md describes each frame; the
error frame is the one error shape's (errors.error_frame).

Each event goes to its receivers' user channels (`user_channel`), on every
worker; the constructors below say nothing of who receives them.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from secure_link.wire import dumps

if TYPE_CHECKING:
    from secure_link.fanout.core import Fanout

log = logging.getLogger("secure_link.chat")  # publish failures were logged there before the fan-out had events

REVOKED = "revoked"  # the one internal kind: a revoked session's sockets close (4401); never sent


@dataclasses.dataclass(slots=True)  # not frozen: every socket opens one per event, and frozen costs twice
class Event:
    """A frame and its header: what the fan-out carries, and what a socket sends (never changed)."""

    kind: str  # the frame's `type`
    frame: str  # the JSON text sent to clients as it is ("" for an internal event)
    skip: str = ""  # the connection that sent it: it is not sent the event
    message_id: int = 0  # a chat event's message
    session: int = 0  # a revocation's session

    def envelope(self) -> str:
        """The event as the fan-out carries it: the header's line, then the frame."""
        return f"{self.kind} {self.skip} {self.message_id} {self.session}\n{self.frame}"


def opened(envelope: str) -> Event:
    """The event an envelope holds (`Event.envelope`'s inverse)."""
    header, _, frame = envelope.partition("\n")
    kind, skip, message_id, session = header.split(" ")
    return Event(kind, frame, skip, int(message_id), int(session))


def user_channel(user_id: int) -> str:
    """Every live connection of a user listens here, on every worker."""
    return f"user:{user_id}"


async def publish(fanout: Fanout, channels: list[str], event: Event) -> None:
    """Publish after commit; a fan-out outage is logged, never turned into a failed request.

    What was stored is safe: subscribers that lost their connection get a gap
    signal and catch up from the database.
    """
    try:
        await fanout.publish_many(channels, event.envelope())
    except Exception:  # the change is committed; live delivery is best effort
        log.warning("publish to %s failed; receivers will catch up from the database", channels, exc_info=True)


def _frame(kind: str, **fields: Any) -> str:
    return dumps({"type": kind, **fields})


# ---- frames the fan-out carries ----------------------------------------------------------------

def chat(message: dict[str, Any], skip: str = "") -> Event:
    """A message, live (its sender's socket `skip` gets an `ack`) or replayed by `sync`.

    Written around the Message's text: a stored one (`wire.Encoded`) was encoded
    once, for this event and its `ack` alike; `_frame` would write the same bytes.
    """
    return Event("chat", '{"type":"chat","message":' + dumps(message) + "}", skip, message["id"])


def read(by: str, up_to: int) -> Event:
    """`by` has read everything up to this id."""
    return Event("read", _frame("read", by=by, up_to=up_to))


def typing(sender: str) -> Event:
    """`sender` is typing (nothing is stored)."""
    return Event("typing", _frame("typing", **{"from": sender}))


def presence(username: str, online: bool) -> Event:
    """A conversation partner came online, or went offline."""
    return Event("presence", _frame("presence", user=username, online=online))


def profile(user: dict[str, Any]) -> Event:
    """Someone's public User, as changed (name, avatar)."""
    return Event("profile", _frame("profile", user=user))


def cleared(peer: str) -> Event:
    """The conversation with `peer` is gone, for both (a logout)."""
    return Event("cleared", _frame("cleared", **{"with": peer}))


def timer(peer: str, seconds: int, by: str) -> Event:
    """The conversation with `peer` has a new timer, set by `by`."""
    return Event("timer", _frame("timer", **{"with": peer}, seconds=seconds, by=by))


def deleted(peer: str, ids: list[int], reason: str) -> Event:
    """These messages of the conversation with `peer` are gone: `deleted` for everyone, or `expired`."""
    return Event("deleted", _frame("deleted", **{"with": peer}, ids=ids, reason=reason))


def session_revoked(session_id: int) -> Event:
    """Internal, on the user's channel: the sockets of this session close (4401)."""
    return Event(REVOKED, "", session=session_id)


# ---- frames a socket sends itself ----------------------------------------------------------------

def ready(user: dict[str, Any]) -> Event:
    """The socket is authenticated and subscribed: everything committed from now on arrives live."""
    return Event("ready", _frame("ready", user=user))


def ack(client_id: str | None, message: dict[str, Any]) -> Event:
    """The sender's own send, stored: around the Message's text, as `chat` is."""
    return Event("ack", '{"type":"ack","client_id":' + dumps(client_id) + ',"message":' + dumps(message) + "}")


def synced(last_id: int) -> Event:
    """A `sync` replayed everything up to this id."""
    return Event("synced", _frame("synced", last_id=last_id))


def resync() -> Event:
    """Messages may have been missed (a fan-out outage): reload what is shown, then sync."""
    return Event("resync", _frame("resync"))


def pong() -> Event:
    """The answer to `ping`."""
    return Event("pong", _frame("pong"))
