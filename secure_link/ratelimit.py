"""In-process limits: a sliding-window log, token buckets, and bounded work slots.

Registration and send limits may be kept per worker (as Mattermost and Synapse
do); failed logins guard accounts, so they live in PostgreSQL (accounts/throttle.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator


class SlidingWindow:
    """At most `limit` events per key in any `window` seconds."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._events: dict[str, collections.deque[float]] = {}

    def hit(self, key: str) -> float:
        """Record an event; return 0 if allowed, else seconds until one would be."""
        if self.limit <= 0:
            return 0.0
        now = self.clock()
        events = self._events.setdefault(key, collections.deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return events[0] + self.window - now
        events.append(now)
        self._forget_idle(now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        """Drop keys whose events all expired, so memory follows active clients only."""
        if len(self._events) < 10_000:
            return
        for key in [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]:
            del self._events[key]


class TokenBucket:
    """`rate` events per second with bursts of `burst`; rate 0 means unlimited."""

    __slots__ = ("burst", "clock", "rate", "tokens", "updated")  # two per socket: ~100 bytes each, not ~400

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.updated = clock()

    def take(self) -> float:
        """Spend one token; return 0 if allowed, else seconds until a token is due."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class KeyedBuckets:
    """A token bucket per key (e.g. per user for REST sends), created on first use."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[object, TokenBucket] = {}

    def take(self, key: object) -> float:
        """Spend one of this key's tokens; 0 if allowed, else seconds to wait."""
        if self.rate <= 0:
            return 0.0
        if len(self._buckets) >= 10_000:
            self._forget_full()
        bucket = self._buckets.setdefault(key, TokenBucket(self.rate, self.burst, self.clock))
        return bucket.take()

    def _forget_full(self) -> None:
        """Drop buckets that have refilled: they behave exactly like new ones."""
        now = self.clock()
        for key in [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * b.rate >= b.burst]:
            del self._buckets[key]


class QueueFull(Exception):
    """`BoundedSlots.hold()` turned the caller away: every slot and every place in line is taken."""


class BoundedSlots:
    """At most `concurrency` holders at once and `waiting` more in line; the rest are turned away.

    A plain semaphore lets its line grow without bound: in a flood of logins a
    real user's waited 20 s behind bcrypt. A bounded line answers at once instead.
    """

    def __init__(self, concurrency: int, waiting: int) -> None:
        self._semaphore = asyncio.Semaphore(max(1, concurrency))
        self._capacity = max(1, concurrency) + max(0, waiting)
        self._inside = 0

    @contextlib.contextmanager
    def place(self) -> Iterator[None]:
        """A place in line for the whole piece of work; `QueueFull` at once when there is none."""
        if self._inside >= self._capacity:
            raise QueueFull
        self._inside += 1
        try:
            yield
        finally:
            self._inside -= 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for one of the `concurrency` slots (taken from within a place in line)."""
        async with self._semaphore:
            yield


class KeyedLocks:
    """One holder per key at a time (e.g. one image decode per user); unused keys are forgotten."""

    def __init__(self) -> None:
        self._locks: dict[object, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: object) -> AsyncIterator[None]:
        """Wait until no one else holds `key`, then hold it."""
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]
