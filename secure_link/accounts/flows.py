"""Account flows: register (open, by invite, or closed), log in, one's profile and phrase; the
operator's suspension.

(Logging out erases conversations first: chat/erasure.py's `logout`. A user's
sessions are sessions.py's, the lookup of someone people.py's.)
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Protocol

import asyncpg

from secure_link.accounts import invites, presence, throttle
from secure_link.accounts.phrases import PhraseHasher, phrase_problem
from secure_link.accounts.sessions import close_sessions_sockets, open_session
from secure_link.accounts.users import User, clean_display_name, fold_username, user_json, username_problem
from secure_link.config import Settings
from secure_link.db import Database
from secure_link.errors import AppError, invalid, rate_limited
from secure_link.fanout import Fanout
from secure_link.ops import Metrics
from secure_link.ratelimit import SlidingWindow
from secure_link.wire import JsonObject, take


WRONG_PHRASE = "That is not your current phrase."


class AccountServices(Protocol):
    """What registering and logging in need of the process (app.py's `Services` has it all)."""

    settings: Settings
    db: Database
    phrases: PhraseHasher
    register_limiter: SlidingWindow
    metrics: Metrics  # registrations refused, by reason


async def register(services: AccountServices, body: object, address: str, user_agent: str) -> tuple[JsonObject, str]:
    """Create an account and its first session; every broken rule is named in `fields`.

    In `invite` mode one use of the invite is taken in the transaction that
    inserts the user, so a refused registration spends none (docs/api.md, v1.2).
    """
    values = take(body, {"username": str, "phrase": str}, {"display_name": str, "invite": str})
    username = fold_username(values["username"])
    display_name = _registration_problems(username, values)
    mode = services.settings.registration
    if mode == "closed":
        raise _refused(services, "closed", AppError(403, "registration_closed", "Registration is closed here."))
    if wait := services.register_limiter.hit(address):
        raise _refused(services, "rate_limited",
                       rate_limited(wait, "Too many registrations from this address; try again later."))
    invite = await _live_invite(services, values["invite"]) if mode == "invite" else None
    with services.phrases.place():
        phrase_hash = await services.phrases.hash(values["phrase"])
    async with services.db.transaction() as conn:
        await services.db.execute("lock_username", username, conn=conn)  # an account deletion's retiring first
        if await services.db.fetchval("username_is_retired", retired_tag(_pepper(services), username), conn=conn):
            raise _taken(services)
        if invite is not None and await services.db.fetchval("use_invite", invite, conn=conn) is None:
            raise _refused(services, "invite_invalid", _invite_invalid())  # used up meanwhile
        row = await services.db.fetchrow("insert_user", username, display_name, phrase_hash, conn=conn)
        if row is None:
            raise _taken(services)  # the transaction rolls back: the invite's use with it
    token = await open_session(services.db, services.settings.session_ttl, row["id"], user_agent, address)
    return user_json(row), token


def _registration_problems(username: str, values: dict[str, Any]) -> str:
    """The display name to store; 422 naming every broken rule."""
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
    return display_name


async def _live_invite(services: AccountServices, code: str | None) -> bytes:
    """The nonce of the registration's live invite; 403 without one or with a dead one."""
    if not code:
        raise _refused(services, "invite_required", AppError(
            403, "invite_required", "Registration here needs an invite: ask someone who is already here.",
            fields={"invite": "is required"}))
    nonce = await invites.is_live(services.db, invites.tag_key(_pepper(services)), code)
    if nonce is None:
        raise _refused(services, "invite_invalid", _invite_invalid())
    return nonce


def _invite_invalid() -> AppError:
    return AppError(403, "invite_invalid", "That invite is unknown, revoked, expired or used up.",
                    fields={"invite": "is not a live invite"})


def _taken(services: AccountServices) -> AppError:
    return _refused(services, "username_taken",
                    AppError(409, "username_taken", "That username is taken.", fields={"username": "is taken"}))


def _refused(services: AccountServices, reason: str, error: AppError) -> AppError:
    """Count a refused registration by its reason (`/metrics`), and hand the refusal back to raise."""
    services.metrics.registrations_refused.labels(reason).inc()
    return error


def _pepper(services: AccountServices) -> str:
    assert services.settings.pepper is not None  # the lifespan reads it before anything starts
    return services.settings.pepper


def retired_tag(pepper: str, username: str) -> bytes:
    """What is kept of a deleted account's name: a keyed hash of it (docs/privacy.md)."""
    key = hmac.new(pepper.encode("utf-8"), b"secure-link retired usernames", hashlib.sha256).digest()
    return hmac.new(key, fold_username(username).encode("utf-8"), hashlib.sha256).digest()


async def login(services: AccountServices, body: object, address: str, user_agent: str) -> tuple[JsonObject, str]:
    """Check the phrase; unknown users and wrong phrases get the same answer in the same time.
    A suspended account is told so only once its phrase is right."""
    values = take(body, {"username": str, "phrase": str})
    row = await check_phrase(services, fold_username(values["username"])[:64], values["phrase"], address)
    if row["suspended_at"] is not None:
        raise AppError(403, "account_suspended", "This account is suspended by the server's operator.")
    token = await open_session(services.db, services.settings.session_ttl, row["id"], user_agent, address)
    return user_json(row), token


async def check_phrase(services: AccountServices, username: str, phrase: str, address: str,
                       refusal: str = "Unknown username or wrong phrase.") -> asyncpg.Record:
    """The user's credentials row if the phrase is theirs; else 401 (saying `refusal`), counted by
    the login throttle."""
    limit = services.settings.login_failures_per_15_min
    with services.phrases.place():  # first: a full line answers 503 busy, counting nothing
        attempt = await throttle.reserve_login_attempt(services.db, limit, username, address)
        row = await services.db.fetchrow("find_user_credentials", username)
        ok = await services.phrases.matches(phrase, row["phrase_hash"] if row else None)
    await throttle.settle_login_attempt(services.db, username, address, attempt, succeeded=ok)
    if not ok or row is None:
        raise AppError(401, "invalid_credentials", refusal)
    return row


async def change_phrase(services: AccountServices, fanout: Fanout, user: User, body: object,
                        address: str) -> JsonObject:
    """A new phrase, checked against the rules; the old one proven (throttled like a login).
    Every other session ends, its sockets closed (4401) on every worker; this one stays."""
    values = take(body, {"phrase": str, "new_phrase": str})
    if problem := phrase_problem(values["new_phrase"], user.username):
        raise invalid({"new_phrase": problem})
    await check_phrase(services, user.username, values["phrase"], address, refusal=WRONG_PHRASE)
    with services.phrases.place():
        phrase_hash = await services.phrases.hash(values["new_phrase"])
    async with services.db.transaction() as conn:
        row = await services.db.fetchrow("update_phrase_hash", user.id, phrase_hash, conn=conn)
        ended = await services.db.fetch("delete_other_sessions", user.id, user.session_id, conn=conn)
    await close_sessions_sockets(fanout, user.id, [session["id"] for session in ended])
    assert row is not None  # the user of a live session exists
    return user_json(row)


async def find_account(db: Database, username: str) -> User:
    """The account of that name, for the operator; 404 `unknown_user`."""
    row = await db.fetchrow("find_user_by_username", fold_username(username))
    if row is None:
        raise AppError(404, "unknown_user", f"No user has the username {username!r}.")
    return User.from_row(row)


async def suspend(db: Database, fanout: Fanout, username: str, suspended: bool) -> None:
    """The operator suspends an account (every session ends, sockets 4401, logins refused 403)
    or lifts it."""
    user = await find_account(db, username)
    async with db.transaction() as conn:
        await db.execute("set_suspended", user.id, suspended, conn=conn)
        ended = await db.fetch("delete_user_sessions", user.id, conn=conn) if suspended else []
    await close_sessions_sockets(fanout, user.id, [session["id"] for session in ended])


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
