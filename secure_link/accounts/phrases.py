"""Passphrases: the rules a new one must meet, and hashing them with bcrypt.

Phrases are NFKC-normalised, pre-hashed with HMAC-SHA256 under a pepper and
base64-encoded (44 bytes) before bcrypt, so bcrypt 5's 72-byte limit neither
raises nor truncates (docs/decisions.md). bcrypt runs in a thread, at most
`bcrypt_concurrency` at once, so logins cannot starve the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Iterator

import bcrypt

from secure_link.accounts.users import fold_username
from secure_link.errors import AppError
from secure_link.ratelimit import BoundedSlots, QueueFull

BUSY_RETRY_S = 1.0  # a full hashing line drains within about a second at the defaults


def phrase_problem(phrase: str, username: str) -> str | None:
    """Why a phrase is refused, or None; the first failed rule is named.

    NUL and lone surrogates never get here: `wire.take` refuses them in every field.
    """
    normal = unicodedata.normalize("NFKC", phrase)
    if any(unicodedata.category(ch) == "Cc" for ch in normal):
        return "must not contain control characters"
    if not 12 <= len(normal) <= 256:
        return "must be 12 to 256 characters long"
    if len(normal.split()) < 3:
        return "must have at least 3 words"
    if username and fold_username(username) in normal.casefold():
        return "must not contain the username"
    return None


class HashingBusy(AppError):
    """503 `busy`: this worker's line of phrases waiting for bcrypt is full; nothing was hashed."""

    def __init__(self) -> None:
        super().__init__(503, "busy", "The server is busy checking phrases; try again in a moment.",
                         retry_after=BUSY_RETRY_S)


class PhraseHasher:
    """This worker's bcrypt: the pepper and cost, its bounded line of phrases, and a dummy hash
    that an unknown username is checked against, so its answer takes as long as a wrong phrase's."""

    def __init__(self, pepper: str, rounds: int, slots: BoundedSlots, dummy_hash: bytes) -> None:
        self._pepper = pepper
        self._rounds = rounds
        self._slots = slots
        self._dummy_hash = dummy_hash

    @classmethod
    async def start(cls, pepper: str, rounds: int, slots: BoundedSlots) -> PhraseHasher:
        """A hasher with its dummy hash made (in a thread: it takes as long as a login's check)."""
        dummy = await asyncio.to_thread(make_dummy_hash, rounds)
        return cls(pepper, rounds, slots, dummy)

    @contextlib.contextmanager
    def place(self) -> Iterator[None]:
        """A place in this worker's line for bcrypt, held for a whole login or registration.

        Taken before anything else, so a full line turns a request away at once
        (503 `busy`) without a database round trip, and nothing is counted for it.
        """
        try:
            with self._slots.place():
                yield
        except QueueFull:
            raise HashingBusy() from None

    async def hash(self, phrase: str) -> bytes:
        """bcrypt of the pre-hash, in a thread, in a hashing slot (hold a `place` first)."""
        salt = bcrypt.gensalt(self._rounds)
        async with self._slots.slot():
            return await asyncio.to_thread(bcrypt.hashpw, _prehash(phrase, self._pepper), salt)

    async def matches(self, phrase: str, stored: bytes | None) -> bool:
        """Check a phrase; with no stored hash, check against the dummy so timing is alike."""
        prehash = _prehash(phrase, self._pepper)
        async with self._slots.slot():
            ok = await asyncio.to_thread(bcrypt.checkpw, prehash, stored or self._dummy_hash)
        return ok and stored is not None


def _prehash(phrase: str, pepper: str) -> bytes:
    normal = unicodedata.normalize("NFKC", phrase).encode("utf-8")
    return base64.b64encode(hmac.new(pepper.encode("utf-8"), normal, hashlib.sha256).digest())


def make_dummy_hash(rounds: int) -> bytes:
    """A hash of a random phrase at the configured cost, for unknown-user logins."""
    return bcrypt.hashpw(secrets.token_bytes(32), bcrypt.gensalt(rounds))
