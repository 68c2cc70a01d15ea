"""Every context and label of encryption at rest, pinned against what the server stored.

A reviewer reads them in secure_link/encryption/contexts.py; here each is
written out byte for byte, and what the server really stored (rows, files,
fan-out payloads in flight, the master key's file) is opened with those bytes
and with AES-GCM itself, not with the code under test. A label changed in the
code, even by one byte, leaves data stored under the old one unreadable: here
that is a failing test rather than a lost deployment.

Alice uploads a photo and sends it to Bob with a client_id; Bob's channel is
listened to as a thief on the transport would; she sets a timer; and the
master key takes one step on a database of its own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secure_link.db import Database
from secure_link.encryption import contexts, datakeys, epochs, sealedfile
from secure_link.encryption.keyring import Keyring, read_key
from secure_link.fanout.backends.postgres import pg_channel

from ..conftest import TEST_PEPPER, shared_master_key_file
from ..story import Person, Server, image_bytes, upload

# What this file pins: every public name of contexts.py (a new one must be pinned here too).
PINNED = {"WRAPPED_KEY", "wrapped_key", "conversation_key", "file_key", "message_body", "file_content",
          "FANOUT_PROCESS", "fanout_conversation", "MASTER_KEY_ID", "MASTER_KEY_STEP", "CLIENT_TAGS",
          "client_tag_input"}


def test_every_context_in_the_module_is_pinned_here() -> None:
    defined = {name for name in vars(contexts) if not name.startswith("_") and name != "annotations"}
    assert defined == PINNED


def aes_open(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """AES-256-GCM as stored: a 96-bit nonce, then the ciphertext and its tag."""
    return AESGCM(key).decrypt(blob[:12], blob[12:], aad)


def master_for(master_id: str) -> bytes:
    """The master key a wrapped key names; its id is an HMAC of it under the id's label."""
    keyring = Keyring.load(shared_master_key_file())
    assert keyring.reach(master_id, datakeys.STEPS_AT_START)
    master = keyring.key_for(master_id)
    assert hmac.new(master, b"secure-link master key id", hashlib.sha256).hexdigest()[:16] == master_id
    return master


def unwrap(wrapped: bytes, context: bytes) -> bytes:
    """A data key opened by hand: a version byte, the master key's 8-byte id, then the sealed key,
    bound to the wrapping label, that id, and its own row's context."""
    assert wrapped[:1] == b"\x01"
    master_id = wrapped[1:9]
    return aes_open(master_for(master_id.hex()), wrapped[9:], b"secure-link wrapped key|" + master_id + b"|" + context)


async def chat_with_a_photo(server: Server) -> tuple[Person, Person, dict[str, object], str]:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    photo = await upload(alice, image_bytes(size=(400, 300)), "photo.png")
    sent = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "meet at the usual place",
                                                               "client_id": "ctx-1", "attachment": photo["id"]})
    assert sent.status_code == 201, sent.text
    return alice, bob, sent.json(), photo["id"]


async def test_stored_rows_and_files_open_with_their_contexts_written_out(server: Server, db: asyncpg.Connection) -> None:
    alice, bob, message, file_id = await chat_with_a_photo(server)
    low, high = sorted((alice.user["id"], bob.user["id"]))
    row = await db.fetchrow("SELECT wrapped_key FROM conversation_keys WHERE low_user_id = $1 AND high_user_id = $2",
                            low, high)
    conversation_key = unwrap(row["wrapped_key"], b"conversation:%d:%d" % (low, high))

    sealed = await db.fetchval("SELECT sealed_body FROM messages WHERE id = $1", message["id"])
    body = aes_open(conversation_key, sealed, b"conversation:%d:%d:from:%d" % (low, high, alice.user["id"]))
    assert body == b"meet at the usual place"

    stored = await db.fetchrow("SELECT wrapped_key, path, thumbnail_path, sha256 FROM files WHERE id = $1", file_id)
    file_key = unwrap(stored["wrapped_key"], b"file:" + file_id.encode())
    root = server.settings.media_root
    with sealedfile.Reader.open(root / stored["path"], file_key, b"file:%s:full" % file_id.encode()) as reader:
        assert hashlib.sha256(b"".join(reader.chunks(0, reader.size))).hexdigest() == stored["sha256"]
    with sealedfile.Reader.open(root / stored["thumbnail_path"], file_key,
                                b"file:%s:thumbnail" % file_id.encode()) as reader:
        assert b"".join(reader.chunks(0, reader.size)).startswith(b"\x89PNG")

    tag_key = hmac.new(TEST_PEPPER.encode(), b"secure-link client_id tags", hashlib.sha256).digest()
    tag = hmac.new(tag_key, b"%d:%s" % (alice.user["id"], b"ctx-1"), hashlib.sha256).digest()[:16]
    assert await db.fetchval("SELECT count(*) FROM used_client_ids WHERE tag = $1", tag) == 1


async def test_fan_out_payloads_in_flight_open_with_their_contexts_written_out(server: Server, database_url: str,
                                                                                db: asyncpg.Connection) -> None:
    """What PostgreSQL's notify queue (and WAL) holds of a chat event and of a timer event."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "first"})
    heard: asyncio.Queue[str] = asyncio.Queue()
    thief = await asyncpg.connect(database_url)
    try:
        await thief.add_listener(pg_channel(f"user:{bob.user['id']}"), lambda *args: heard.put_nowait(args[3]))
        sent = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "in transit"})
        assert sent.status_code == 201
        chat_payload = await asyncio.wait_for(heard.get(), 10)
        changed = await alice.api("PUT", f"/api/conversations/{bob.username}/timer/", json={"seconds": 60})
        assert changed.status_code == 200
        timer_payload = await asyncio.wait_for(heard.get(), 10)
    finally:
        await thief.close()

    low, high = sorted((alice.user["id"], bob.user["id"]))
    key_row = await db.fetchrow(
        "SELECT wrapped_key, (extract(epoch FROM created_at) * 1000000)::bigint AS born_us FROM conversation_keys "
        "WHERE low_user_id = $1 AND high_user_id = $2", low, high)
    conversation_key = unwrap(key_row["wrapped_key"], b"conversation:%d:%d" % (low, high))
    inline, _, sealed = chat_payload.partition("|")  # the sender's origin tag, in clear, then the sealed copy
    assert inline.startswith("=") and sealed.startswith("c")
    named_low, named_high, generation, blob = sealed[1:].split(".", 3)
    assert (int(named_low), int(named_high), int(generation)) == (low, high, key_row["born_us"])
    event = aes_open(conversation_key, base64.b64decode(blob),
                     b"fanout:conversation:%d:%d:%d" % (low, high, key_row["born_us"]))
    assert b'"message":"in transit"' in event

    inline, _, sealed = timer_payload.partition("|")
    assert inline == "=" and sealed.startswith("p")
    raw = base64.b64decode(sealed[1:])
    wrapped, blob_bytes = raw[1:1 + raw[0]], raw[1 + raw[0]:]
    process_key = unwrap(wrapped, b"fanout")
    assert b'"type":"timer"' in aes_open(process_key, blob_bytes, b"fanout")


async def test_a_master_key_step_derives_the_next_key_under_its_label(own_database: str, tmp_path: Path) -> None:
    """One step, on a database and a key file of its own: the next key is HKDF-SHA256 of the
    last under the step's label, as registered in `master_keys` and written to the file."""
    db = await Database.connect(own_database, min_size=1, max_size=2)
    try:
        path = tmp_path / "master-key"
        keyring = await datakeys.open_keyring(db, path)
        first = read_key(path)
        stepped = await epochs.step(db, keyring, path)
        registered = {row["id"] for row in await db.fetch("list_master_keys")}
    finally:
        await db.close()
    following = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                     info=b"secure-link master key, next step").derive(first)
    following_id = hmac.new(following, b"secure-link master key id", hashlib.sha256).hexdigest()[:16]
    assert stepped is not None and stepped.master_key_id == following_id
    assert registered == {following_id}
    assert read_key(path) == following
