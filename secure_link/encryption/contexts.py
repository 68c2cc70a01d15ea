"""Every context and label of encryption at rest, in one place for a security reviewer.

A context is what AES-GCM authenticates beside a sealed value without storing
it (its associated data): the row, file or conversation the value belongs to.
A blob copied anywhere else fails to open instead of decrypting there. A label
names what a keyed hash or a key derivation is for, so that no two uses of one
key can stand in for each other.

Each is part of what is stored: changing one makes everything sealed under it
unreadable (or, for a tag, unrecognised). tests/encryption/test_contexts.py pins
every one against data the server stored, written out byte for byte.
"""

from __future__ import annotations

# ---- data keys, wrapped by the master key (keyring.py) -----------------------------------------

WRAPPED_KEY = b"secure-link wrapped key"


def wrapped_key(master_id: str, context: bytes) -> bytes:
    """What a wrapped data key is bound to: the master key that wraps it, and its own row's context."""
    return WRAPPED_KEY + b"|" + bytes.fromhex(master_id) + b"|" + context


def conversation_key(user_id: int, peer_id: int) -> bytes:
    """A conversation's data key: the pair of users, lowest id first (`conversation_keys`)."""
    low, high = sorted((user_id, peer_id))
    return b"conversation:%d:%d" % (low, high)


def file_key(file_id: str) -> bytes:
    """A file's data key: the file's row (`files.wrapped_key`)."""
    return f"file:{file_id}".encode()


# ---- what the data keys seal ------------------------------------------------------------------

def message_body(sender_id: int, recipient_id: int) -> bytes:
    """A message body (`messages.sealed_body`): its conversation and its sender, so a database
    writer can neither move it to another conversation nor make the other party its author."""
    return conversation_key(sender_id, recipient_id) + b":from:%d" % sender_id


def file_content(file_id: str, thumbnail: bool) -> bytes:
    """A stored file's segments (sealedfile.py adds its header): the file and its role, so no
    file, and no thumbnail, passes for another."""
    return f"file:{file_id}:{'thumbnail' if thumbnail else 'full'}".encode()


# ---- fan-out payloads, sealed in transit and in the transport (fanout/seal.py) ------------------

FANOUT_PROCESS = b"fanout"  # a process key, wrapped by the master key, and what it seals


def fanout_conversation(low: int, high: int, generation: int) -> bytes:
    """A chat event's copy, under its conversation's key: the pair and the key's generation."""
    return b"fanout:conversation:%d:%d:%d" % (low, high, generation)


# ---- labels of keyed hashes and derivations ---------------------------------------------------

MASTER_KEY_ID = b"secure-link master key id"  # HMAC keyed by a master key: its public id
MASTER_KEY_STEP = b"secure-link master key, next step"  # HKDF info: the next master key (epochs.py)
CLIENT_TAGS = b"secure-link client_id tags"  # HMAC keyed by the pepper: the key of client_id tags


def client_tag_input(sender_id: int, client_id: str) -> bytes:
    """What a remembered client_id's tag (`used_client_ids.tag`) is the keyed hash of."""
    return b"%d:%s" % (sender_id, client_id.encode("utf-8"))
