"""The Redis transport of the fan-out (`redis://` URLs): a supervising loop around redis-py's
asyncio pub/sub. Imported only when a URL names Redis, so other deployments never load its client.

Subscriptions are confirmed before `listen` returns, a dropped connection is
noticed (errors, health checks), re-subscribed with backoff, and followed by
GAP to every local subscriber, as in the PostgreSQL backend beside it.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from secure_link.fanout.backends.base import (COMMAND_TIMEOUT, GAP, LISTEN_NAME, Deliver, described,
                                              retry_with_backoff, stop_task)

log = logging.getLogger("secure_link.fanout")
_REDIS_ERRORS = (OSError, TimeoutError, RedisError)


class RedisBackend:
    """redis-py pub/sub on its own client, supervised: redis-py alone re-subscribes silently.

    SUBSCRIBE is confirmed (the reader sees the server's 'subscribe' reply)
    before `listen` returns; broadcaster returns before that and loses the
    first messages. A PING every `probe_interval` catches a silent connection.
    """

    name = "redis"

    def __init__(self, url: str, deliver: Deliver, probe_interval: float, own: str = "") -> None:
        """`own`: the tag this process's batches start with (core.backend_for); "" drops nothing."""
        self._url, self._deliver, self._probe_interval = url, deliver, probe_interval
        # Redis sends a subscriber what its own process PUBLISHed too: dropped before it is decoded
        self._echo = own.encode("utf-8") if own else None
        self.received = 0  # messages handed on
        self.echoes = 0  # this process's own, dropped on arrival
        self._channels: set[str] = set()
        self._lock = asyncio.Lock()  # one writer at a time on the pub/sub connection
        self._confirmations: dict[str, list[asyncio.Future[bool]]] = {}
        self._publisher: redis.Redis | None = None
        self._subscriber: redis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._last_seen = 0.0

    async def connect(self) -> None:
        """Open the pub/sub connection now, so a bad URL fails at start-up."""
        self._publisher = redis.Redis.from_pool(redis.BlockingConnectionPool.from_url(
            self._url, max_connections=8, timeout=COMMAND_TIMEOUT, socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=COMMAND_TIMEOUT, retry=Retry(ExponentialBackoff(cap=1.0), 2)))
        # redis-py 8's default 5 s socket timeouts bound its connecting and writing (setup.cfg
        # requires 8); its blocking reads (get_message(timeout=None)) wait as long as they must
        self._subscriber = redis.Redis.from_url(self._url, client_name=LISTEN_NAME,
                                                retry=Retry(NoBackoff(), 0))
        try:
            await self._open()
        except BaseException:
            await self._close_clients()
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="fanout-redis-supervisor")

    async def disconnect(self) -> None:
        """Stop the supervisor and reader, close both clients."""
        await stop_task(self._supervisor)
        self._supervisor = None
        async with self._lock:
            await self._close()
            self._channels.clear()
        await self._close_clients()

    async def listen(self, channel: str) -> None:
        """SUBSCRIBE and wait for the confirmation; on failure the reconnect sends GAP."""
        async with self._lock:
            self._channels.add(channel)
            if self._pubsub is not None and not await self._subscribe(self._pubsub, [channel]):
                self._kill_reader()

    async def unlisten(self, channel: str) -> None:
        """UNSUBSCRIBE without waiting: a late message for it finds no subscriber."""
        async with self._lock:
            self._channels.discard(channel)
            if self._pubsub is not None:
                try:
                    await asyncio.wait_for(self._pubsub.unsubscribe(channel), COMMAND_TIMEOUT)
                except _REDIS_ERRORS:
                    self._kill_reader()

    async def publish(self, channels: list[str], message: str) -> None:
        """PUBLISH to every channel in one pipelined round trip, through a separate client."""
        assert self._publisher is not None, "connect() first"
        async with self._publisher.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.publish(channel, message)
            await pipe.execute()

    async def publish_batch(self, items: list[tuple[list[str], str]]) -> None:
        """Every message to its channels, in order, in one pipelined round trip."""
        assert self._publisher is not None, "connect() first"
        async with self._publisher.pipeline(transaction=False) as pipe:
            for channels, message in items:
                for channel in channels:
                    pipe.publish(channel, message)
            await pipe.execute()

    async def forget(self, channels: list[str]) -> None:
        """Redis keeps nothing it published: there is no parked copy to delete."""

    async def prune(self, older_than_s: float) -> None:
        """See `forget`."""

    async def _open(self) -> None:
        """A fresh pub/sub connection with a running reader, subscribed to every channel."""
        assert self._subscriber is not None
        async with self._lock:
            pubsub = self._subscriber.pubsub()
            self._pubsub = pubsub
            try:
                await pubsub.connect()  # type: ignore[no-untyped-call]
                self._last_seen = asyncio.get_running_loop().time()
                self._reader = asyncio.create_task(self._read(pubsub), name="fanout-redis-reader")
                if self._channels and not await self._subscribe(pubsub, sorted(self._channels)):
                    raise RedisConnectionError("SUBSCRIBE was not confirmed")
            except BaseException:
                await self._close()
                raise

    async def _close(self) -> None:
        await stop_task(self._reader)
        self._reader = None
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except _REDIS_ERRORS:
                pass  # the connection is being thrown away

    async def _close_clients(self) -> None:
        for client in (self._publisher, self._subscriber):
            if client is not None:
                await client.aclose()
        self._publisher = self._subscriber = None

    def _kill_reader(self) -> None:
        """Hand a broken connection to the supervisor, which reconnects and sends GAP."""
        if self._reader is not None:
            self._reader.cancel()

    async def _subscribe(self, pubsub: PubSub, channels: list[str]) -> bool:
        """SUBSCRIBE and wait until the reader has seen every confirmation."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in channels]
        for channel, future in zip(channels, futures):
            self._confirmations.setdefault(channel, []).append(future)
        try:
            await asyncio.wait_for(pubsub.subscribe(*channels), COMMAND_TIMEOUT)
            return all(await asyncio.wait_for(asyncio.gather(*futures), COMMAND_TIMEOUT))
        except _REDIS_ERRORS as exc:
            log.warning("fanout: redis SUBSCRIBE failed (%s)", described(exc))
            return False
        finally:
            for channel, future in zip(channels, futures):
                waiting = self._confirmations[channel]
                waiting.remove(future)
                if not waiting:
                    del self._confirmations[channel]

    async def _read(self, pubsub: PubSub) -> None:
        """Read until the connection fails; every reply, PONG included, proves it alive."""
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                self._last_seen = asyncio.get_running_loop().time()
                if message is not None:
                    self._dispatch(message)
        finally:
            for waiting in self._confirmations.values():
                for future in waiting:
                    if not future.done():
                        future.set_result(False)

    def _dispatch(self, message: dict[str, object]) -> None:
        kind, channel, data = message["type"], message["channel"], message["data"]
        if not isinstance(channel, bytes):
            return  # a PONG
        name = channel.decode("utf-8", "replace")
        if kind == "message" and isinstance(data, bytes):
            if self._echo is not None and data.startswith(self._echo):
                self.echoes += 1  # delivered here when it was published (Fanout.publish_batch)
                return
            self.received += 1
            self._deliver(name, data.decode("utf-8", "replace"))
        elif kind == "subscribe":
            for future in self._confirmations.get(name, ()):
                if not future.done():
                    future.set_result(True)

    async def _supervise(self) -> None:
        """Forever: wait for the connection to fail, reconnect, re-subscribe, then signal GAP."""
        while True:
            reason = await self._watch()
            log.warning("fanout: redis pub/sub connection lost (%s); reconnecting", reason)
            async with self._lock:
                await self._close()
            failures = await retry_with_backoff(self._open, "redis pub/sub", _REDIS_ERRORS)
            log.warning("fanout: redis pub/sub restored after %d failed attempt(s); %d channel(s)",
                        failures, len(self._channels))
            self._deliver(None, GAP)

    async def _watch(self) -> str:
        """Return why the pub/sub connection is no longer usable."""
        loop = asyncio.get_running_loop()
        while True:
            assert self._reader is not None and self._pubsub is not None
            done, _ = await asyncio.wait({self._reader}, timeout=self._probe_interval)
            if done:
                reader = done.pop()
                return "reader stopped" if reader.cancelled() else described(reader.exception())
            if loop.time() - self._last_seen > 2 * self._probe_interval:
                return "no reply to PING"
            try:
                async with self._lock:
                    await asyncio.wait_for(self._pubsub.ping(), self._probe_interval)
            except _REDIS_ERRORS as exc:
                return f"PING failed: {described(exc)}"
