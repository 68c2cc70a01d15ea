"""What every fan-out transport is, and what they share: GAP, backoff, stopping a task.

A backend only moves strings between workers. It calls `deliver(channel, message)`
for every message it receives and `deliver(None, GAP)` after a reconnect, when
messages may have been lost; `Fanout` (core.py) owns the subscribers and their
bounded queues. The interface alone lives here, as in encode/broadcaster's
`backends/base.py`; each transport is a module of its own, imported only when
a URL names it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol
from collections.abc import Awaitable, Callable

log = logging.getLogger("secure_link.fanout")

LISTEN_NAME = "secure_link_fanout_listen"  # application_name / client name of the listening connection
COMMAND_TIMEOUT = 5.0  # connecting, and any one command: a silent server must not hang us


class Gap:
    """Marker yielded to subscribers when messages may have been lost: re-sync from the database."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "GAP"


GAP = Gap()
Deliver = Callable[[str | None, str | Gap], None]


class Backend(Protocol):
    """What `Fanout` needs from a transport; `listen` returns once the channel is subscribed."""

    name: str

    async def connect(self) -> None: ...
    async def disconnect(self) -> None: ...
    async def listen(self, channel: str) -> None: ...
    async def unlisten(self, channel: str) -> None: ...
    async def publish(self, channels: list[str], message: str) -> None: ...
    async def publish_batch(self, items: list[tuple[list[str], str]]) -> None: ...
    async def forget(self, channels: list[str]) -> None: ...
    async def prune(self, older_than_s: float) -> None: ...


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel and wait, without swallowing a cancellation aimed at the caller.

    Cancels again while the task lives: a single cancel can be lost (Python 3.11's
    `wait_for` drops it when the inner future finishes at the same moment, and a
    driver may turn it into a connection error), and then disconnect() would hang.
    """
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if task is not None and not task.cancelled():
        task.exception()  # mark it retrieved: whoever watched the task has logged why it ended


async def retry_with_backoff(attempt: Callable[[], Awaitable[None]], what: str,
                             errors: tuple[type[BaseException], ...]) -> int:
    """Call `attempt` until it succeeds, 0.1 s doubling to 5 s apart; returns the failures."""
    delay, failures = 0.1, 0
    while True:
        try:
            await attempt()
            return failures
        except errors as exc:
            failures += 1
            log.warning("fanout: %s reconnect failed (%s); retrying in %.1f s", what, described(exc), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def described(exc: BaseException | None) -> str:
    """`Type: message`, for a log line: redis-py 8's repr of its errors shows only their type."""
    return f"{type(exc).__name__}: {exc}"
