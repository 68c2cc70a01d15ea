"""The periodic chores of a worker: heartbeat, dead-worker sweep, pruning."""

from __future__ import annotations

import asyncio
import logging

from . import chat, media, presence
from .services import Services

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
    """Heartbeat this worker, sweep dead ones, drop expired sessions, old failures and stale uploads."""
    await services.db.execute("insert_worker", services.worker_id)
    await presence.sweep_dead_workers(services)
    for row in await services.db.fetch("delete_expired_sessions"):
        await chat.close_session_sockets(services, row["id"])
    await services.db.execute("delete_old_login_failures")
    await media.collect_garbage(services.db, services.settings)
