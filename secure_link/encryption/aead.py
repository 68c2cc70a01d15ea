"""AES-256-GCM for small values: seal and open with a context bound as associated data.

Everything the server keeps encrypted at rest goes through here or through
`sealedfile.py` (files, in segments): message bodies and wrapped keys are a
random 96-bit nonce followed by the ciphertext and its 16-byte tag. The
context (`aad`, e.g. b"conversation:3:7") is authenticated but not stored,
so a blob copied to another row or conversation fails to open instead of
decrypting there (docs/privacy.md, "Encryption at rest").
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32      # AES-256
NONCE_BYTES = 12    # GCM's 96-bit nonce; random ones are safe for far more than 2^32 seals per key
TAG_BYTES = 16


class DecryptionError(Exception):
    """Stored bytes did not authenticate: the wrong key, the wrong context, or altered or cut bytes.

    One type for every cause, so no caller can tell a tampered blob from a wrong key
    and none ever sees unauthenticated plaintext.
    """


def new_key() -> bytes:
    """A fresh random AES-256 key."""
    return os.urandom(KEY_BYTES)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate `plaintext` under `key`, bound to the context `aad`."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open(key: bytes, blob: bytes, aad: bytes) -> bytes:  # shadows the builtin here only: NaCl's name for it
    """The plaintext of a sealed blob; DecryptionError if anything about it is wrong."""
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("the sealed value is too short to be one")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise DecryptionError("the sealed value does not authenticate under this key and context") from None
