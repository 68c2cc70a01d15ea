"""What a request handler or socket needs, opened once per process by the lifespan.

Domain functions take `services` (and the acting `user`) as arguments; nothing
is global, so tests can run several apps in one process.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import uuid

from secure_link.config import Settings
from secure_link.db import Database
from secure_link.ops.drain import InFlight
from secure_link.fanout.core import Fanout
from secure_link.encryption.keyring import Keyring
from secure_link.ops.metrics import Metrics
from secure_link.ratelimit import BoundedSlots, KeyedBuckets, KeyedLocks, SlidingWindow
from secure_link.encryption.bodies import BodyKeys
from secure_link.chat.writer import MessageWriter


@dataclasses.dataclass
class Services:
    """The process's shared resources: settings, pool, fan-out, message writer, master key, limits, hashing slots."""

    settings: Settings
    db: Database
    fanout: Fanout
    keyring: Keyring
    bodies: BodyKeys  # conversation keys this worker has unwrapped
    register_limiter: SlidingWindow
    rest_send_limiter: KeyedBuckets
    rest_change_limiter: KeyedBuckets  # timer PUT and message DELETE, per user: a budget apart from sends
    hash_slots: BoundedSlots
    image_slots: asyncio.Semaphore
    upload_limiter: SlidingWindow
    dummy_hash: bytes
    metrics: Metrics
    in_flight: InFlight = dataclasses.field(default_factory=InFlight)
    image_locks: KeyedLocks = dataclasses.field(default_factory=KeyedLocks)  # one decode per user
    worker_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    # (user id, session id) -> this worker's sockets of it: housekeeping closes those of ended sessions
    sessions_here: collections.Counter[tuple[int, int]] = dataclasses.field(default_factory=collections.Counter)
    writer: MessageWriter = dataclasses.field(init=False)  # group commit of sends: started by the lifespan

    def sample_metrics(self) -> None:
        """Record what is sampled rather than counted (pool, tasks, channels, send queue): at each scrape and chore round."""
        self.metrics.observe_worker(self.db.pool_state(), len(asyncio.all_tasks()), len(self.fanout.local_channels()),
                                    self.writer.queued)
