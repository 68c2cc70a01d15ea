"""Sessions: a token per login, who a request or socket is, and ending a session everywhere.

A session's token is 256 random bits, of which the database keeps only the
SHA-256. A revoked (or expired) session's sockets close with 4401 on every
worker: the revocation is an event on the user's channel (`session_revoked`),
and housekeeping closes, on each worker, the sockets whose event was lost
(`close_ended_sessions`), so none stays usable longer than one round.

REST requests skip the database while their session is in this worker's
`SessionCache` (validated within `CACHE_MAX_AGE_S`). Every end of a session is
also published on `SESSIONS_CHANNEL`, which every worker hears from start-up,
REST-only ones included, and which drops the user's sessions from each cache.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator

from starlette.requests import HTTPConnection

from secure_link.accounts.users import User
from secure_link.config import Settings
from secure_link.db import Database
from secure_link.errors import AppError
from secure_link.fanout import Fanout, Gap, Subscription, events
from secure_link.http import origin_allowed
from secure_link.wire import JsonObject, is_utf8, rfc3339

SESSION_COOKIE = "session"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SESSIONS_CHANNEL = "sessions"  # every worker hears here whose sessions ended: the user id, a space, a nonce
# How long a validated session is trusted without the database: the bound on a revocation whose
# publish was lost (docs/security.md). Revalidating also slides the expiry (at most once a minute,
# authenticate_session), which is coarse enough: sessions live SESSION_TTL, 30 days, after their last use.
CACHE_MAX_AGE_S = 5.0
ECHO_WAIT_S = 1.0  # longest a request that ended sessions waits for its publish to come back
log = logging.getLogger("secure_link.chat")  # where events.publish logs a failed publish


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


@dataclasses.dataclass(slots=True)
class _Validated:
    user: User
    at: float  # the clock when the database last said the session is live


class SessionCache:
    """This worker's sessions validated within `max_age`, by token hash, least recently used out first.

    Only what the database accepted is kept: a flood of random tokens costs a
    query each, as before, and pushes no live session out. Nothing is kept
    while this worker does not hear `SESSIONS_CHANNEL` (`hearing`).
    """

    def __init__(self, size: int, max_age: float = CACHE_MAX_AGE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._size, self._max_age, self._clock = size, max_age, clock
        self._entries: collections.OrderedDict[bytes, _Validated] = collections.OrderedDict()
        self._hearing = False
        self.epoch = 0  # moves on at every drop: a validation that began before one is not kept

    def get(self, token_hash: bytes) -> User | None:
        """The session's user if validated within the max age, else None (ask the database)."""
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if self._clock() - entry.at >= self._max_age:
            del self._entries[token_hash]
            return None
        self._entries.move_to_end(token_hash)
        return entry.user

    def put(self, token_hash: bytes, user: User, epoch: int) -> None:
        """Keep a validation that began at `epoch`, unless a session ended since (it may be this one)."""
        if not self._hearing or epoch != self.epoch or self._size <= 0:
            return
        self._entries[token_hash] = _Validated(user, self._clock())
        self._entries.move_to_end(token_hash)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def drop_user(self, user_id: int) -> None:
        """Forget every session of the user (one ended: which one does not matter, they re-validate)."""
        self.epoch += 1
        for token_hash in [h for h, entry in self._entries.items() if entry.user.id == user_id]:
            del self._entries[token_hash]

    def clear(self) -> None:
        """Forget everything: endings may have been missed (a fan-out gap)."""
        self.epoch += 1
        self._entries.clear()

    def heard(self, item: str | Gap | None) -> None:
        """What `SESSIONS_CHANNEL` brings: a user whose sessions ended, a GAP, or None (the fan-out closed)."""
        user_id = item.partition(" ")[0] if isinstance(item, str) else ""
        if user_id.isdigit():
            self.drop_user(int(user_id))
            return
        self.clear()
        if item is None:
            self._hearing = False

    @contextlib.asynccontextmanager
    async def hearing(self, fanout: Fanout) -> AsyncIterator[None]:
        """Listen on `SESSIONS_CHANNEL` for the worker's life (the lifespan); keep nothing before or after."""
        async with fanout.subscribe(SESSIONS_CHANNEL) as endings:
            endings.forward(self.heard)
            self._hearing = True
            try:
                yield
            finally:
                self.heard(None)

    def __len__(self) -> int:
        return len(self._entries)


async def user_for_token(db: Database, ttl: int, token: str | None, cache: SessionCache | None = None) -> User | None:
    """The live session's user, sliding its expiry; None for missing, bad or expired.

    With a cache, a session validated here within its max age needs no query.
    """
    if not token or len(token) > 512 or not is_utf8(token):
        return None
    token_hash = _token_hash(token)
    if cache is not None and (user := cache.get(token_hash)) is not None:
        return user
    epoch = cache.epoch if cache is not None else 0
    row = await db.fetchrow("authenticate_session", token_hash, float(ttl))
    if row is None:
        return None
    user = User.from_row(row, row["session_id"])
    if cache is not None:
        cache.put(token_hash, user, epoch)
    return user


async def authenticate(connection: HTTPConnection, db: Database, settings: Settings,
                       cache: SessionCache | None = None) -> User:
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
    user = await user_for_token(db, settings.session_ttl, token, cache)
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
    await close_sessions_sockets(fanout, user.id, [session_id])


async def close_sessions_sockets(fanout: Fanout, user_id: int, session_ids: list[int]) -> None:
    """The sockets of these ended sessions of the user close (4401), and every worker's cache
    forgets the user's sessions: this one's at once, the others' in one round trip."""
    if session_ids:
        await _forget_sessions(fanout, user_id)
    for session_id in session_ids:
        await events.publish(fanout, [events.user_channel(user_id)], events.session_revoked(session_id))


async def _forget_sessions(fanout: Fanout, user_id: int) -> None:
    """Here at once; then publish, and answer only once the message came back through the transport,
    which hands it to every worker's listener at the same moment. A failed publish is logged: other
    workers' caches then forget within CACHE_MAX_AGE_S."""
    fanout.deliver_locally(SESSIONS_CHANNEL, str(user_id))
    message = f"{user_id} {secrets.token_hex(8)}"
    try:
        async with fanout.subscribe(SESSIONS_CHANNEL) as heard:
            await fanout.publish(SESSIONS_CHANNEL, message)
            await asyncio.wait_for(_until(heard, message), ECHO_WAIT_S)
    except Exception:  # the sessions are deleted; each cache re-validates within its max age
        log.warning("publish of ended sessions failed or did not come back; other workers trust them up to %s s",
                    CACHE_MAX_AGE_S, exc_info=True)


async def _until(subscription: Subscription, message: str) -> None:
    while await subscription.get() != message:
        pass


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
