"""Fan-out of chat events to every worker's sockets (replaces encode/broadcaster).

Same shape as broadcaster (`publish(channel, message)`, `subscribe(channel)`),
without the failures measured in it: a subscription is LISTENed/SUBSCRIBEd
before `__aenter__` returns (its Redis backend lost the first messages), queues
are bounded (a slow socket is dropped with `SubscriptionOverflow`, not buffered
forever), and after any reconnect every subscriber receives `GAP` instead of
hanging silently, so its client re-syncs from the database. Transports are
chosen by URL scheme (`backend_for`), each in a module of backends/; what the
messages are is events.py's, how they are sealed in transit seal.py's.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from types import TracebackType
from typing import NamedTuple, Protocol, Self
from collections.abc import Callable

from secure_link.encryption import DecryptionError
from secure_link.fanout.backends.base import GAP, Backend, Deliver, Gap
from secure_link.fanout.seal import ConversationKey, KeyNotHeld

log = logging.getLogger("secure_link.fanout")
ORIGIN_END = "|"  # every payload on the wire starts with its publisher's origin tag and this


class Seal(Protocol):
    """Seals payloads for the transport and opens them (seal.EnvelopeSeal).

    `open_now` raises KeyNotHeld when a key must be loaded first, which `open`
    does; both answer None for a payload whose key is gone (nothing to deliver).
    """

    def seal(self, text: str) -> str: ...
    def seal_conversation(self, conversation: ConversationKey, text: str) -> str: ...
    def open_now(self, payload: str) -> str | None: ...
    async def open(self, payload: str) -> str | None: ...


class Outgoing(NamedTuple):
    """One message of a batch: its channels, its text, and the conversation whose key seals it
    in transit (a chat event); None: the process's own key seals it."""

    channels: list[str]
    message: str
    conversation: ConversationKey | None = None


class SubscriptionOverflow(Exception):
    """The subscriber fell `queue_size` items behind and was dropped: close the socket or re-sync."""


class SubscriptionClosed(Exception):
    """`get()` after `Fanout.disconnect()` (shutdown); `async for` simply ends instead."""


class Subscription:
    """One bounded queue fed by one or more channels; use `async with`, then `get()` or `async for`."""

    def __init__(self, fanout: Fanout, channels: tuple[str, ...], queue_size: int) -> None:
        self.channels = channels
        self._fanout = fanout
        self._queue_size = queue_size
        # a forwarding subscription (a socket's) never needs these: ~1.2 KB each, made on first use
        self._queued: deque[str | Gap] | None = None
        self._woken: asyncio.Event | None = None
        self._ended: type[Exception] | None = None
        self._entered = False
        self._forward: Callable[[str | Gap | None], None] | None = None

    async def __aenter__(self) -> Self:
        """Return only once every channel is subscribed: a later publish is received."""
        if self._entered:
            raise RuntimeError("a Subscription can be entered once")
        self._entered = True
        await self._fanout._attach(self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """Unsubscribe; the last local subscriber of a channel stops listening to it."""
        await self._fanout._detach(self)

    async def get(self) -> str | Gap:
        """The next message or `GAP`; raises once the queue overflowed or the Fanout closed."""
        while True:
            if self._ended is SubscriptionOverflow:
                raise SubscriptionOverflow(f"more than {self._queue_size} items queued on {self.channels}")
            if self._ended is not None:
                raise self._ended("the Fanout was disconnected")
            if self._items:
                return self._items.popleft()
            self._wakeup.clear()
            await self._wakeup.wait()

    @property
    def _items(self) -> deque[str | Gap]:
        if self._queued is None:
            self._queued = deque()
        return self._queued

    @property
    def _wakeup(self) -> asyncio.Event:
        if self._woken is None:
            self._woken = asyncio.Event()
        return self._woken

    def forward(self, receive: Callable[[str | Gap | None], None]) -> None:
        """From now on hand each item to `receive` as it arrives (those queued first), instead of queueing.

        For a consumer with its own buffer (a socket's outbox): no task has to
        wait on `get()` while nothing comes. `receive(None)` says the Fanout closed.
        """
        self._forward = receive
        while self._queued:
            receive(self._queued.popleft())
        if self._ended is SubscriptionClosed:
            receive(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> str | Gap:
        """Like `get()`, but a shutdown ends the loop instead of raising."""
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    def _put(self, item: str | Gap) -> None:
        """Called by Fanout; never blocks, so a slow consumer cannot stall publishers or peers."""
        if self._ended is not None:
            return
        if self._forward is not None:
            self._forward(item)
            return
        if len(self._items) >= self._queue_size:
            self._end(SubscriptionOverflow)
            return
        self._items.append(item)
        self._wakeup.set()

    def _end(self, reason: type[Exception]) -> None:
        if self._ended is None:
            self._ended = reason
            if self._queued is not None:
                self._queued.clear()
            if self._woken is not None:
                self._woken.set()
            if self._forward is not None:
                self._forward(None)


class Fanout:
    """Publish to channels and subscribe to them, across workers when the URL says so."""

    def __init__(self, url: str, *, queue_size: int = 256, probe_interval: float = 5.0,
                 seal: Seal | None = None) -> None:
        """`seal` seals every payload the transport carries (seal.py); memory:// needs none."""
        if queue_size < 1 or probe_interval <= 0:
            raise ValueError("queue_size and probe_interval must be positive")
        self._origin = secrets.token_hex(6)  # tags what this process delivered itself (publish_batch)
        # the backend drops what comes back with that tag as it arrives, before its inbox
        self._backend = backend_for(url, self._receive, probe_interval, self._origin + ORIGIN_END)
        self._seal = None if self._backend.name == "memory" else seal
        self._queue_size = queue_size
        self._subscribers: dict[str, set[Subscription]] = {}
        self._lock = asyncio.Lock()  # first-subscribe/last-unsubscribe decisions, one at a time
        # received payloads waiting for a key to be loaded, and those behind them: order is kept
        self._backlog: deque[tuple[str | None, str | Gap]] = deque()
        self._opener: asyncio.Task[None] | None = None

    @property
    def backend_name(self) -> str:
        """'memory', 'postgres' or 'redis', for logs and the health endpoint."""
        return self._backend.name

    async def connect(self) -> None:
        """Open the transport; raises if it is unreachable, so start-up fails loudly."""
        await self._backend.connect()

    async def disconnect(self) -> None:
        """End every open subscription, stop background tasks, close every connection."""
        for subscription in self._all_subscriptions():
            subscription._end(SubscriptionClosed)
        self._subscribers.clear()
        if self._opener is not None:
            self._opener.cancel()
            await asyncio.gather(self._opener, return_exceptions=True)
        self._backlog.clear()
        await self._backend.disconnect()

    async def publish(self, channel: str, message: str) -> None:
        """Send an already-serialised message; every local subscriber gets the same str."""
        await self.publish_many([channel], message)

    async def publish_many(self, channels: list[str], message: str) -> None:
        """The same message to several channels in one round trip (e.g. both parties of a chat)."""
        if not isinstance(message, str):
            raise TypeError(f"publish() takes a str (serialise once), not {type(message).__name__}")
        await self._backend.publish(list(dict.fromkeys(channels)), self._wire("", message))

    async def publish_batch(self, items: list[Outgoing]) -> None:
        """Several messages, each to its channels: here at once, elsewhere in one round trip.

        This process's subscribers get each message now, in the order given,
        without waiting for it to come back through the transport; when it does
        come back, its origin tag says it was delivered already, so none is
        received twice. Other processes receive the batch in the same order.
        """
        tagged = []
        for channels, message, conversation in items:
            unique = list(dict.fromkeys(channels))
            for channel in unique:
                self._deliver(channel, message)
            tagged.append((unique, self._wire(self._origin, message, conversation)))
        await self._backend.publish_batch(tagged)

    async def forget(self, channels: list[str]) -> None:
        """Delete any copy the transport still keeps of messages published to these channels.

        Logout's clearing calls this: nothing a conversation held may outlive it,
        and PostgreSQL parks messages too large for NOTIFY in a table.
        """
        await self._backend.forget(list(dict.fromkeys(channels)))

    async def prune(self, older_than_s: float) -> None:
        """Delete kept copies older than that; receivers have read them (housekeeping calls this)."""
        await self._backend.prune(older_than_s)

    def local_channels(self) -> list[str]:
        """The channels that some subscriber in this process listens to."""
        return list(self._subscribers)

    def deliver_locally(self, channel: str, message: str) -> None:
        """Give a message to this process's subscribers of a channel only, without the transport."""
        self._deliver(channel, message)

    def subscribe(self, channel: str) -> Subscription:
        """A subscription to one channel (an async context manager)."""
        return self.subscribe_many([channel])

    def subscribe_many(self, channels: list[str]) -> Subscription:
        """One queue fed by several channels, e.g. a socket's user and session channels."""
        unique = tuple(dict.fromkeys(channels))
        if not unique:
            raise ValueError("subscribe to at least one channel")
        return Subscription(self, unique, self._queue_size)

    async def _attach(self, subscription: Subscription) -> None:
        async with self._lock:
            added: list[str] = []
            try:
                for channel in subscription.channels:
                    subscribers = self._subscribers.setdefault(channel, set())
                    subscribers.add(subscription)
                    added.append(channel)
                    if len(subscribers) == 1:
                        await self._backend.listen(channel)
            except BaseException:  # cancelled mid-LISTEN: leave the counts as they were
                await self._remove(subscription, added)
                raise

    async def _detach(self, subscription: Subscription) -> None:
        async with self._lock:
            await self._remove(subscription, list(subscription.channels))

    async def _remove(self, subscription: Subscription, channels: list[str]) -> None:
        for channel in channels:
            subscribers = self._subscribers.get(channel)
            if subscribers is None or subscription not in subscribers:
                continue  # already gone, e.g. after disconnect()
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[channel]
                await self._backend.unlisten(channel)

    def _receive(self, channel: str | None, item: str | Gap) -> None:
        """Called by the backend: strip the origin tag, skip what this process delivered already
        (the backends drop it on arrival; a parked one is known only once fetched), open the rest.
        One whose key must be loaded first waits in the backlog, and so does everything received
        after it, so subscribers get all in the order it came."""
        if not isinstance(item, Gap):
            origin, _, item = item.partition(ORIGIN_END)
            if origin == self._origin:
                return  # delivered here already, without being opened
        if self._backlog or not self._open_and_deliver(channel, item):
            self._backlog.append((channel, item))
            if self._opener is None:
                self._opener = asyncio.create_task(self._open_backlog(), name="fanout-opener")

    def _open_and_deliver(self, channel: str | None, item: str | Gap) -> bool:
        """Deliver the item, opened if sealed; False when a key must be loaded first."""
        if isinstance(item, Gap) or self._seal is None:
            self._deliver(channel, item)
            return True
        try:
            self._deliver_opened(channel, self._seal.open_now(item))
        except KeyNotHeld:
            return False
        except DecryptionError as exc:
            self._undeliverable(channel, exc)
        return True

    async def _open_backlog(self) -> None:
        """Open the backlog in order, loading keys as needed (a database read each)."""
        try:
            while self._backlog:
                channel, item = self._backlog[0]
                if not self._open_and_deliver(channel, item):
                    assert self._seal is not None and isinstance(item, str)
                    try:
                        self._deliver_opened(channel, await self._seal.open(item))
                    except Exception as exc:  # noqa: BLE001 - the database failed, or no key opens it: a loss
                        self._undeliverable(channel, exc)
                self._backlog.popleft()
        finally:
            self._opener = None

    def _deliver_opened(self, channel: str | None, message: str | None) -> None:
        if message is not None:  # None: its conversation was cleared since, the message with it
            self._deliver(channel, message)

    def _undeliverable(self, channel: str | None, exc: Exception) -> None:
        """Not ours, a key this process cannot have, or the database failing: its subscribers catch up."""
        log.warning("fan-out payload on %s could not be opened (%r); its subscribers catch up", channel, exc)
        self._deliver(channel, GAP)

    def _wire(self, origin: str, message: str, conversation: ConversationKey | None = None) -> str:
        """The origin tag in clear (a random id of this process: a receiver skips its own
        without opening them), then the message, sealed when a seal is set: under its
        conversation's key when it has one (seal.py)."""
        if self._seal is None:
            return origin + ORIGIN_END + message
        if conversation is not None:
            return origin + ORIGIN_END + self._seal.seal_conversation(conversation, message)
        return origin + ORIGIN_END + self._seal.seal(message)

    def _deliver(self, channel: str | None, item: str | Gap) -> None:
        """To this process's subscribers; `None` addresses every one of them (a GAP)."""
        targets = self._all_subscriptions() if channel is None else self._subscribers.get(channel, ())
        for subscription in targets:
            subscription._put(item)

    def _all_subscriptions(self) -> set[Subscription]:
        return set().union(*self._subscribers.values())


def backend_for(url: str, deliver: Deliver, probe_interval: float, own: str = "") -> Backend:
    """The transport the URL's scheme names, its module imported only now: a deployment
    without Redis never loads redis-py (as encode/broadcaster loads its backends).

    `own` starts every payload this process publishes in a batch (its origin tag): coming
    back, such a payload is dropped on arrival, never queued or handed on ("" drops nothing).
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from secure_link.fanout.backends.memory import MemoryBackend

        return MemoryBackend(deliver)
    if scheme in ("postgres", "postgresql"):
        from secure_link.fanout.backends.postgres import PostgresBackend

        return PostgresBackend(url, deliver, probe_interval, own)
    if scheme in ("redis", "rediss"):
        from secure_link.fanout.backends.redis import RedisBackend

        return RedisBackend(url, deliver, probe_interval, own)
    raise ValueError(f"unsupported fan-out URL scheme {scheme!r}: use memory://, postgres:// or redis://")
