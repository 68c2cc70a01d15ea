"""Private chat: one path for REST and the socket to send, read history, sync, mark read, type.

Persist, then acknowledge, then deliver: `send_message` returns only after the
message is committed (writer.py, a group commit), and the commit is announced
to both parties' sockets right after, so an acknowledged message is never lost
even if the process dies right then.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol
from collections.abc import AsyncIterator

import asyncpg

from secure_link.accounts import User, find_peer, kept_apart, user_json
from secure_link.chat.frames import Draft, parse_page
from secure_link.chat.writer import MessageWriter, Pending, StoredMessage
from secure_link.config import Settings
from secure_link.db import Database, Row
from secure_link.encryption import BodyKeys
from secure_link.errors import AppError, blocked
from secure_link.fanout import Fanout, Outgoing, events
from secure_link.files import file_json
from secure_link.ops import Metrics
from secure_link.wire import JsonObject, encoded, rfc3339

SYNC_BATCH = 500
log = logging.getLogger("secure_link.chat")


class ChatServices(Protocol):
    """What sending and erasing need of the process (app.py's `Services` has it all)."""

    settings: Settings
    db: Database
    fanout: Fanout
    bodies: BodyKeys  # conversation keys this worker has unwrapped
    writer: MessageWriter
    metrics: Metrics


def message_json(row: Row, body: str) -> JsonObject:
    """The contract's Message object from a `message_view` row and its opened body."""
    return {
        "id": row["id"],
        "from": row["sender"],
        "to": row["recipient"],
        "message": body,
        "attachment": file_json(row, "file_"),
        "client_id": row["client_id"],
        "sent_at": rfc3339(row["sent_at"]),
        "expires_at": None if row["expires_at"] is None else rfc3339(row["expires_at"]),
    }


async def messages_json(bodies: BodyKeys, rows: list[asyncpg.Record]) -> list[JsonObject]:
    """Messages from `message_view` rows, their bodies opened with their conversations' keys."""
    opened = await bodies.open_rows(rows)
    return [message_json(row, body) for row, body in zip(rows, opened)]


async def send_message(services: ChatServices, user: User, draft: Draft, origin: str = "") -> tuple[JsonObject, bool]:
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


def stored_message(pending: Pending, row: asyncpg.Record) -> JsonObject:
    """The Message of a draft the writer just stored: the draft's fields plus the row's id, times and file.

    Encoded here, once: its `chat` event, its `ack` and its REST answer are all built from that text.
    """
    return encoded(message_json({**row, "sender": pending.sender, "recipient": pending.to,
                                 "client_id": pending.client_id}, pending.body))


async def announce_messages(fanout: Fanout, stored: list[StoredMessage]) -> None:
    """Publish a committed batch: a `chat` event per message to both parties, one round trip in all.

    Connections on this worker get their events at once, in id order; other
    workers get them through the fan-out transport. Each copy is sealed under
    its conversation's key, so it dies with the conversation.
    """
    batch = []
    for pending, row, message in stored:
        event = events.chat(message, skip=pending.origin)
        channels = [events.user_channel(row["recipient_id"]), events.user_channel(pending.sender_id)]
        batch.append(Outgoing(channels, event.envelope(), pending.conversation))
    await fanout.publish_batch(batch)


async def _not_inserted(services: ChatServices, user: User, draft: Draft) -> JsonObject:
    """Why nothing was stored: a bad recipient, a retry (its original, or `gone` when that
    was deleted or expired), a block between the two, or a refused attachment."""
    peer = await find_peer(services.db, user, draft.to)
    if draft.client_id is not None:
        row = await services.db.fetchrow("find_message_by_client_id", user.id, draft.client_id)
        if row is not None:
            return (await messages_json(services.bodies, [row]))[0]
        if await services.db.fetchval("client_id_was_used", services.writer.tag(user.id, draft.client_id)):
            raise AppError(410, "gone", "The message sent with this client_id was deleted or has expired; "
                                        "it is not sent again.", fields={"client_id": "was used by a message now gone"})
    if await kept_apart(services.db, user.id, peer["id"]):
        raise blocked()
    raise AppError(422, "invalid_attachment",
                   "The attachment must be a file you uploaded and have not sent to someone else.",
                   fields={"attachment": "is not yours to send here"})


async def history(db: Database, bodies: BodyKeys, user: User, query: dict[str, str]) -> JsonObject:
    """A page of one conversation in ascending id order, by cursor, either direction."""
    page = parse_page(query)
    peer = await find_peer(db, user, page.peer)
    if page.after is not None:
        rows = await db.fetch("list_conversation_after", user.id, peer["id"], page.after, page.limit + 1)
        shown = rows[:page.limit]
    else:
        rows = await db.fetch("list_conversation_before", user.id, peer["id"], page.before, page.limit + 1)
        shown = list(reversed(rows[:page.limit]))
    return {"messages": await messages_json(bodies, shown), "has_more": len(rows) > page.limit}


async def conversations(db: Database, bodies: BodyKeys, user: User) -> list[JsonObject]:
    """Every conversation with its last message and unread count, newest first."""
    rows = await db.fetch("list_conversations", user.id)
    last_messages = await messages_json(bodies, rows)
    return [{
        "with": user_json(_peer_of(row)),
        "last_message": last_message,
        "unread": row["unread"],
        "timer": row["timer"],
    } for row, last_message in zip(rows, last_messages)]


def _peer_of(row: asyncpg.Record) -> dict[str, object]:
    """The `peer_*` columns of a conversation row, without their prefix: the other party's user row."""
    return {key[5:]: row[key] for key in row.keys() if key.startswith("peer_")}  # noqa: SIM118 - a Record iterates its values


async def replay(db: Database, bodies: BodyKeys, user: User, since: int) -> AsyncIterator[JsonObject]:
    """The user's messages after `since`, oldest first, in batches (for `sync`)."""
    while True:
        rows = await db.fetch("list_messages_since", user.id, since, SYNC_BATCH)
        for message in await messages_json(bodies, rows):
            yield message
        if len(rows) < SYNC_BATCH:
            return
        since = rows[-1]["id"]


async def _conversation_peer(db: Database, user: User, peer_name: str) -> asyncpg.Record:
    """The other party, who must already share a conversation: no signals to strangers."""
    peer = await find_peer(db, user, peer_name)
    if not await db.fetchval("conversation_exists", user.id, peer["id"]):
        raise AppError(422, "no_conversation", "There is no conversation with that user yet.")
    return peer


async def mark_read(db: Database, fanout: Fanout, user: User, peer_name: str, up_to: int) -> None:
    """Move the read receipt forward (never past the last message) and tell the other party,
    unless either blocks the other: the receipt is then the reader's own, and nothing passes."""
    peer = await _conversation_peer(db, user, peer_name)
    last_read = await db.fetchval("upsert_read_receipt", user.id, peer["id"], up_to)
    if not await kept_apart(db, user.id, peer["id"]):
        await events.publish(fanout, [events.user_channel(peer["id"])], events.read(user.username, last_read))


async def typing(db: Database, fanout: Fanout, user: User, peer_name: str) -> None:
    """Tell the other party this user is typing (nothing is stored; nothing passes a block)."""
    peer = await _conversation_peer(db, user, peer_name)
    if not await kept_apart(db, user.id, peer["id"]):
        await events.publish(fanout, [events.user_channel(peer["id"])], events.typing(user.username))
