"""Sessions: a token per login, who a request or socket is, and ending a session everywhere.

A session's token is 256 random bits, of which the database keeps only the
SHA-256. A revoked (or expired) session's sockets close with 4401 on every
worker: the revocation is an event on the user's channel (`session_revoked`),
and housekeeping closes, on each worker, the sockets whose event was lost
(`close_ended_sessions`), so none stays usable longer than one round.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import secrets
from collections.abc import Iterator

from starlette.requests import HTTPConnection

from secure_link.accounts.users import User
from secure_link.config import Settings
from secure_link.db import Database
from secure_link.errors import AppError
from secure_link.fanout import Fanout, events
from secure_link.http import origin_allowed
from secure_link.wire import JsonObject, is_utf8, rfc3339

SESSION_COOKIE = "session"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


async def open_session(db: Database, ttl: int, user_id: int, user_agent: str, address: str) -> str:
    """A new session: 256 random bits for the client, only their SHA-256 stored."""
    token = secrets.token_urlsafe(32)
    await db.fetchval("insert_session", user_id, _token_hash(token), float(ttl), user_agent[:256], address)
    return token


def bearer_token(connection: HTTPConnection) -> str | None:
    """The `Authorization: Bearer` token, which a browser never adds by itself."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_from(connection: HTTPConnection) -> str | None:
    """Bearer header first, then the session cookie."""
    return bearer_token(connection) or connection.cookies.get(SESSION_COOKIE) or None


async def user_for_token(db: Database, ttl: int, token: str | None) -> User | None:
    """The live session's user, sliding its expiry; None for missing, bad or expired."""
    if not token or len(token) > 512 or not is_utf8(token):
        return None
    row = await db.fetchrow("authenticate_session", _token_hash(token), float(ttl))
    return User.from_row(row, row["session_id"]) if row else None


async def authenticate(connection: HTTPConnection, db: Database, settings: Settings) -> User:
    """The user of the request's session, or 401 `unauthenticated`.

    A browser attaches the session cookie to requests that any page makes, a
    sibling subdomain's included (SameSite=Lax does not stop those), so a
    cookie may change something only when the page is ours or allowed: 403
    `origin_refused` otherwise. A bearer token proves the caller chose to send it.
    """
    token = bearer_token(connection)
    if token is None:
        token = connection.cookies.get(SESSION_COOKIE) or None
        if token and connection.scope.get("method") not in SAFE_METHODS \
                and not origin_allowed(connection, settings):
            raise AppError(403, "origin_refused", "The session cookie cannot be used from another site's page.")
    user = await user_for_token(db, settings.session_ttl, token)
    if user is None:
        raise AppError(401, "unauthenticated", "Log in first: the session is missing, invalid or expired.")
    return user


async def list_sessions(db: Database, user: User) -> list[JsonObject]:
    """The user's live sessions, newest use first, marking the one asking."""
    rows = await db.fetch("list_sessions", user.id)
    return [{
        "id": row["id"],
        "created_at": rfc3339(row["created_at"]),
        "last_used_at": rfc3339(row["last_used_at"]),
        "expires_at": rfc3339(row["expires_at"]),
        "user_agent": row["user_agent"],
        "address": row["address"],
        "current": row["id"] == user.session_id,
    } for row in rows]


async def revoke_session(db: Database, fanout: Fanout, user: User, session_id: int) -> None:
    """End one of the user's sessions; its sockets, on any worker, close with 4401."""
    deleted = await db.fetchval("delete_session", session_id, user.id)
    if deleted is None:
        raise AppError(404, "not_found", "No such session.")
    await events.publish(fanout, [events.user_channel(user.id)], events.session_revoked(session_id))


async def close_sessions_sockets(fanout: Fanout, user_id: int, session_ids: list[int]) -> None:
    """The sockets of these ended sessions of the user close (4401), on every worker."""
    for session_id in session_ids:
        await events.publish(fanout, [events.user_channel(user_id)], events.session_revoked(session_id))


class SessionSockets:
    """This worker's sockets, counted by the session that opened them: those to close when it ends."""

    def __init__(self) -> None:
        self._open: collections.Counter[tuple[int, int]] = collections.Counter()

    @contextlib.contextmanager
    def held_by(self, user: User) -> Iterator[None]:
        """Count one socket of the user's session while it is open."""
        session = (user.id, user.session_id)
        self._open[session] += 1
        try:
            yield
        finally:
            self._open[session] -= 1
            if not self._open[session]:
                del self._open[session]

    def sessions(self) -> list[tuple[int, int]]:
        """(user id, session id) of every session with a socket open here."""
        return list(self._open)


async def close_ended_sessions(db: Database, fanout: Fanout, sockets: SessionSockets) -> None:
    """Close this worker's sockets whose session was revoked or expired, with 4401.

    The revocation event usually closes them at once; this round of
    housekeeping catches the sockets whose event was lost (a failed publish
    is logged, not retried), so none stays usable longer than one interval.
    """
    here = sockets.sessions()
    if not here:
        return
    live = {row["id"] for row in await db.fetch("list_live_session_ids", [s for _, s in here])}
    for user_id, session_id in here:
        if session_id not in live:
            fanout.deliver_locally(events.user_channel(user_id), events.session_revoked(session_id).envelope())
