"""The periodic chores of a worker: heartbeat, dead-worker sweep, pruning."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from secure_link.accounts import close_ended_sessions, presence
from secure_link.chat import CLIENT_ID_MEMORY_DAYS
from secure_link.encryption import epochs, master_key_path
from secure_link.files import collect_garbage
from secure_link.services import Services

SPILL_TTL_S = 10.0  # fan-out payloads parked in PostgreSQL are read within milliseconds
log = logging.getLogger("secure_link.housekeeping")


async def run(services: Services, interval: float) -> None:
    """Forever: one round every `interval` seconds."""
    while True:
        await one_round(services)
        await asyncio.sleep(interval)


async def one_round(services: Services) -> None:
    """Heartbeat this worker, sweep dead ones, close sockets of ended sessions, prune old
    failures, parked fan-out payloads and stale uploads.

    Each chore fails alone (logged): one that breaks must not stop the others,
    some of which keep promises (parked payloads expire, revoked sockets close).
    """
    db, fanout, settings = services.db, services.fanout, services.settings
    chores: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("heartbeat", lambda: db.execute("insert_worker", services.worker_id)),
        ("master key steps", lambda: epochs.follow_on_this_host(db, services.keyring, master_key_path(settings))),
        ("dead workers", lambda: presence.sweep_dead_workers(db, fanout)),
        ("expired sessions", lambda: db.execute("delete_expired_sessions")),
        ("ended sessions' sockets", lambda: close_ended_sessions(db, fanout, services.session_sockets)),
        ("old login failures", lambda: db.execute("delete_old_login_failures")),
        ("old client_ids", lambda: db.execute("prune_used_client_ids", CLIENT_ID_MEMORY_DAYS)),
        ("parked fan-out payloads", lambda: fanout.prune(SPILL_TTL_S)),
        ("stale uploads", lambda: collect_garbage(db, settings)),
    ]
    for name, chore in chores:
        try:
            await chore()
        except Exception:  # a database blip must not end housekeeping for the process
            log.exception("housekeeping: %s failed; retrying next round", name)
    try:
        services.sample_metrics()
    except Exception:
        log.exception("housekeeping: sampling metrics failed")
