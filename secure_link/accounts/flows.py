"""Account flows: register, log in, log out, profile, and a user's sessions."""

from __future__ import annotations

from typing import Any

from secure_link.accounts import auth
from secure_link.chat import messages as chat
from secure_link.accounts import presence
from secure_link.accounts.auth import User
from secure_link.errors import AppError, invalid, rate_limited
from secure_link.wire import take
from secure_link.services import Services


async def register(services: Services, body: Any, address: str, user_agent: str) -> tuple[dict, str]:
    """Create an account and its first session; every broken rule is named in `fields`."""
    values = take(body, {"username": str, "phrase": str}, {"display_name": str})
    username = auth.fold_username(values["username"])
    fields: dict[str, str] = {}
    if problem := auth.username_problem(username):
        fields["username"] = problem
    if problem := auth.phrase_problem(values["phrase"], username):
        fields["phrase"] = problem
    display_name, problem = auth.clean_display_name(values["display_name"] or username)
    if problem:
        fields["display_name"] = problem
    if fields:
        raise invalid(fields)
    if wait := services.register_limiter.hit(address):
        raise rate_limited(wait, "Too many registrations from this address; try again later.")
    with auth.hashing_place(services):
        phrase_hash = await auth.hash_phrase(services, values["phrase"])
    row = await services.db.fetchrow("insert_user", username, display_name, phrase_hash)
    if row is None:
        raise AppError(409, "username_taken", "That username is taken.", fields={"username": "is taken"})
    token, _ = await auth.open_session(services, row["id"], user_agent, address)
    return auth.user_json(row), token


async def login(services: Services, body: Any, address: str, user_agent: str) -> tuple[dict, str]:
    """Check the phrase; unknown users and wrong phrases get the same answer in the same time."""
    values = take(body, {"username": str, "phrase": str})
    username = auth.fold_username(values["username"])[:64]
    with auth.hashing_place(services):  # first: a full line answers 503 busy, counting nothing
        attempt = await auth.reserve_login_attempt(services, username, address)
        row = await services.db.fetchrow("find_user_credentials", username)
        ok = await auth.phrase_matches(services, values["phrase"], row["phrase_hash"] if row else None)
    await auth.settle_login_attempt(services, username, address, attempt, succeeded=ok)
    if not ok or row is None:
        raise AppError(401, "invalid_credentials", "Unknown username or wrong phrase.")
    token, _ = await auth.open_session(services, row["id"], user_agent, address)
    return auth.user_json(row), token


async def logout(services: Services, user: User) -> dict[str, int]:
    """Clear every conversation the user is in, then revoke this session.

    In that order, a failed clearing leaves the user logged in to try again.
    """
    cleared = await chat.clear_conversations(services, user)
    await revoke_session(services, user, user.session_id)
    return cleared


async def update_profile(services: Services, user: User, body: Any) -> dict:
    """Change what others see: for now the display name (the avatar goes through uploads)."""
    values = take(body, {"display_name": str})
    display_name, problem = auth.clean_display_name(values["display_name"])
    if problem:
        raise invalid({"display_name": problem})
    changed = auth.user_json(await services.db.fetchrow("update_display_name", user.id, display_name))
    await presence.announce_profile(services, changed)
    return changed


async def avatar_changed(services: Services, user: User) -> None:
    """Tell those who see the user that the avatar changed (media.upload calls this for an avatar)."""
    await presence.announce_profile(services, auth.user_json(await services.db.fetchrow("find_user_by_id", user.id)))


async def find_person(services: Services, user: User, username: str) -> dict[str, Any]:
    """Someone to open a chat with: their public User, and whether the asker sees them online.

    Limited with the user's REST send budget. It tells no more than a send or a timer
    lookup already does (404 `unknown_user`): making accounts scarce (invites) is what
    stands against enumeration."""
    if wait := services.rest_send_limiter.take(user.id):
        raise rate_limited(wait)
    if auth.fold_username(username) == user.username:
        raise AppError(422, "invalid_recipient", "That is you: a conversation is with someone else.",
                       fields={"username": "is your own"})
    peer = await chat.find_peer(services, user, username)
    return {"user": auth.user_json(peer), "online": await presence.seen_online(services, user, peer["id"])}


async def list_sessions(services: Services, user: User) -> list[dict]:
    """The user's live sessions, newest use first, marking the one asking."""
    rows = await services.db.fetch("list_sessions", user.id)
    return [{
        "id": row["id"],
        "created_at": auth.rfc3339(row["created_at"]),
        "last_used_at": auth.rfc3339(row["last_used_at"]),
        "expires_at": auth.rfc3339(row["expires_at"]),
        "user_agent": row["user_agent"],
        "address": row["address"],
        "current": row["id"] == user.session_id,
    } for row in rows]


async def revoke_session(services: Services, user: User, session_id: int) -> None:
    """End one of the user's sessions; its sockets, on any worker, close with 4401."""
    deleted = await services.db.fetchval("delete_session", session_id, user.id)
    if deleted is None:
        raise AppError(404, "not_found", "No such session.")
    await chat.close_session_sockets(services, user.id, session_id)
