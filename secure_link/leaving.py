"""Your phrase and leaving (contract v1.2), and the operator's hold on an account.

Changing the phrase ends every other session at once. Deleting an account does
what a logout does for all its sessions, and removes the user with its avatar,
unsent uploads, sessions, invites and blocks, in the one transaction that holds
the user's send lock (so no message to it lands between the clearing and the
removal); its name is retired for good, kept only as a keyed hash. The operator
suspends, lifts, and deletes (`secure-link users`).
"""

from __future__ import annotations

from typing import Any

from . import accounts, auth, chat, media
from .auth import User
from .errors import AppError, invalid
from .payload import take
from .services import Services


async def change_phrase(services: Services, user: User, body: Any, address: str) -> dict[str, Any]:
    """A new phrase, checked against the rules; the old one proven (throttled like a login).
    Every other session ends, its sockets closed (4401) on every worker; this one stays."""
    values = take(body, {"phrase": str, "new_phrase": str})
    if problem := auth.phrase_problem(values["new_phrase"], user.username):
        raise invalid({"new_phrase": problem})
    await accounts.check_phrase(services, user.username, values["phrase"], address)
    with auth.hashing_place(services):
        phrase_hash = await auth.hash_phrase(services, values["new_phrase"])
    async with services.db.transaction() as conn:
        row = await services.db.fetchrow("update_phrase_hash", user.id, phrase_hash, conn=conn)
        ended = await services.db.fetch("delete_other_sessions", user.id, user.session_id, conn=conn)
    await _close_sockets(services, user.id, ended)
    return auth.user_json(row)


async def delete_account(services: Services, user: User, body: Any, address: str) -> dict[str, int]:
    """Leave, the phrase proven (throttled like a login)."""
    values = take(body, {"phrase": str})
    await accounts.check_phrase(services, user.username, values["phrase"], address)
    return await erase_account(services, user)


async def erase_account(services: Services, user: User) -> dict[str, int]:
    """Everything of the user goes (the operator's `users delete` too); counts as logout counts."""
    async with services.db.transaction() as conn:
        cleared = await chat.clear_within(services, user, conn)
        await services.db.execute("lock_username", user.username, conn=conn)
        owned = await services.db.fetch("list_owned_file_paths", user.id, conn=conn)
        doomed = [path for row in owned for path in (row["path"], row["thumbnail_path"]) if path]
        await services.db.execute("record_doomed_files", doomed, conn=conn)
        ended = await services.db.fetch("delete_user_sessions", user.id, conn=conn)
        await services.db.execute("retire_username", accounts.retired_tag(services, user.username), conn=conn)
        await services.db.execute("delete_user", user.id, conn=conn)
    await chat.finish_clearing(services, user, cleared)
    await media.unlink_doomed(services, doomed)
    await _close_sockets(services, user.id, ended)
    return cleared.counts()


async def suspend(services: Services, username: str, suspended: bool) -> Any:
    """The operator suspends an account (every session ends, sockets 4401, logins refused 403)
    or lifts it."""
    user = await find_account(services, username)
    async with services.db.transaction() as conn:
        row = await services.db.fetchrow("set_suspended", user.id, suspended, conn=conn)
        ended = await services.db.fetch("delete_user_sessions", user.id, conn=conn) if suspended else []
    await _close_sockets(services, user.id, ended)
    return row


async def find_account(services: Services, username: str) -> User:
    """The account of that name, for the operator; 404 `unknown_user`."""
    row = await services.db.fetchrow("find_user_by_username", auth.fold_username(username))
    if row is None:
        raise AppError(404, "unknown_user", f"No user has the username {username!r}.")
    return User.from_row(row)


async def _close_sockets(services: Services, user_id: int, sessions: list[Any]) -> None:
    for row in sessions:
        await chat.close_session_sockets(services, user_id, row["id"])
