"""The master key, kept in a file and never in the database, and the data keys it wraps.

Each conversation and each file has its own random data key; what the
database stores is that key sealed by the master key (`wrap`), with the
master key's id in front, so a row says which master key can open it and a
rotation can be resumed (rotation.py). The id is a keyed hash of the key,
not the key: it reveals nothing about it.

`MASTER_KEY_FILE` holds 32 random bytes in base64. While a rotation is under
way, `MASTER_KEY_FILE.next` holds the new key: it then wraps every new data
key, and both files open the old ones (docs/privacy.md, "Encryption at rest").

The master key also moves on by itself after erasures (epochs.py): each step's
key is derived from the last by a one-way function (`next_master`), so every
worker and host can follow the deployment's steps without copying a file, and
nobody holding a later key can go back to an earlier one: copies of data keys
wrapped before a step (in the WAL, dead tuples, backups) open for no key kept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secure_link.config import ConfigError
from secure_link.encryption import aead, contexts, secretfile

NEXT_SUFFIX = ".next"
_VERSION = b"\x01"
_ID_BYTES = 8
STEPS_WHEN_READING = 64  # a worker meeting a key wrapped a few steps ahead derives its way there
log = logging.getLogger("secure_link.keyring")


class UnknownMasterKey(aead.DecryptionError):
    """A wrapped key names a master key this server does not hold (the wrong MASTER_KEY_FILE)."""


def key_id(master: bytes) -> str:
    """The public name of a master key: 16 hex digits of an HMAC keyed by it."""
    return hmac.new(master, contexts.MASTER_KEY_ID, hashlib.sha256).hexdigest()[:2 * _ID_BYTES]


def encode_key(master: bytes) -> str:
    """How a master key is written to its file."""
    return base64.urlsafe_b64encode(master).decode("ascii").rstrip("=")


def new_master_key() -> bytes:
    """32 random bytes."""
    return secrets.token_bytes(aead.KEY_BYTES)


def next_master(master: bytes) -> bytes:
    """The master key of the next step: HKDF-SHA256 of this one. One way: the next says nothing of this."""
    return HKDF(algorithm=hashes.SHA256(), length=aead.KEY_BYTES, salt=None, info=contexts.MASTER_KEY_STEP).derive(master)


def read_key(path: Path) -> bytes:
    """The master key in `path`: 32 bytes in base64 (either alphabet, as `openssl rand -base64 32` writes)."""
    return _decode_key(path, secretfile.read(path))


def _decode_key(path: Path, text: str) -> bytes:
    text = text.replace("+", "-").replace("/", "_")
    try:
        master = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        master = b""
    if len(master) != aead.KEY_BYTES:
        raise ConfigError(f"{path} does not hold a master key (32 bytes in base64, e.g. `openssl rand -base64 32`)")
    return master


def next_path(path: Path) -> Path:
    """Where the key a rotation moves to waits until the rotation is done."""
    return path.with_name(path.name + NEXT_SUFFIX)


def wrapped_id(wrapped: bytes) -> str:
    """The id of the master key that wrapped `wrapped`."""
    if len(wrapped) < 1 + _ID_BYTES or wrapped[:1] != _VERSION:
        raise aead.DecryptionError("not a wrapped key")
    return wrapped[1:1 + _ID_BYTES].hex()


class Keyring:
    """The master keys this process holds: the one that wraps new data keys, and any that open old ones."""

    def __init__(self, masters: list[bytes], path: Path | None = None) -> None:
        """`masters` oldest first: the last one wraps. `path` (its MASTER_KEY_FILE) lets it reload."""
        self.path = path
        self._keys = {key_id(master): master for master in masters}
        self.wrap_id = key_id(masters[-1])

    @classmethod
    def load(cls, path: Path) -> Keyring:
        """The key in `path`, and the one in `path.next` if a rotation is under way.

        `.next` is read first: a rotation that ends meanwhile renames it over
        `path`, so `path`, read second, then holds that key. Read in the other
        order, the new key could be missed, or its file gone between the look and the read.
        """
        upcoming = secretfile.read_if_present(next_path(path))
        masters = [read_key(path)]
        if upcoming is not None:
            masters.append(_decode_key(next_path(path), upcoming))
        return cls(masters, path)

    @property
    def ids(self) -> frozenset[str]:
        """The ids of every master key held."""
        return frozenset(self._keys)

    @property
    def current(self) -> bytes:
        """The master key that wraps new data keys (what a step writes to the key file)."""
        return self._keys[self.wrap_id]

    def key_for(self, master_id: str) -> bytes:
        """A held master key, by id."""
        return self._keys[master_id]

    def next_id(self) -> str:
        """The id of the step after the current key, which is now held too."""
        following = next_master(self.current)
        self._keys[key_id(following)] = following
        return key_id(following)

    def reach(self, wanted: str, steps: int = STEPS_WHEN_READING) -> bool:
        """Hold `wanted` if it is at most `steps` steps after a key held (derived on the way)."""
        if wanted in self._keys:
            return True
        for start in list(self._keys.values()):
            master = start
            for _ in range(steps):
                master = next_master(master)
                if key_id(master) == wanted:
                    self._keys[wanted] = master
                    return True
        return False

    def adopt(self, wrap_id: str) -> None:
        """Wrap new data keys with this held key from now on (the deployment stepped to it)."""
        if wrap_id not in self._keys:
            raise UnknownMasterKey(f"cannot wrap with master key {wrap_id}: it is not held")
        self.wrap_id = wrap_id

    def forget(self, retired: set[str] | frozenset[str]) -> None:
        """Drop retired master keys: nothing in the database is wrapped by them any more."""
        for master_id in retired - {self.wrap_id}:
            self._keys.pop(master_id, None)

    def reload(self) -> None:
        """Read the key files again: a rotation elsewhere may have added or replaced one.

        The keys already held are kept, so a reload during a rotation never
        loses the old key while rows may still need it.
        """
        if self.path is None:
            return
        try:
            fresh = Keyring.load(self.path)
        except ConfigError as exc:
            log.warning("could not reload the master key: %s", exc)
            return
        self._keys = {**self._keys, **fresh._keys}
        if not Keyring([fresh.current]).reach(self.wrap_id):  # the file's key is not behind the one held
            self.wrap_id = fresh.wrap_id

    def wrap(self, key: bytes, context: bytes) -> bytes:
        """`key` sealed by the current master key, bound to `context`, with that master key's id."""
        aad = contexts.wrapped_key(self.wrap_id, context)
        return _VERSION + bytes.fromhex(self.wrap_id) + aead.seal(self._keys[self.wrap_id], key, aad)

    def new_data_key(self, context: bytes) -> tuple[bytes, bytes]:
        """A fresh data key and its wrapped form for the row it belongs to (`context` names that row)."""
        key = aead.new_key()
        return key, self.wrap(key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """The data key inside `wrapped`; DecryptionError (UnknownMasterKey) if it cannot be had."""
        master_id = wrapped_id(wrapped)
        if master_id not in self._keys:
            self.reload()
        if not self.reach(master_id):
            raise UnknownMasterKey(f"this key was wrapped by master key {master_id}, which MASTER_KEY_FILE "
                                   f"does not hold (it holds {', '.join(sorted(self._keys))})")
        return aead.open(self._keys[master_id], wrapped[1 + _ID_BYTES:], contexts.wrapped_key(master_id, context))

    def rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        """The same data key, wrapped by the current master key (a rotation's step)."""
        return self.wrap(self.unwrap(wrapped, context), context)
