"""Account flows: register, log in, read and change one's profile.

(Logging out erases conversations first: chat/erasure.py's `logout`. A user's
sessions are sessions.py's, the lookup of someone people.py's.)
"""

from __future__ import annotations

from typing import Protocol

import asyncpg

from secure_link.accounts import presence, throttle
from secure_link.accounts.phrases import PhraseHasher, phrase_problem
from secure_link.accounts.sessions import open_session
from secure_link.accounts.users import User, clean_display_name, fold_username, user_json, username_problem
from secure_link.config import Settings
from secure_link.db import Database
from secure_link.errors import AppError, invalid, rate_limited
from secure_link.fanout import Fanout
from secure_link.ratelimit import SlidingWindow
from secure_link.wire import JsonObject, take


class AccountServices(Protocol):
    """What registering and logging in need of the process (app.py's `Services` has it all)."""

    settings: Settings
    db: Database
    phrases: PhraseHasher
    register_limiter: SlidingWindow


async def register(services: AccountServices, body: object, address: str, user_agent: str) -> tuple[JsonObject, str]:
    """Create an account and its first session; every broken rule is named in `fields`."""
    values = take(body, {"username": str, "phrase": str}, {"display_name": str})
    username = fold_username(values["username"])
    fields: dict[str, str] = {}
    if problem := username_problem(username):
        fields["username"] = problem
    if problem := phrase_problem(values["phrase"], username):
        fields["phrase"] = problem
    display_name, problem = clean_display_name(values["display_name"] or username)
    if problem:
        fields["display_name"] = problem
    if fields:
        raise invalid(fields)
    if wait := services.register_limiter.hit(address):
        raise rate_limited(wait, "Too many registrations from this address; try again later.")
    with services.phrases.place():
        phrase_hash = await services.phrases.hash(values["phrase"])
    row = await services.db.fetchrow("insert_user", username, display_name, phrase_hash)
    if row is None:
        raise AppError(409, "username_taken", "That username is taken.", fields={"username": "is taken"})
    token = await open_session(services.db, services.settings.session_ttl, row["id"], user_agent, address)
    return user_json(row), token


async def login(services: AccountServices, body: object, address: str, user_agent: str) -> tuple[JsonObject, str]:
    """Check the phrase; unknown users and wrong phrases get the same answer in the same time."""
    values = take(body, {"username": str, "phrase": str})
    username = fold_username(values["username"])[:64]
    limit = services.settings.login_failures_per_15_min
    with services.phrases.place():  # first: a full line answers 503 busy, counting nothing
        attempt = await throttle.reserve_login_attempt(services.db, limit, username, address)
        row = await services.db.fetchrow("find_user_credentials", username)
        ok = await services.phrases.matches(values["phrase"], row["phrase_hash"] if row else None)
    await throttle.settle_login_attempt(services.db, username, address, attempt, succeeded=ok)
    if not ok or row is None:
        raise AppError(401, "invalid_credentials", "Unknown username or wrong phrase.")
    token = await open_session(services.db, services.settings.session_ttl, row["id"], user_agent, address)
    return user_json(row), token


async def profile(db: Database, user: User) -> JsonObject:
    """The user's own profile, as it is now (the session's copy may be older)."""
    return user_json(await _current(db, user))


async def update_profile(db: Database, fanout: Fanout, user: User, body: object) -> JsonObject:
    """Change what others see: for now the display name (the avatar goes through uploads)."""
    values = take(body, {"display_name": str})
    display_name, problem = clean_display_name(values["display_name"])
    if problem:
        raise invalid({"display_name": problem})
    row = await db.fetchrow("update_display_name", user.id, display_name)
    assert row is not None  # the user of a live session exists
    changed = user_json(row)
    await presence.announce_profile(db, fanout, changed)
    return changed


async def avatar_changed(db: Database, fanout: Fanout, user: User) -> None:
    """Tell those who see the user that the avatar changed (the upload flow calls this for an avatar)."""
    await presence.announce_profile(db, fanout, user_json(await _current(db, user)))


async def _current(db: Database, user: User) -> asyncpg.Record:
    row = await db.fetchrow("find_user_by_id", user.id)
    assert row is not None  # the user of a live session exists
    return row
