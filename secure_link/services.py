"""What a request handler or socket needs, opened once per process by the lifespan (app.py).

Domain functions never take this bundle whole: each takes what it uses (a pool,
a keyring, the user), or the narrow view its domain declares of it
(`accounts.AccountServices`, `chat.ChatServices`, `files.FileServices`), which
this class meets. Nothing is global, so tests can run several apps in one process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

from secure_link.accounts import PhraseHasher, SessionCache, SessionSockets
from secure_link.chat import MessageWriter
from secure_link.config import Settings
from secure_link.db import Database
from secure_link.encryption import BodyKeys, Keyring
from secure_link.fanout import Fanout
from secure_link.ops import InFlight, Metrics
from secure_link.ratelimit import KeyedBuckets, KeyedLocks, SlidingWindow


@dataclasses.dataclass
class Services:
    """The process's shared resources: settings, pool, fan-out, message writer, master key, limits, hashing."""

    settings: Settings
    db: Database
    fanout: Fanout
    keyring: Keyring
    bodies: BodyKeys  # conversation keys this worker has unwrapped
    phrases: PhraseHasher  # bcrypt in a bounded line
    register_limiter: SlidingWindow
    rest_send_limiter: KeyedBuckets
    rest_change_limiter: KeyedBuckets  # timer PUT and message DELETE, per user: a budget apart from sends
    image_slots: asyncio.Semaphore
    upload_limiter: SlidingWindow
    metrics: Metrics
    sessions: SessionCache  # validated sessions, trusted a few seconds: REST without a query per request
    in_flight: InFlight = dataclasses.field(default_factory=InFlight)
    image_locks: KeyedLocks = dataclasses.field(default_factory=KeyedLocks)  # one decode per user
    worker_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    # this worker's sockets by session: housekeeping closes those of ended sessions
    session_sockets: SessionSockets = dataclasses.field(default_factory=SessionSockets)
    writer: MessageWriter = dataclasses.field(init=False)  # group commit of sends: started by the lifespan

    def sample_metrics(self) -> None:
        """Record what is sampled rather than counted (pool, tasks, channels, send queue): at each scrape and chore round."""
        self.metrics.observe_worker(self.db.pool_state(), len(asyncio.all_tasks()), len(self.fanout.local_channels()),
                                    self.writer.queued)
