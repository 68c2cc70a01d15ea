"""The PostgreSQL LISTEN/NOTIFY transport of the fan-out (`postgres://` URLs).

NOTIFY payloads are limited to 8,000 bytes: a larger message is parked in
`fanout_spill` and its row id notified instead, read back by each receiver and
pruned by housekeeping. What is parked is sealed like every payload (seal.py),
and a logout's `Fanout.forget` deletes it with its conversation.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable

import asyncpg

from secure_link.db import keep_session, load_queries
from secure_link.fanout.backends.base import (COMMAND_TIMEOUT, GAP, LISTEN_NAME, Deliver, Gap, described, log,
                                              retry_with_backoff, stop_task)

INLINE, SPILLED = "=", "@"  # first character of a NOTIFY payload; '@' is also written in fanout.sql
_NOTIFY_MAX_BYTES = 7999  # PostgreSQL rejects payloads of 8,000 bytes or more
INBOX_SIZE = 10_000
_PG_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
_SAFE_CHANNEL = re.compile(r"[a-z0-9_]{1,50}")


def pg_channel(channel: str) -> str:
    """A PostgreSQL identifier for any channel string; the two prefixes never collide."""
    if _SAFE_CHANNEL.fullmatch(channel):
        return "slc_" + channel
    return "slh_" + hashlib.sha256(channel.encode("utf-8")).hexdigest()[:32]


def fits_notify(payload: str) -> bool:
    """UTF-8 needs at most 4 bytes a character, so short strings skip the encode."""
    return len(payload) * 4 <= _NOTIFY_MAX_BYTES or len(payload.encode("utf-8")) <= _NOTIFY_MAX_BYTES


class PostgresBackend:
    """LISTEN on one dedicated connection, publish through a small pool.

    A shared connection makes concurrent publishes fail ("another operation is
    in progress"), as broadcaster's does. The LISTEN connection is watched
    (termination listener + periodic probe) because asyncpg does not notice an
    idle connection dying; every command on it has a timeout, so a silent
    server cannot hold the lock forever. Notifications pass through one ordered
    inbox so a spilled message is never overtaken by a later small one.
    """

    name = "postgres"

    def __init__(self, url: str, deliver: Deliver, probe_interval: float, own: str = "") -> None:
        """`own`: the tag this process's batches start with (core.backend_for); "" drops nothing."""
        self._url, self._deliver, self._probe_interval = url, deliver, probe_interval
        # PostgreSQL hands a session every NOTIFY on a channel it LISTENs to, its own process's
        # too (from the pool or the LISTEN connection alike): those are dropped in the callback
        self._echo = INLINE + own if own else None
        self.received = 0  # notifications queued in the inbox
        self.echoes = 0  # this process's own, dropped on arrival
        self._idents: dict[str, str] = {}  # identifier LISTENed -> channel
        self._lock = asyncio.Lock()  # one command at a time on the LISTEN connection
        self._lost = asyncio.Event()
        self._inbox: asyncio.Queue[tuple[str, str] | Gap] = asyncio.Queue(INBOX_SIZE)
        self._conn: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sql: dict[str, str] = {}

    async def connect(self) -> None:
        """Open pool and LISTEN connection now, so a bad URL fails at start-up."""
        self._sql = {name: q.sql for name, q in load_queries().items() if name.startswith("fanout_")}
        self._pool = await asyncpg.create_pool(self._url, min_size=1, max_size=4, reset=keep_session,
                                               timeout=COMMAND_TIMEOUT, command_timeout=COMMAND_TIMEOUT)
        try:
            await self._open()
        except BaseException:
            await self._pool.close()
            raise
        self._tasks = [asyncio.create_task(self._supervise(), name="fanout-pg-supervisor"),
                       asyncio.create_task(self._pump(), name="fanout-pg-pump")]

    async def disconnect(self) -> None:
        """Stop the tasks, then close the LISTEN connection and the pool."""
        for task in self._tasks:
            await stop_task(task)
        self._tasks = []
        async with self._lock:
            self._drop()
            self._idents.clear()  # Fanout forgets its subscribers too; a later connect() starts clean
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), COMMAND_TIMEOUT)
            except _PG_ERRORS:
                self._pool.terminate()

    async def listen(self, channel: str) -> None:
        """LISTEN before returning; if the connection is down, the reconnect LISTENs and sends GAP."""
        ident = pg_channel(channel)
        async with self._lock:
            self._idents[ident] = channel
            if self._conn is not None:  # add_listener quotes the identifier
                await self._command(f"LISTEN {ident}", self._conn.add_listener(ident, self._on_notify))

    async def unlisten(self, channel: str) -> None:
        """UNLISTEN; a dead connection has forgotten the channel anyway."""
        ident = pg_channel(channel)
        async with self._lock:
            self._idents.pop(ident, None)
            if self._conn is not None:
                await self._command(f"UNLISTEN {ident}", self._conn.remove_listener(ident, self._on_notify))

    async def publish(self, channels: list[str], message: str) -> None:
        """NOTIFY every channel in one statement, inline or parked once in `fanout_spill`."""
        assert self._pool is not None, "connect() first"
        envelope = INLINE + message
        idents = [pg_channel(channel) for channel in channels]
        if fits_notify(envelope):
            await self._pool.execute(self._sql["fanout_notify"], idents, envelope)
            return
        await self._pool.execute(self._sql["fanout_spill_notify"], idents, message)

    async def publish_batch(self, items: list[tuple[list[str], str]]) -> None:
        """Every message to its channels, in order: consecutive small ones in one statement.

        A message too large for NOTIFY is parked on its own, between the runs
        of small ones, so receivers still get everything in the order given.
        """
        assert self._pool is not None, "connect() first"
        idents: list[str] = []
        envelopes: list[str] = []
        for channels, message in items:
            envelope = INLINE + message
            if fits_notify(envelope):
                idents.extend(pg_channel(channel) for channel in channels)
                envelopes.extend(envelope for _ in channels)
                continue
            await self._notify_run(idents, envelopes)
            await self.publish(channels, message)
        await self._notify_run(idents, envelopes)

    async def _notify_run(self, idents: list[str], envelopes: list[str]) -> None:
        """NOTIFY the pairs collected so far in one round trip, and empty the lists."""
        if idents:
            await self._pool.execute(self._sql["fanout_notify_pairs"], idents, envelopes)  # type: ignore[union-attr]
            idents.clear()
            envelopes.clear()

    async def forget(self, channels: list[str]) -> None:
        """Delete the parked copies of messages published to any of these channels."""
        assert self._pool is not None, "connect() first"
        await self._pool.execute(self._sql["fanout_forget_spill"], [pg_channel(channel) for channel in channels])

    async def prune(self, older_than_s: float) -> None:
        """Delete parked messages older than that: every receiver has read them long before."""
        assert self._pool is not None, "connect() first"
        await self._pool.execute(self._sql["fanout_prune_spill"], older_than_s)

    async def _command(self, what: str, operation: Awaitable[object]) -> None:
        """One command on the LISTEN connection; a failure hands it to the supervisor."""
        try:
            await asyncio.wait_for(operation, COMMAND_TIMEOUT)
        except _PG_ERRORS as exc:
            log.warning("fanout: %s failed (%s)", what, described(exc))
            self._lost.set()

    async def _open(self) -> None:
        """A fresh LISTEN connection that already LISTENs on every channel."""
        async with self._lock:
            conn = await asyncpg.connect(self._url, timeout=COMMAND_TIMEOUT, command_timeout=COMMAND_TIMEOUT,
                                         server_settings={"application_name": LISTEN_NAME})
            try:
                conn.add_termination_listener(self._on_terminated)
                for ident in self._idents:
                    await conn.add_listener(ident, self._on_notify)  # command_timeout bounds it
            except BaseException:
                conn.terminate()
                raise
            self._conn = conn
            self._lost.clear()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # nothing to flush on a LISTEN connection, and it may be silent

    def _on_terminated(self, conn: object) -> None:
        if conn is self._conn:
            self._lost.set()

    def _on_notify(self, conn: object, pid: int, ident: str, payload: object) -> None:
        channel = self._idents.get(ident)
        if channel is None:
            return
        text = str(payload)  # asyncpg hands NOTIFY payloads as str
        if self._echo is not None and text.startswith(self._echo):
            self.echoes += 1  # delivered here when it was published (Fanout.publish_batch)
            return
        self.received += 1
        self._enqueue((channel, text))

    def _enqueue(self, item: tuple[str, str] | Gap) -> None:
        try:
            self._inbox.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("fanout: postgres inbox full; dropping a notification")
            self._deliver(None, GAP)

    async def _supervise(self) -> None:
        """Forever: wait for the connection to die, reconnect, re-LISTEN, then signal GAP."""
        while True:
            reason = await self._watch()
            log.warning("fanout: postgres LISTEN connection lost (%s); reconnecting", reason)
            async with self._lock:
                self._drop()
            failures = await retry_with_backoff(self._open, "postgres LISTEN", _PG_ERRORS)
            log.warning("fanout: postgres LISTEN restored after %d failed attempt(s); %d channel(s)",
                        failures, len(self._idents))
            self._enqueue(GAP)

    async def _watch(self) -> str:
        """Return why the LISTEN connection is no longer usable."""
        while True:
            try:
                await asyncio.wait_for(self._lost.wait(), self._probe_interval)
                return "terminated or a command failed"
            except TimeoutError:
                pass
            async with self._lock:
                if self._conn is not None:
                    probe = self._conn.fetchval(self._sql["fanout_probe"], timeout=self._probe_interval)
                    await self._command("probe", probe)

    async def _pump(self) -> None:
        """Deliver notifications in arrival order, fetching spilled messages on the way."""
        while True:
            item = await self._inbox.get()
            if isinstance(item, Gap):
                self._deliver(None, GAP)
            else:
                self._deliver(item[0], await self._unwrap(item[1]))

    async def _unwrap(self, payload: str) -> str | Gap:
        if payload.startswith(INLINE):
            return payload[1:]
        message: str | None = None
        if payload.startswith(SPILLED) and payload[1:].isdigit() and self._pool is not None:
            try:
                message = await self._pool.fetchval(self._sql["fanout_fetch_spill"], int(payload[1:]))
            except _PG_ERRORS as exc:
                log.warning("fanout: could not fetch spilled message %s (%s)", payload, described(exc))
        if message is None:
            log.warning("fanout: unreadable notification %.40r; sending GAP", payload)
            return GAP
        return message
