"""Prometheus metrics at `/metrics`: what an operator watches, summed over a host's workers.

With `serve --workers N`, the command points PROMETHEUS_MULTIPROC_DIR at an
empty folder under var/ before the workers start: each writes its values
there and `/metrics`, whichever worker answers, sums them all
(prometheus-client's multiprocess mode). A single worker keeps them in memory.
The nginx kit does not expose `/metrics` (docs/deploy.md): scrape the app hosts directly.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

SEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """One worker's instruments; `services.metrics`, created by the lifespan."""

    def __init__(self, multiprocess_dir: Path | None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        registry = self.registry
        self.sockets_open = Gauge("secure_link_websockets_open", "Authenticated WebSockets open.",
                                  registry=registry, multiprocess_mode="livesum")
        self.messages_stored = Counter("secure_link_messages_stored", "Messages committed (acknowledged).",
                                       registry=registry)
        self.messages_delivered = Counter("secure_link_messages_delivered",
                                          "Chat frames handed to sockets, live or replayed.", registry=registry)
        self.send_seconds = Histogram("secure_link_send_seconds", "A new message's insert, to its commit (retries excluded).",
                                      buckets=SEND_BUCKETS, registry=registry)
        self.send_batch_size = Histogram("secure_link_send_batch_size",
                                         "Drafts per group commit of the message writer (writer.py).",
                                         buckets=BATCH_BUCKETS, registry=registry)
        self.send_queue = Gauge("secure_link_send_queue", "Sends waiting for the message writer's next commit.",
                                registry=registry, multiprocess_mode="livesum")
        self.fanout_catch_ups = Counter("secure_link_fanout_catch_ups",
                                        "Sockets that caught up from the database after a fan-out gap.",
                                        registry=registry)
        self.errors = Counter("secure_link_errors", "Errors answered (HTTP and error frames), by code.",
                              ["code"], registry=registry)
        self.registrations_refused = Counter(
            "secure_link_registrations_refused", "Registrations refused past their fields' checks, by reason "
            "(closed, invite_required, invite_invalid, username_taken, rate_limited).", ["reason"], registry=registry)
        self.pool = Gauge("secure_link_db_pool_connections",
                          "Database pool connections in use and idle, and queries waiting for one.",
                          ["state"], registry=registry, multiprocess_mode="livesum")
        self.tasks = Gauge("secure_link_asyncio_tasks", "Tasks alive in the workers' event loops.",
                           registry=registry, multiprocess_mode="livesum")
        self.channels = Gauge("secure_link_fanout_channels", "Fan-out channels the workers listen to.",
                              registry=registry, multiprocess_mode="livesum")

    def observe_worker(self, pool_state: tuple[int, int, int], tasks: int, channels: int, queued: int) -> None:
        """Record what is sampled rather than counted: the pool (`waiting` is the queries in
        flight beyond the connections in use), live tasks and fan-out channels (a leak shows
        here), and the sends queued for the writer."""
        size, idle, queries_in_flight = pool_state
        in_use = size - idle
        self.pool.labels("in_use").set(in_use)
        self.pool.labels("idle").set(idle)
        self.pool.labels("waiting").set(max(0, queries_in_flight - in_use))
        self.tasks.set(tasks)
        self.channels.set(channels)
        self.send_queue.set(queued)

    def exposition(self) -> tuple[bytes, str]:
        """The text format, summed over every worker of this host in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
