"""Private chat: one path for REST and the socket to send, read history, sync, clear.

Persist, then acknowledge, then deliver: `send_message` returns only after the
message is committed, and publishes it to the users' channels afterwards, so
an acknowledged message is never lost even if the process dies right then.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any, AsyncIterator

from secure_link.accounts import auth
from secure_link.encryption import datakeys as keys
from secure_link.files import uploads as media
from secure_link.encryption.bodies import pair_of
from secure_link.accounts.auth import User
from secure_link.errors import AppError, invalid
from secure_link.fanout.core import Outgoing
from secure_link.wire import is_storable_text, take
from secure_link.services import Services
from secure_link.chat.writer import Pending, Stored

SYNC_BATCH = 500
log = logging.getLogger("secure_link.chat")


def user_channel(user_id: int) -> str:
    """Every live connection of a user listens here, on every worker."""
    return f"user:{user_id}"


async def publish(services: Services, channels: list[str], event: str) -> None:
    """Publish after commit; a fan-out outage is logged, never turned into a failed send.

    What was stored is safe: subscribers that lost their connection get a gap
    signal and catch up from the database.
    """
    try:
        await services.fanout.publish_many(channels, event)
    except Exception:  # the message is committed; live delivery is best effort
        log.warning("publish to %s failed; receivers will catch up from the database", channels, exc_info=True)


def revoked_event(session_id: int) -> str:
    """Internal, on the user's channel: the sockets of this session close (4401); never sent to a client."""
    return encode_event({"type": "revoked", "session": session_id})


async def close_session_sockets(services: Services, user_id: int, session_id: int) -> None:
    """Tell every socket of a revoked or expired session, on any worker, to close (4401)."""
    await publish(services, [user_channel(user_id)], revoked_event(session_id))


def encode_event(frame: dict[str, Any], skip_connection: str = "", message_id: int | None = None) -> str:
    """Serialise a frame once for all its receivers; `skip_connection` is not sent it.

    A chat event names its message id in the envelope, so receivers can count
    and log deliveries without parsing the frame.
    """
    header = skip_connection if message_id is None else f"{skip_connection} {message_id}"
    return header + "\n" + json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def decode_event(event: str) -> tuple[str, str, str]:
    """The connection to skip, the message id ('' unless a chat event), and the frame text to send as is."""
    header, _, frame = event.partition("\n")
    skip, _, message_id = header.partition(" ")
    return skip, message_id, frame


def message_json(row: Any, body: str) -> dict[str, Any]:
    """The contract's Message object from a `message_view` row and its opened body."""
    return {
        "id": row["id"],
        "from": row["sender"],
        "to": row["recipient"],
        "message": body,
        "attachment": media.file_json(row, "file_"),
        "client_id": row["client_id"],
        "sent_at": auth.rfc3339(row["sent_at"]),
        "expires_at": _moment(row["expires_at"]),
    }


async def messages_json(services: Services, rows: list[Any]) -> list[dict[str, Any]]:
    """Messages from `message_view` rows, their bodies opened with their conversations' keys."""
    bodies = await services.bodies.open_rows(rows)
    return [message_json(row, body) for row, body in zip(rows, bodies)]


def _moment(value: Any) -> str | None:
    return None if value is None else auth.rfc3339(value)


@dataclasses.dataclass(frozen=True)
class Draft:
    """A message as the client asked to send it, validated."""

    to: str
    message: str
    client_id: str | None
    attachment: str | None


def parse_draft(services: Services, body: Any, bound_peer: str | None = None) -> Draft:
    """Validate a send request; a socket bound with `?with=` may omit `to`."""
    values = take(body, {"message": str}, {"to": str, "client_id": str, "attachment": str})
    to = values["to"] or bound_peer
    if not to:
        raise AppError(422, "missing_recipient", "Say who the message is for: `to`.", fields={"to": "is required"})
    fields = _draft_problems(services, values)
    if fields:
        raise invalid(fields)
    return Draft(auth.fold_username(to), values["message"], values["client_id"], values["attachment"])


def _draft_problems(services: Services, values: dict[str, Any]) -> dict[str, str]:
    text, client_id = values["message"], values["client_id"]
    fields: dict[str, str] = {}
    if len(text) > services.settings.max_message_chars:
        fields["message"] = f"must be at most {services.settings.max_message_chars} characters"
    elif not text.strip() and not values["attachment"]:  # NUL: `take` has refused it already
        fields["message"] = "must not be empty"
    if client_id is not None and not (1 <= len(client_id) <= 64 and client_id.isprintable()):
        fields["client_id"] = "must be 1 to 64 printable characters"
    if values["attachment"] is not None and not 1 <= len(values["attachment"]) <= 64:
        fields["attachment"] = "is not a file id"
    return fields


async def find_peer(services: Services, user: User, username: str) -> Any:
    """The other party of a conversation, or 404 `unknown_user`; never oneself."""
    peer = await services.db.fetchrow("find_user_by_username", auth.fold_username(username))
    if peer is None:
        raise AppError(404, "unknown_user", "No user has that username.")
    if peer["id"] == user.id:
        raise AppError(422, "invalid_recipient", "Conversations are between two different users.",
                       fields={"to": "cannot be yourself"})
    return peer


async def send_message(services: Services, user: User, draft: Draft,
                       origin: str = "") -> tuple[dict[str, Any], bool]:
    """Store (once per client_id) through the worker's group-commit writer; returns the Message and whether it is new.

    The writer answers after the commit of the batch that holds this draft,
    and announces the batch to both parties' connections after that.
    """
    started = time.perf_counter()
    message = await services.writer.store(user.id, user.username, draft.to, draft.message, draft.client_id,
                                          draft.attachment, origin)
    if message is None:
        return await _not_inserted(services, user, draft), False
    services.metrics.send_seconds.observe(time.perf_counter() - started)
    services.metrics.messages_stored.inc()
    if log.isEnabledFor(logging.DEBUG):  # per message: build nothing when nobody reads it
        log.debug("message stored", extra={"message_id": message["id"], "sender": user.id, "origin": origin or "rest"})
    return message, True


def stored_message(pending: Pending, row: Any) -> dict[str, Any]:
    """The Message of a draft the writer just stored: the draft's fields plus the row's id, times and file."""
    return message_json({**row, "sender": pending.sender, "recipient": pending.to, "client_id": pending.client_id},
                        pending.body)


async def announce(services: Services, messages: list[Stored]) -> None:
    """Publish a committed batch: one event per message to both parties, one round trip in all.

    Connections on this worker get their events at once, in id order; other
    workers get them through the fan-out transport.
    """
    events = []
    for pending, row, message in messages:
        event = encode_event({"type": "chat", "message": message}, skip_connection=pending.origin,
                             message_id=row["id"])
        channels = [user_channel(row["recipient_id"]), user_channel(pending.sender_id)]
        events.append(Outgoing(channels, event, pending.conversation))  # its copies die with the conversation
    await services.fanout.publish_batch(events)


async def _not_inserted(services: Services, user: User, draft: Draft) -> dict[str, Any]:
    """Why nothing was stored: a bad recipient, a retry (its original, or `gone` when that
    was deleted or expired), or a refused attachment."""
    await find_peer(services, user, draft.to)
    if draft.client_id is not None:
        row = await services.db.fetchrow("find_message_by_client_id", user.id, draft.client_id)
        if row is not None:
            return (await messages_json(services, [row]))[0]
        if await services.db.fetchval("client_id_was_used", services.writer.tag(user.id, draft.client_id)):
            raise AppError(410, "gone", "The message sent with this client_id was deleted or has expired; "
                                        "it is not sent again.", fields={"client_id": "was used by a message now gone"})
    raise AppError(422, "invalid_attachment",
                   "The attachment must be a file you uploaded and have not sent to someone else.",
                   fields={"attachment": "is not yours to send here"})


async def history(services: Services, user: User, query: dict[str, str]) -> dict[str, Any]:
    """A page of one conversation in ascending id order, by cursor, either direction."""
    before, after, limit = _page_params(query)
    peer = await find_peer(services, user, query["with"])  # _page_params refused a missing one
    if after is not None:
        rows = await services.db.fetch("list_conversation_after", user.id, peer["id"], after, limit + 1)
        page = rows[:limit]
    else:
        rows = await services.db.fetch("list_conversation_before", user.id, peer["id"], before, limit + 1)
        page = list(reversed(rows[:limit]))
    return {"messages": await messages_json(services, page), "has_more": len(rows) > limit}


def _page_params(query: dict[str, str]) -> tuple[int | None, int | None, int]:
    fields: dict[str, str] = {}
    numbers: dict[str, int | None] = {}
    for name in ("before", "after", "limit"):
        raw = query.get(name)
        numbers[name] = int(raw) if raw is not None and raw.isascii() and raw.isdigit() and len(raw) < 19 else None
        if raw is not None and numbers[name] is None:
            fields[name] = "must be a whole number"
    if not query.get("with"):
        fields["with"] = "is required"
    elif not is_storable_text(query["with"]):
        fields["with"] = "is not a username"
    if numbers["before"] is not None and numbers["after"] is not None:
        fields["after"] = "cannot be combined with before"
    limit = 50 if numbers["limit"] is None else numbers["limit"]
    if limit < 1:
        fields["limit"] = "must be at least 1"
    if fields:
        raise invalid(fields)
    return numbers["before"], numbers["after"], min(limit, 100)


async def conversations(services: Services, user: User) -> list[dict[str, Any]]:
    """Every conversation with its last message and unread count, newest first."""
    rows = await services.db.fetch("list_conversations", user.id)
    last_messages = await messages_json(services, rows)
    return [{
        "with": auth.user_json({key[5:]: row[key] for key in row.keys() if key.startswith("peer_")}),
        "last_message": last_message,
        "unread": row["unread"],
        "timer": row["timer"],
    } for row, last_message in zip(rows, last_messages)]


async def replay(services: Services, user: User, since: int) -> AsyncIterator[dict[str, Any]]:
    """The user's messages after `since`, oldest first, in batches (for `sync`)."""
    while True:
        rows = await services.db.fetch("list_messages_since", user.id, since, SYNC_BATCH)
        for message in await messages_json(services, rows):
            yield message
        if len(rows) < SYNC_BATCH:
            return
        since = rows[-1]["id"]


async def _conversation_peer(services: Services, user: User, peer_name: str) -> Any:
    """The other party, who must already share a conversation: no signals to strangers."""
    peer = await find_peer(services, user, peer_name)
    if not await services.db.fetchval("conversation_exists", user.id, peer["id"]):
        raise AppError(422, "no_conversation", "There is no conversation with that user yet.")
    return peer


async def mark_read(services: Services, user: User, peer_name: str, up_to: int) -> None:
    """Move the read receipt forward (never past the last message) and tell the other party."""
    peer = await _conversation_peer(services, user, peer_name)
    last_read = await services.db.fetchval("upsert_read_receipt", user.id, peer["id"], up_to)
    frame = {"type": "read", "by": user.username, "up_to": last_read}
    await publish(services, [user_channel(peer["id"])], encode_event(frame))


async def typing(services: Services, user: User, peer_name: str) -> None:
    """Tell the other party this user is typing (nothing is stored)."""
    peer = await _conversation_peer(services, user, peer_name)
    frame = {"type": "typing", "from": user.username}
    await publish(services, [user_channel(peer["id"])], encode_event(frame))


async def clear_conversations(services: Services, user: User) -> dict[str, int]:
    """Logout's clearing: delete every conversation of the user for both parties."""
    async with services.db.transaction() as conn:
        await services.db.execute("lock_user_messages", user.id, conn=conn)
        await keys.forget_conversation_keys(services.db, user.id, conn)  # first: what remains is unreadable
        groups = await services.db.fetch("delete_user_messages", user.id, conn=conn)
        await services.db.execute("delete_user_reads", user.id, conn=conn)
        await services.db.execute("delete_user_timers", user.id, conn=conn)
        attachment_ids = [file_id for group in groups for file_id in group["attachment_ids"]]
        files = await media.delete_files(services, attachment_ids, conn=conn)
        doomed = [path for row in files for path in (row["path"], row["thumbnail_path"]) if path]
        await services.db.execute("record_doomed_files", doomed, conn=conn)
    for group in groups:
        services.bodies.forget(pair_of(user.id, group["peer_id"]))
    await media.unlink_doomed(services, doomed)
    await _forget_parked(services, user)
    for group in groups:
        await publish(services, [user_channel(group["peer_id"])], encode_event({"type": "cleared", "with": user.username}))
        await publish(services, [user_channel(user.id)], encode_event({"type": "cleared", "with": group["peer_username"]}))
    return {"messages": sum(group["messages"] for group in groups), "files": len(files)}


async def _forget_parked(services: Services, user: User) -> None:
    """Drop fan-out copies of the user's messages still parked (every one went to their channel).

    After the clearing has committed, a failure must not fail the logout:
    housekeeping prunes parked copies within seconds anyway.
    """
    try:
        await services.fanout.forget([user_channel(user.id)])
    except Exception:
        log.warning("could not drop parked fan-out copies; housekeeping prunes them", exc_info=True)


async def close_ended_sessions(services: Services) -> None:
    """Close this worker's sockets whose session was revoked or expired, with 4401.

    The revocation event usually closes them at once; this round of
    housekeeping catches the sockets whose event was lost (a failed publish
    is logged, not retried), so none stays usable longer than one interval.
    """
    here = list(services.sessions_here)
    if not here:
        return
    live = {row["id"] for row in await services.db.fetch("list_live_session_ids", [s for _, s in here])}
    for user_id, session_id in here:
        if session_id not in live:
            services.fanout.deliver_locally(user_channel(user_id), revoked_event(session_id))
