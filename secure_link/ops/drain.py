"""Graceful shutdown: in-flight chat messages are acknowledged before sockets close.

uvicorn closes every WebSocket with 1012 as soon as its shutdown starts, before
the app hears of it, so an `ack` being prepared would be lost on the wire. The
lifespan therefore wraps the server's SIGTERM/SIGINT handlers: the signal is
passed on only once no chat send is in flight (or after a bounded wait). The
message itself is safe either way: it is committed before its ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from types import FrameType
from typing import Any, Self
from collections.abc import Callable

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class InFlight:
    """Counts sends between receipt and ack: `with in_flight: ...`."""

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def __enter__(self) -> Self:
        self.count += 1
        self.idle.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()

    async def wait_idle(self, timeout: float) -> None:
        """Until nothing is in flight, or `timeout` seconds at most."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout)


def defer_shutdown_signals(in_flight: InFlight, timeout: float) -> Callable[[], None]:
    """Wrap the running server's signal handlers; returns a function restoring them."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals reach the main thread only; nothing to wrap
    loop = asyncio.get_running_loop()
    draining: set[asyncio.Task[None]] = set()
    originals = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def deferred(signum: int, frame: FrameType | None) -> None:
        original: Any = originals[signal.Signals(signum)]

        async def drain_then_pass_on() -> None:
            await in_flight.wait_idle(timeout)
            original(signum, frame)

        def start() -> None:
            task = loop.create_task(drain_then_pass_on())
            draining.add(task)
            task.add_done_callback(draining.discard)

        loop.call_soon_threadsafe(start)

    def restore() -> None:
        for sig, original in originals.items():
            if callable(original):
                signal.signal(sig, original)

    for sig, original in originals.items():
        if callable(original):
            signal.signal(sig, deferred)
    return restore
