"""Finding someone: the other party of a conversation, and the lookup before a first message."""

from __future__ import annotations

import asyncpg

from secure_link.accounts import presence
from secure_link.accounts.users import User, fold_username, user_json
from secure_link.db import Database
from secure_link.errors import AppError, rate_limited
from secure_link.ratelimit import KeyedBuckets
from secure_link.wire import JsonObject


async def find_peer(db: Database, user: User, username: str) -> asyncpg.Record:
    """The other party of a conversation, or 404 `unknown_user`; never oneself."""
    peer = await db.fetchrow("find_user_by_username", fold_username(username))
    if peer is None:
        raise AppError(404, "unknown_user", "No user has that username.")
    if peer["id"] == user.id:
        raise AppError(422, "invalid_recipient", "Conversations are between two different users.",
                       fields={"to": "cannot be yourself"})
    return peer


async def find_person(db: Database, budget: KeyedBuckets, user: User, username: str) -> JsonObject:
    """Someone to open a chat with: their public User, and whether the asker sees them online.

    Limited with the user's REST send budget. It tells no more than a send or a timer
    lookup already does (404 `unknown_user`): making accounts scarce (invites) is what
    stands against enumeration."""
    if wait := budget.take(user.id):
        raise rate_limited(wait)
    if fold_username(username) == user.username:
        raise AppError(422, "invalid_recipient", "That is you: a conversation is with someone else.",
                       fields={"username": "is your own"})
    peer = await find_peer(db, user, username)
    return {"user": user_json(peer), "online": await presence.seen_online(db, user, peer["id"])}
