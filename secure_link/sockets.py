"""The `/ws/chat/` socket: authenticate, subscribe, then read frames and send events.

An idle socket costs one task: the server's own, which reads client frames.
Fan-out events go to a bounded outbox, and a sender task exists only while the
outbox holds something; both send under one lock so frames never interleave.
A socket whose outbox overflows is closed with 1013, and its client reconnects
and syncs. `ready` is sent only once the socket is subscribed, so every
message committed after it arrives live. Revocations come on the user's
channel, naming the session: one channel per user, whatever its sockets.
Every event's header (fanout/events.py) says what it is; no frame is read here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from typing import Any
from collections.abc import Awaitable, Callable, Mapping

from starlette.websockets import WebSocket, WebSocketDisconnect

from secure_link import accounts, chat
from secure_link.accounts import User, presence
from secure_link.errors import (CLOSE_INTERNAL, CLOSE_POLICY, CLOSE_RATE_LIMITED, CLOSE_RESTARTING, CLOSE_TOO_BIG,
                                CLOSE_TRY_AGAIN, CLOSE_UNAUTHENTICATED, AppError, error_frame, outage, rate_limited)
from secure_link.fanout import Event, Gap, Subscription, events
from secure_link.http import origin_allowed
from secure_link.ratelimit import TokenBucket
from secure_link.services import Services
from secure_link.wire import dumps, is_storable_text, is_utf8, loads

PATH = "/ws/chat/"
STRIKES_BEFORE_CLOSE = 20
CLOSE_TIMEOUT_S = 10.0  # a stalled client that reads again within this sees the close code
log = logging.getLogger("secure_link.sockets")


class Budget:
    """What a socket may send: `chat` frames from one bucket, every other frame (pings, unknown and
    unreadable ones, and everything before `auth`) from another, each CHAT_RATE_PER_S with
    bursts of twice that. A refusal is a strike and an allowed frame forgives one; past
    STRIKES_BEFORE_CLOSE strikes the socket is closed with 4429. Forgiving every strike at
    once let a flood go on for ever as long as a token came every twenty frames; this way
    strikes grow by (sent - 2 × rate) a second: a flood at three times the rate is closed
    about a second after its burst, a client under twice the rate never is.
    """

    __slots__ = ("chat", "other", "strikes")

    def __init__(self, rate: float) -> None:
        self.chat = TokenBucket(rate, 2 * rate)
        self.other = TokenBucket(rate, 2 * rate)
        self.strikes = 0

    def spend(self, kind: str) -> None:
        """Spend a token for a frame of `kind`: `rate_limited` when there is none, Closing(4429) past the strikes."""
        wait = (self.chat if kind == "chat" else self.other).take()
        if not wait:
            self.strikes = max(0, self.strikes - 1)
            return
        self.strikes += 1
        if self.strikes > STRIKES_BEFORE_CLOSE:
            raise Closing(CLOSE_RATE_LIMITED, "kept sending past the rate limit")
        raise rate_limited(wait)


class Closing(Exception):
    """End the socket with a contract close code."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def chat_socket(websocket: WebSocket) -> None:
    """Entry point: refuse foreign origins before the handshake, then run a Connection."""
    services: Services = websocket.state.services
    if not origin_allowed(websocket, services.settings):
        await websocket.close(CLOSE_POLICY)  # before accept: an HTTP 403
        return
    await websocket.accept()
    budget = Budget(services.settings.chat_rate_per_s)
    try:
        user = await authenticate(websocket, services, budget)
        await Connection(websocket, services, user, budget).run()
    except Closing as closing:
        with contextlib.suppress(Exception):  # a stalled client must not hold the close either
            await asyncio.wait_for(websocket.close(closing.code, closing.reason), CLOSE_TIMEOUT_S)
    except WebSocketDisconnect:
        pass
    except Exception as exc:  # noqa: BLE001 - say why with a close code rather than dropping the TCP connection
        code, reason = _close_for(exc)
        with contextlib.suppress(Exception):
            await websocket.close(code, reason)


def _close_for(exc: Exception) -> tuple[int, str]:
    """1013 when the database failed (reconnect and sync later), else 1011 for a bug (logged)."""
    if outage(exc) is not None:
        log.warning("socket closed, a dependency failed: %r", exc)
        return CLOSE_TRY_AGAIN, "service unavailable; reconnect shortly"
    log.error("socket failed", exc_info=exc)
    return CLOSE_INTERNAL, "internal error"


async def authenticate(websocket: WebSocket, services: Services, budget: Budget) -> User:
    """The handshake's cookie or header, else a first `auth` frame within the timeout."""
    token = accounts.token_from(websocket)
    if token is None:
        token = await _auth_frame(websocket, services, budget)
    user = await accounts.user_for_token(services.db, services.settings.session_ttl, token)
    if user is None:
        raise Closing(CLOSE_UNAUTHENTICATED, "session missing, invalid or revoked")
    return user


async def _auth_frame(websocket: WebSocket, services: Services, budget: Budget) -> str:
    """Wait for `{"type": "auth", "token"}` within the timeout, else close with 1008."""
    try:
        return await asyncio.wait_for(_first_auth_frame(websocket, services, budget),
                                      services.settings.ws_auth_timeout)
    except TimeoutError:
        raise Closing(CLOSE_POLICY, "authentication timed out") from None


async def _first_auth_frame(websocket: WebSocket, services: Services, budget: Budget) -> str:
    """Frames before `auth` (a chat, a typo) are answered with an error; the socket stays,
    unless it keeps sending past its budget (every frame here spends from `other`)."""
    while True:
        frame, unreadable = _decode(await _receive_text(websocket, services))
        try:
            budget.spend("")
            if unreadable is not None:
                raise unreadable
        except AppError as error:
            await websocket.send_json(error_frame(error, _client_id_of(frame)))
            continue
        if isinstance(frame, dict) and _kind(frame) == "auth" and isinstance(token := frame.get("token"), str):
            return token
        await websocket.send_json(error_frame(AppError(
            401, "unauthenticated", 'Authenticate first: {"type": "auth", "token": "..."}.'), _client_id_of(frame)))


async def _receive_text(websocket: WebSocket, services: Services) -> str | None:
    """The next text frame; None for a binary frame; Closing(1009) when too large."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    if _frame_bytes_over(message, services.settings.ws_max_frame_bytes):
        raise Closing(CLOSE_TOO_BIG, "frame too large")
    text: str | None = message.get("text")
    return text


def _frame_bytes_over(message: Mapping[str, Any], limit: int) -> bool:
    """Whether a frame, text or binary, holds more than `limit` bytes.

    `secure-link serve` has uvicorn refuse such frames before the app sees them;
    under plain uvicorn (16 MiB frames) this is the limit. A text's UTF-8 length is
    computed only when its characters alone cannot decide (1 to 4 bytes each).
    """
    if (data := message.get("bytes")) is not None:
        return len(data) > limit
    text = message.get("text") or ""
    return len(text) > limit or (4 * len(text) > limit and len(text.encode("utf-8")) > limit)


def _client_id_of(frame: object) -> str | None:
    """The frame's client_id, echoed in any error answering it, so the client knows which send to retry."""
    client_id = frame.get("client_id") if isinstance(frame, dict) else None
    return client_id if isinstance(client_id, str) and is_utf8(client_id) else None


def _decode(text: str | None) -> tuple[object, AppError | None]:
    """The frame, or None and the refusal to answer it with: an unreadable frame still spends a token."""
    try:
        return _parse(text), None
    except AppError as error:
        return None, error


def _kind(frame: object) -> str:
    """The frame's `type`, or "" when it has none."""
    kind = frame.get("type") if isinstance(frame, dict) else None
    return kind if isinstance(kind, str) else ""


def _parse(text: str | None) -> object:
    if text is None:
        raise AppError(400, "unsupported_frame", "Send text frames holding JSON.")
    try:
        return loads(text)
    except (ValueError, RecursionError):  # also too deep, or a number of 4,300+ digits
        raise AppError(400, "bad_json", "The frame is not valid JSON.") from None


class Connection:
    """One authenticated socket: a reader of client frames and a pump of fan-out events."""

    __slots__ = ("bound_peer", "budget", "ending", "floor", "id", "outbox", "reader", "send_lock", "sender",
                 "services", "skip_tag", "user", "websocket")

    def __init__(self, websocket: WebSocket, services: Services, user: User, budget: Budget) -> None:
        self.websocket = websocket
        self.services = services
        self.user = user
        self.id = uuid.uuid4()
        self.skip_tag = self.id.hex  # events this socket sent itself carry it: it gets an ack instead
        bound = websocket.query_params.get("with") or ""
        # an unusable ?with= is as good as none: chat frames then need `to`
        self.bound_peer = bound if 0 < len(bound) <= 64 and is_storable_text(bound) else None
        self.send_lock = asyncio.Lock()  # reader and sender both send; frames must not interleave
        self.budget = budget  # what was spent before `auth` stays spent
        self.floor = 0  # every message with id <= floor has been given to this socket
        self.outbox: deque[str | Gap] | None = None  # fan-out events not sent yet; made on the first
        self.sender: asyncio.Task[None] | None = None  # alive only while the outbox holds something
        self.reader: asyncio.Task[Any] | None = None  # the server's task, which reads client frames; None once served
        self.ending: BaseException | None = None  # why the sender ended the socket

    async def run(self) -> None:
        """Subscribe, announce, say `ready`, then serve until either side ends."""
        services, user = self.services, self.user
        async with services.fanout.subscribe(events.user_channel(user.id)) as subscription:
            try:
                await presence.connection_opened(services.db, services.fanout, services.worker_id,
                                                 services.settings.ws_max_sockets_per_user, user, self.id)
            except presence.TooManySockets:
                raise Closing(CLOSE_POLICY, "too many sockets open for this account") from None
            services.metrics.sockets_open.inc()
            try:
                with services.session_sockets.held_by(user):
                    self.floor = await services.db.fetchval("max_message_id_for_user", user.id)
                    await self._greet()
                    await self._serve(subscription)
            finally:
                services.metrics.sockets_open.dec()
                await asyncio.shield(presence.connection_closed(services.db, services.fanout, user, self.id))

    async def _greet(self) -> None:
        """`ready`, then who of the user's peers is online (looked up before `ready`)."""
        online = await presence.online_peers(self.services.db, self.user)
        await self.websocket.send_text(events.ready(accounts.user_json(self.user)).frame)
        for name in online:
            await self.websocket.send_text(events.presence(name, online=True).frame)

    async def _serve(self, subscription: Subscription) -> None:
        """Read frames in this task until the client leaves or the sender ends the socket.

        The sender ends it by cancelling this task: the cancellation is then
        turned back into the sender's reason (Closing, a failed catch-up, ...).
        """
        self.reader = asyncio.current_task()
        subscription.forward(self._queue_event)
        try:
            await self._read()
        except asyncio.CancelledError:
            if self.ending is None:
                raise  # the server cancelled us
            self.reader.uncancel()  # type: ignore[union-attr]
            raise self.ending from None
        finally:
            self.reader = None  # served: a sender started by a late event must not cancel run()'s cleanup
            if self.sender is not None:
                self.sender.cancel()
                await asyncio.gather(self.sender, return_exceptions=True)

    def _queue_event(self, item: str | Gap | None) -> None:
        """Called by the fan-out for each event (None: it closed); starts the sender if idle."""
        if item is None:
            self._end(Closing(CLOSE_RESTARTING, "server restarting; reconnect and sync"))
            return
        if self.outbox is None:
            self.outbox = deque()
        if len(self.outbox) >= self.services.settings.ws_send_queue:
            self._end(Closing(CLOSE_TRY_AGAIN, "too far behind; reconnect and sync"))
            return
        self.outbox.append(item)
        if self.sender is None and self.ending is None:
            self.sender = asyncio.create_task(self._send_events())

    def _end(self, reason: BaseException) -> None:
        """End the socket for `reason`: the reader, in the server's task, raises it."""
        if self.ending is None:
            self.ending = reason
            self.outbox = None
            if self.reader is not None:
                self.reader.cancel()

    async def _send_events(self) -> None:
        """Send the outbox; a gap triggers a catch-up from the database. Ends when it is empty."""
        try:
            while self.outbox:
                item = self.outbox.popleft()
                if isinstance(item, Gap):
                    await self._catch_up()
                    continue
                event = events.opened(item)
                if event.kind == events.REVOKED:
                    if event.session == self.user.session_id:
                        raise Closing(CLOSE_UNAUTHENTICATED, "session revoked")
                elif event.skip != self.skip_tag:
                    await self._send(event)
                    if event.message_id:
                        self._delivered(event.message_id)
        except Exception as exc:  # noqa: BLE001 - the reader ends the socket with it (Closing, disconnect, outage)
            self._end(exc)
        finally:
            self.sender = None
            if not self.outbox:
                self.outbox = None  # an idle socket holds no buffer

    async def _send_text(self, text: str) -> None:
        """Send one frame; a client that has not read for WS_SEND_TIMEOUT is too far behind."""
        async with self.send_lock:
            try:
                async with asyncio.timeout(self.services.settings.ws_send_timeout):
                    await self.websocket.send_text(text)
            except TimeoutError:
                raise Closing(CLOSE_TRY_AGAIN, "too far behind; reconnect and sync") from None

    async def _send(self, event: Event) -> None:
        await self._send_text(event.frame)

    async def _send_error(self, error: AppError, frame: object) -> None:
        """The one error shape, as a frame, echoing the client_id of the frame it answers."""
        await self._send_text(dumps(error_frame(error, _client_id_of(frame))))

    def _delivered(self, message_id: int) -> None:
        """Count a chat frame handed to this socket; at debug level, log it to follow a message across hosts."""
        self.services.metrics.messages_delivered.inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("message delivered", extra={"message_id": message_id, "connection": self.id.hex})

    async def _catch_up(self) -> None:
        """After a fan-out reconnect, resend what may have been missed (clients dedupe by id).

        A revocation published during the gap was lost too, so the session is
        re-checked; so were removals (`cleared`), which no replay can show, so
        the client is told to reload what it shows (`resync`) before the replay.
        """
        if not await self.services.db.fetchval("session_is_live", self.user.session_id):
            raise Closing(CLOSE_UNAUTHENTICATED, "session revoked")
        self.services.metrics.fanout_catch_ups.inc()
        await self._send(events.resync())
        self.floor = await self._replay(self.floor)

    async def _replay(self, since: int) -> int:
        last_id = since
        async for message in chat.replay(self.services.db, self.services.bodies, self.user, since):
            await self._send(events.chat(message))
            self._delivered(message["id"])
            last_id = message["id"]
        return last_id

    async def _read(self) -> None:
        while True:
            frame, unreadable = _decode(await _receive_text(self.websocket, self.services))
            try:
                self.budget.spend(_kind(frame))
                if unreadable is not None:
                    raise unreadable
                await self._handle(frame)
            except AppError as error:
                self.services.metrics.errors.labels(error.code).inc()
                await self._send_error(error, frame)
            except (Closing, WebSocketDisconnect):
                raise
            except Exception as exc:  # one bad frame must not kill a healthy socket
                refusal = outage(exc)
                if refusal is None:
                    log.error("frame failed", exc_info=exc)
                    refusal = AppError(500, "internal", "Something went wrong on our side.")
                else:
                    log.warning("frame refused, a dependency failed: %r", exc)
                self.services.metrics.errors.labels(refusal.code).inc()
                await self._send_error(refusal, frame)

    async def _handle(self, frame: object) -> None:
        handlers: dict[str, Callable[[object], Awaitable[None]]] = {
            "chat": self._on_chat, "sync": self._on_sync, "read": self._on_read, "typing": self._on_typing,
            "ping": self._on_ping, "auth": self._on_auth, "timer": self._on_timer, "delete": self._on_delete}
        handler = handlers.get(_kind(frame))
        if handler is None:
            raise AppError(400, "unknown_type",
                           "Unknown frame type: use chat, sync, read, typing, timer, delete or ping.")
        await handler(frame)

    async def _on_chat(self, frame: object) -> None:
        draft = chat.parse_draft(frame, self.services.settings.max_message_chars, self.bound_peer)
        with self.services.in_flight:  # a shutdown waits for this ack (ops/drain.py)
            # shielded: once committed, the message is published even if this socket is closing
            message, _ = await asyncio.shield(chat.send_message(self.services, self.user, draft, origin=self.id.hex))
            await self._send(events.ack(draft.client_id, message))

    async def _on_sync(self, frame: object) -> None:
        since = chat.parse_sync(frame)
        last_id = max(since, await self._replay(since))
        self.floor = max(self.floor, last_id)
        await self._send(events.synced(last_id))

    async def _on_read(self, frame: object) -> None:
        peer, up_to = chat.parse_read(frame, self.bound_peer)
        await chat.mark_read(self.services.db, self.services.fanout, self.user, peer, up_to)

    async def _on_typing(self, frame: object) -> None:
        peer = chat.parse_typing(frame, self.bound_peer)
        await chat.typing(self.services.db, self.services.fanout, self.user, peer)

    async def _on_timer(self, frame: object) -> None:
        """Set a conversation's timer; both parties hear a `timer` frame (this socket too)."""
        peer, seconds = chat.parse_timer(frame, self.bound_peer)
        await chat.set_timer(self.services.db, self.services.fanout, self.user, peer, seconds)

    async def _on_delete(self, frame: object) -> None:
        """Delete a message for both parties; both hear a `deleted` frame (this socket too)."""
        await chat.delete_for_everyone(self.services, self.user, chat.parse_delete(frame))

    async def _on_ping(self, frame: object) -> None:
        await self._send(events.pong())

    async def _on_auth(self, frame: object) -> None:
        raise AppError(400, "already_authenticated", "This socket is already authenticated.")
