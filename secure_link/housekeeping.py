"""The periodic chores of a worker: heartbeat, dead-worker sweep, pruning."""

from __future__ import annotations

import asyncio
import logging

from . import chat, media, presence
from .services import Services

SPILL_TTL_S = 10.0  # fan-out payloads parked in PostgreSQL are read within milliseconds
log = logging.getLogger("secure_link.housekeeping")


async def run(services: Services, interval: float) -> None:
    """Forever: one round every `interval` seconds; a failed round is logged, not fatal."""
    while True:
        try:
            await one_round(services)
        except Exception:  # a database blip must not end housekeeping for the process
            log.exception("housekeeping round failed; retrying in %.0f s", interval)
        await asyncio.sleep(interval)


async def one_round(services: Services) -> None:
    """Heartbeat this worker, sweep dead ones, drop expired sessions, old failures, parked
    fan-out payloads and stale uploads."""
    await services.db.execute("insert_worker", services.worker_id)
    services.sample_metrics()
    await presence.sweep_dead_workers(services)
    await services.db.execute("delete_expired_sessions")
    await chat.close_ended_sessions(services)
    await services.db.execute("delete_old_login_failures")
    await services.fanout.prune(SPILL_TTL_S)
    await media.collect_garbage(services.db, services.settings)
