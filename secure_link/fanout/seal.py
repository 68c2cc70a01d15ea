"""Fan-out payloads sealed in transit and at rest in the transport.

PostgreSQL keeps NOTIFY payloads in its notify queue (files under the data
directory's `pg_notify/`), parks large ones in `fanout_spill`, and both reach
its WAL; Redis holds them in memory. So nothing leaves the process unsealed,
and what a payload holds decides the key:

- a conversation's content (a chat event: the message's text) is sealed under
  that conversation's own data key, so it is erased with the conversation: a
  logout destroys that key, and no key the deployment keeps opens the copy
  again (docs/privacy.md). The payload names the pair and the key's
  generation, in clear, so a receiver finds the key it already holds;
- every other event (typing, read, presence, timer, deleted, cleared, a
  revocation) carries no content, only who and when, as the database's rows
  do: it is sealed under a random key of this process, wrapped by the master
  key and carried in each payload, so any worker holding the master key opens it.

Receivers cache the keys they have unwrapped. Random nonces stay far from
GCM's limits: one process key per process and master key step.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
from typing import Protocol

from secure_link.encryption import Generation, Keyring, Pair, aead, contexts

CACHE_LIMIT = 1_000  # one key per publishing process seen since the last clear
PROCESS, CONVERSATION = "p", "c"  # the first character of a sealed payload says which key
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class KeyNotHeld(Exception):
    """Opening needs a conversation key this process has not loaded yet: `Seal.open` loads it."""


class ConversationKeys(Protocol):
    """Where a receiver finds a conversation's current key (encryption.BodyKeys)."""

    def cached(self, pair: Pair) -> Generation | None: ...
    async def existing(self, pair: Pair) -> Generation | None: ...


@dataclasses.dataclass(frozen=True)
class ConversationKey:
    """The key a chat event is sealed under: the one its message's body was sealed with."""

    low: int
    high: int
    born: datetime.datetime
    key: bytes

    @property
    def generation(self) -> int:
        """The key's birth in microseconds: a conversation cleared and begun again has a new key."""
        return generation_of(self.born)


def generation_of(born: datetime.datetime) -> int:
    """A conversation key's birth in microseconds since 1970: the number a sealed copy names."""
    return (born - _EPOCH) // datetime.timedelta(microseconds=1)


class EnvelopeSeal:
    """Seals what this process publishes; opens what any process of the deployment published."""

    def __init__(self, keyring: Keyring, conversations: ConversationKeys) -> None:
        self._keyring = keyring
        self._conversations = conversations
        self._opened: dict[bytes, bytes] = {}
        self._new_process_key()

    def _new_process_key(self) -> None:
        """A key of this process for this master key: one step of the master key (encryption/epochs.py) and
        the copies sealed before it open for no key kept, so the process key changes with it."""
        key = aead.new_key()
        wrapped = self._keyring.wrap(key, contexts.FANOUT_PROCESS)
        self._key, self._wrap_id = key, self._keyring.wrap_id
        self._prefix = bytes([len(wrapped)]) + wrapped
        self._opened[wrapped] = key

    def seal(self, text: str) -> str:
        """An event without content, under this process's key; ASCII, so it fits NOTIFY and Redis alike."""
        if self._wrap_id != self._keyring.wrap_id:
            self._new_process_key()
        sealed = aead.seal(self._key, text.encode("utf-8"), contexts.FANOUT_PROCESS)
        return PROCESS + base64.b64encode(self._prefix + sealed).decode("ascii")

    def seal_conversation(self, conversation: ConversationKey, text: str) -> str:
        """A conversation's content, under its key: `c<low>.<high>.<generation>.` then the sealed text."""
        low, high, generation = conversation.low, conversation.high, conversation.generation
        sealed = aead.seal(conversation.key, text.encode("utf-8"), contexts.fanout_conversation(low, high, generation))
        return f"{CONVERSATION}{low}.{high}.{generation}." + base64.b64encode(sealed).decode("ascii")

    def open_now(self, payload: str) -> str | None:
        """The text, or None when its conversation's key is gone (cleared since: nothing to deliver).

        Raises KeyNotHeld when a conversation key must be loaded first (`open` does
        that), and DecryptionError when no key of this deployment opens it.
        """
        if payload.startswith(PROCESS):
            return self._open_process(payload[1:])
        if payload.startswith(CONVERSATION):
            pair, generation, sealed = _conversation_parts(payload[1:])
            held = self._conversations.cached(pair)
            if held is None or generation_of(held[0]) < generation:
                raise KeyNotHeld(pair)
            return _open_conversation(pair, generation, held, sealed)
        raise aead.DecryptionError("not a sealed fan-out payload")

    async def open(self, payload: str) -> str | None:
        """As `open_now`, loading the conversation's current key when this process lacks it."""
        try:
            return self.open_now(payload)
        except KeyNotHeld:
            pair, generation, sealed = _conversation_parts(payload[1:])
            return _open_conversation(pair, generation, await self._conversations.existing(pair), sealed)

    def _open_process(self, payload: str) -> str:
        try:
            raw = base64.b64decode(payload, validate=True)
        except ValueError:
            raise aead.DecryptionError("not a sealed fan-out payload") from None
        wrapped = raw[1:1 + raw[0]] if raw else b""
        key = self._opened.get(wrapped)
        if key is None:
            key = self._keyring.unwrap(wrapped, contexts.FANOUT_PROCESS)
            if len(self._opened) >= CACHE_LIMIT:
                self._opened.clear()
            self._opened[wrapped] = key
        return aead.open(key, raw[1 + raw[0]:], contexts.FANOUT_PROCESS).decode("utf-8")


def _conversation_parts(payload: str) -> tuple[Pair, int, bytes]:
    """The pair, the key's generation and the sealed text of a conversation payload."""
    low, high, generation, sealed = (payload.split(".", 3) + ["", "", "", ""])[:4]
    if not (low.isdigit() and high.isdigit() and generation.isdigit()):
        raise aead.DecryptionError("not a sealed conversation payload")
    try:
        return (int(low), int(high)), int(generation), base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise aead.DecryptionError("not a sealed conversation payload") from None


def _open_conversation(pair: Pair, generation: int, held: Generation | None, sealed: bytes) -> str | None:
    """None when the key that sealed it is gone: the conversation was cleared (and perhaps begun again)."""
    if held is None or generation_of(held[0]) != generation:
        return None
    return aead.open(held[1], sealed, contexts.fanout_conversation(*pair, generation)).decode("utf-8")
