"""Clearing whole conversations: logout's, and deleting an account (contract v1.2).

Logout deletes every conversation the user is in, for both parties, in one
transaction that holds the user's send lock and destroys the conversations'
keys first, so what remains anywhere is unreadable; both parties hear
`cleared`. Deleting an account does that and removes the user in the same
transaction, so no message to it lands between the two, and retires its name.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

import asyncpg

from secure_link.accounts import (WRONG_PHRASE, AccountServices, User, check_phrase, close_sessions_sockets,
                                  retired_tag, revoke_session)
from secure_link.chat.messages import ChatServices
from secure_link.db import Conn, Database
from secure_link.encryption import forget_conversation_keys, pair_of
from secure_link.fanout import Fanout, events
from secure_link.files import delete_files, unlink_doomed
from secure_link.wire import take

log = logging.getLogger("secure_link.erasure")


class AccountErasure(ChatServices, AccountServices, Protocol):
    """What deleting an account needs: the chat's services, and proving the phrase (accounts')."""


async def logout(services: ChatServices, user: User) -> dict[str, int]:
    """Clear every conversation the user is in, then revoke this session.

    In that order, a failed clearing leaves the user logged in to try again.
    """
    cleared = await clear_conversations(services, user)
    await revoke_session(services.db, services.fanout, user, user.session_id)
    return cleared


@dataclasses.dataclass(frozen=True)
class Cleared:
    """What a clearing deleted, to finish after its commit: files to unlink, parties to tell."""

    groups: list[asyncpg.Record]
    files: int
    doomed: list[str]

    def counts(self) -> dict[str, int]:
        """The contract's `cleared` counts: messages and attachment files."""
        return {"messages": sum(group["messages"] for group in self.groups), "files": self.files}


async def clear_conversations(services: ChatServices, user: User) -> dict[str, int]:
    """Logout's clearing: delete every conversation of the user for both parties."""
    async with services.db.transaction() as conn:
        cleared = await _clear_within(services.db, user, conn)
    await _finish_clearing(services, user, cleared)
    return cleared.counts()


async def _clear_within(db: Database, user: User, conn: Conn) -> Cleared:
    """The clearing's statements, in the caller's transaction: no send involving the user
    commits until it ends (the user's send lock), and the keys go first."""
    await db.execute("lock_user_messages", user.id, conn=conn)
    await forget_conversation_keys(db, user.id, conn)  # first: what remains is unreadable
    groups = await db.fetch("delete_user_messages", user.id, conn=conn)
    await db.execute("delete_user_reads", user.id, conn=conn)
    await db.execute("delete_user_timers", user.id, conn=conn)
    attachment_ids = [file_id for group in groups for file_id in group["attachment_ids"]]
    files = await delete_files(db, attachment_ids, conn=conn)
    doomed = [path for row in files for path in (row["path"], row["thumbnail_path"]) if path]
    await db.execute("record_doomed_files", doomed, conn=conn)
    return Cleared(list(groups), len(files), doomed)


async def _finish_clearing(services: ChatServices, user: User, cleared: Cleared) -> None:
    """After the clearing's commit: forget its keys here, unlink its files, drop parked copies,
    and tell both parties of each conversation (`cleared`)."""
    for group in cleared.groups:
        services.bodies.forget(pair_of(user.id, group["peer_id"]))
    await unlink_doomed(services.db, services.settings.media_root, cleared.doomed)
    await _forget_parked(services.fanout, user)
    for group in cleared.groups:
        await events.publish(services.fanout, [events.user_channel(group["peer_id"])], events.cleared(user.username))
        await events.publish(services.fanout, [events.user_channel(user.id)], events.cleared(group["peer_username"]))


async def delete_account(services: AccountErasure, user: User, body: object, address: str) -> dict[str, int]:
    """Leave for good (contract v1.2), the phrase proven (throttled like a login)."""
    await check_phrase(services, user.username, take(body, {"phrase": str})["phrase"], address, refusal=WRONG_PHRASE)
    return await erase_account(services, user)


async def erase_account(services: ChatServices, user: User) -> dict[str, int]:
    """Everything of the user goes, as its owner's delete-account (the operator's `users delete`
    too): what a logout erases for every session, then the user with its avatar and unsent
    uploads, sessions, invites and blocks, in the transaction that holds the user's send lock,
    so no message to it lands between; its name retired. Counts as logout counts."""
    db = services.db
    assert services.settings.pepper is not None  # read before anything starts
    async with db.transaction() as conn:
        cleared = await _clear_within(db, user, conn)
        await db.execute("lock_username", user.username, conn=conn)
        owned = await db.fetch("list_owned_file_paths", user.id, conn=conn)
        doomed = [path for row in owned for path in (row["path"], row["thumbnail_path"]) if path]
        await db.execute("record_doomed_files", doomed, conn=conn)
        ended = await db.fetch("delete_user_sessions", user.id, conn=conn)
        await db.execute("retire_username", retired_tag(services.settings.pepper, user.username), conn=conn)
        await db.execute("delete_user", user.id, conn=conn)
    await _finish_clearing(services, user, cleared)
    await unlink_doomed(db, services.settings.media_root, doomed)
    await close_sessions_sockets(services.fanout, user.id, [session["id"] for session in ended])
    return cleared.counts()


async def _forget_parked(fanout: Fanout, user: User) -> None:
    """Drop fan-out copies of the user's messages still parked (every one went to their channel).

    After the clearing has committed, a failure must not fail the logout:
    housekeeping prunes parked copies within seconds anyway.
    """
    try:
        await fanout.forget([events.user_channel(user.id)])
    except Exception:
        log.warning("could not drop parked fan-out copies; housekeeping prunes them", exc_info=True)
