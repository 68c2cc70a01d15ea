"""The `memory://` transport: one process only, so publishing is delivering."""

from __future__ import annotations

from secure_link.fanout.backends.base import Deliver


class MemoryBackend:
    """One process only: publish hands the message straight to local subscribers."""

    name = "memory"

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def connect(self) -> None:
        """Nothing to open."""

    async def disconnect(self) -> None:
        """Nothing to close."""

    async def listen(self, channel: str) -> None:
        """Every local channel is always 'subscribed'."""

    async def unlisten(self, channel: str) -> None:
        """See `listen`."""

    async def publish(self, channels: list[str], message: str) -> None:
        """Deliver synchronously: there is no wire to cross."""
        for channel in channels:
            self._deliver(channel, message)

    async def publish_batch(self, items: list[tuple[list[str], str]]) -> None:
        """Nothing to do: `Fanout.publish_batch` has delivered each message here, the one process."""

    async def forget(self, channels: list[str]) -> None:
        """Nothing is kept once delivered."""

    async def prune(self, older_than_s: float) -> None:
        """See `forget`."""
