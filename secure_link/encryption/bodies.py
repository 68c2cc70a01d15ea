"""Message bodies sealed with their conversation's data key: sealed at send, opened at read.

Each worker keeps the conversation keys it has unwrapped, by pair, with the
key row's `created_at` as its generation: a logout destroys a conversation's
key, and a later conversation between the same two users gets a new one. The
writer passes the generation with each sealed body, and `insert_messages`
stores a body only if that key is still the conversation's; a reader whose
cached key no longer opens a body drops it and asks the database again.
A body is bound (as AES-GCM associated data) to its conversation and its
sender, so a database writer cannot move it to another conversation or make
the other party its author (docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from secure_link.db import Database
from secure_link.encryption import aead, contexts, datakeys
from secure_link.encryption.datakeys import Generation
from secure_link.encryption.keyring import Keyring

Pair = tuple[int, int]
CACHE_LIMIT = 50_000  # ~150 bytes each; past it the cache starts again from empty


def pair_of(user_id: int, peer_id: int) -> Pair:
    """A conversation's two users, lowest id first: how its key is found."""
    low, high = sorted((user_id, peer_id))
    return low, high


class BodyKeys:
    """This worker's unwrapped conversation keys: (generation, key) by pair."""

    def __init__(self, db: Database, keyring: Keyring) -> None:
        self._db = db
        self._keyring = keyring
        self._keys: dict[Pair, Generation] = {}

    async def for_pairs(self, pairs: Iterable[Pair]) -> dict[Pair, Generation]:
        """The current key of each conversation, created on its first message."""
        found = {}
        for pair in set(pairs):
            cached = self._keys.get(pair)
            found[pair] = cached if cached is not None else await self._load(pair)
        return found

    def forget(self, pair: Pair) -> None:
        """A stale key (the conversation was cleared): the next use reads it again."""
        self._keys.pop(pair, None)

    def cached(self, pair: Pair) -> Generation | None:
        """The key this worker holds for the pair, without asking the database (it may be stale)."""
        return self._keys.get(pair)

    async def existing(self, pair: Pair) -> Generation | None:
        """The conversation's current key read again, or None when it has none: a receiver of a
        fan-out copy never creates one (fanout/seal.py)."""
        found = await datakeys.existing_conversation_key(self._db, self._keyring, *pair)
        if found is None:
            self.forget(pair)
        else:
            self._remember(pair, found)
        return found

    async def _load(self, pair: Pair) -> Generation:
        found = await datakeys.conversation_key(self._db, self._keyring, *pair)
        self._remember(pair, found)
        return found

    def _remember(self, pair: Pair, found: Generation) -> None:
        if len(self._keys) >= CACHE_LIMIT:
            self._keys.clear()
        self._keys[pair] = found

    def seal(self, key: bytes, sender_id: int, recipient_id: int, body: str) -> bytes:
        """A body sealed under its conversation's key, bound to the conversation and its sender."""
        return aead.seal(key, body.encode("utf-8"), contexts.message_body(sender_id, recipient_id))

    async def open_rows(self, rows: list[asyncpg.Record]) -> list[str]:
        """The bodies of message rows (sealed, or text from before sealing), in order.

        A row whose conversation key is gone (cleared meanwhile) cannot be
        opened by anyone: it raises, as any other undecryptable body does.
        """
        pairs = {pair_of(row["sender_id"], row["recipient_id"]) for row in rows if row["sealed_body"] is not None}
        current = await self.for_pairs(pairs) if pairs else {}
        return [await self._open(row, current) for row in rows]

    async def _open(self, row: asyncpg.Record, current: dict[Pair, Generation]) -> str:
        if row["sealed_body"] is None:
            return str(row["body"])
        pair = pair_of(row["sender_id"], row["recipient_id"])
        context = contexts.message_body(row["sender_id"], row["recipient_id"])
        try:
            return aead.open(current[pair][1], row["sealed_body"], context).decode("utf-8")
        except aead.DecryptionError:
            self.forget(pair)  # perhaps a newer conversation's key: read it once more
            _, key = (await self.for_pairs([pair]))[pair]
            return aead.open(key, row["sealed_body"], context).decode("utf-8")
