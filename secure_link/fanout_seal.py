"""Fan-out payloads sealed in transit and at rest in the transport.

PostgreSQL keeps NOTIFY payloads in its notify queue (files under the data
directory's `pg_notify/`) and parks large ones in `fanout_spill`; Redis holds
them in memory. A payload holds a whole chat frame, so it is sealed before it
leaves the process: each process draws a random key, wrapped by the master
key, and every payload carries that wrapped key, so any worker holding the
master key (during a rotation, either one) opens it. Receivers cache the
keys they have unwrapped. Random nonces stay far from GCM's limits: one key
per process start.
"""

from __future__ import annotations

import base64

from . import crypto
from .keyring import Keyring

CONTEXT = b"fanout"
CACHE_LIMIT = 1_000  # one key per publishing process seen since the last clear


class EnvelopeSeal:
    """Seals what this process publishes; opens what any process of the deployment published."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        key = crypto.new_key()
        wrapped = keyring.wrap(key, CONTEXT)
        self._key = key
        self._prefix = bytes([len(wrapped)]) + wrapped
        self._opened: dict[bytes, bytes] = {wrapped: key}

    def seal(self, text: str) -> str:
        """ASCII, so it fits in a NOTIFY payload and a Redis message alike."""
        return base64.b64encode(self._prefix + crypto.seal(self._key, text.encode("utf-8"), CONTEXT)).decode("ascii")

    def open(self, payload: str) -> str:
        """The text; DecryptionError when it was not sealed by a key of this deployment."""
        try:
            raw = base64.b64decode(payload, validate=True)
        except ValueError:
            raise crypto.DecryptionError("not a sealed fan-out payload") from None
        wrapped = raw[1:1 + raw[0]] if raw else b""
        key = self._opened.get(wrapped)
        if key is None:
            key = self._keyring.unwrap(wrapped, CONTEXT)
            if len(self._opened) >= CACHE_LIMIT:
                self._opened.clear()
            self._opened[wrapped] = key
        return crypto.open(key, raw[1 + raw[0]:], CONTEXT).decode("utf-8")
