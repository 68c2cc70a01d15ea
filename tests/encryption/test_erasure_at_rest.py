"""Nothing of a cleared conversation opens from the disk, even with the master key.

The attacker of docs/privacy.md takes PostgreSQL's data folder and MASTER_KEY_FILE
after Bob's logout. They scan every file of the folder for wrapped data keys and
unwrap each under every context they can name (every pair of user ids, the
fan-out's), then try every key they got on every sealed copy they find: message
bodies in heap and WAL, fan-out payloads in the notify queue, the WAL and
fanout_spill, and, over Redis, what the pub/sub carried. Before the logout the
same attack reads all of it, which shows it works; after the logout and the
master key's step that follows it, it reads nothing of Alice and Bob's, and still
reads Alice and Carol's conversation, which nobody cleared.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import re
import uuid
from pathlib import Path
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as redis

from secure_link.encryption import aead, contexts
from secure_link.encryption.keyring import Keyring, key_id, read_key
from secure_link.ops import devdb

from ..chat.test_disappearing import incompressible
from ..conftest import running_server, settings_for
from ..story import Person, eventually

WRAPPED_BODY = 12 + aead.KEY_BYTES + aead.TAG_BYTES  # nonce, key, tag after the version and the id
CONVERSATION_COPY = re.compile(rb"c(\d+)\.(\d+)\.(\d+)\.([A-Za-z0-9+/]+={0,2})")
PROCESS_COPY = re.compile(rb"p([A-Za-z0-9+/]{40,}={0,2})")
TOAST_CHUNK = 1996  # PostgreSQL stores a long value out of line in chunks of this size (8 KiB pages)


class Attacker:
    """What someone holding the data folder and the master key file reads (bodies known by value:
    they are in the folder's bytes, which the test checks, as an attacker finds them by structure)."""

    def __init__(self, folder: Path, key_file: Path, user_ids: list[int]) -> None:
        self.disk = b"".join(path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file())
        self.keyring = Keyring([read_key(key_file)])
        self.pairs = list(itertools.combinations(range(1, max(user_ids) + 3), 2))

    def conversation_keys(self) -> dict[tuple[int, int], set[bytes]]:
        """Every conversation key the master key unwraps from any copy of a wrapped key on disk."""
        found: dict[tuple[int, int], set[bytes]] = {}
        for wrapped in self._wrapped():
            for pair in self.pairs:
                with contextlib.suppress(aead.DecryptionError):
                    found.setdefault(pair, set()).add(self.keyring.unwrap(wrapped, contexts.conversation_key(*pair)))
        return found

    def process_keys(self) -> set[bytes]:
        found = set()
        for wrapped in self._wrapped():
            with contextlib.suppress(aead.DecryptionError):
                found.add(self.keyring.unwrap(wrapped, contexts.FANOUT_PROCESS))
        return found

    def _holds(self, value: bytes) -> bool:
        """Whether the value is on disk: whole, or as TOAST cuts a long one (chunks of 1,996 bytes)."""
        return value in self.disk or all(value[at:at + TOAST_CHUNK] in self.disk
                                         for at in range(0, len(value), TOAST_CHUNK))

    def _wrapped(self) -> set[bytes]:
        prefix = b"\x01" + bytes.fromhex(key_id(self.keyring.current))
        return {self.disk[at:at + len(prefix) + WRAPPED_BODY] for at in _all(self.disk, prefix)}

    def read(self, bodies: list[tuple[int, int, bytes]], captured: list[bytes], parked: list[bytes]) -> list[str]:
        """Every plaintext the keys open: bodies still on disk, and fan-out copies on disk, parked
        (found by value: on disk, TOAST cuts them as it cuts long bodies) or captured."""
        conversation_keys, process_keys = self.conversation_keys(), self.process_keys()
        assert all(self._holds(copy) for copy in parked)
        captured = [*captured, *parked]
        read = []
        for sender, recipient, sealed in bodies:
            assert self._holds(sealed)  # the ciphertext is there for the taking, before and after
            pair = tuple(sorted((sender, recipient)))
            for key in conversation_keys.get(pair, ()):  # type: ignore[call-overload]
                with contextlib.suppress(aead.DecryptionError):
                    read.append(aead.open(key, sealed, contexts.message_body(sender, recipient)).decode())
        for copy in [self.disk, *captured]:
            for low, high, generation, sealed in CONVERSATION_COPY.findall(copy):
                pair, aad = (int(low), int(high)), contexts.fanout_conversation(int(low), int(high), int(generation))
                for key in conversation_keys.get(pair, ()):
                    with contextlib.suppress(aead.DecryptionError, ValueError):
                        read.append(aead.open(key, base64.b64decode(sealed), aad).decode())
            for sealed in PROCESS_COPY.findall(copy):
                with contextlib.suppress(ValueError, IndexError):
                    raw = base64.b64decode(sealed)
                    for key in process_keys:
                        with contextlib.suppress(aead.DecryptionError):
                            read.append(aead.open(key, raw[1 + raw[0]:], contexts.FANOUT_PROCESS).decode())
        return read


def _all(haystack: bytes, needle: bytes) -> list[int]:
    found, at = [], haystack.find(needle)
    while at >= 0:
        found.append(at)
        at = haystack.find(needle, at + 1)
    return found


@contextlib.asynccontextmanager
async def redis_copies(url: str | None, channels: list[str]) -> AsyncIterator[list[bytes]]:
    """What Redis's pub/sub carries on the users' channels (nothing when the fan-out is PostgreSQL's)."""
    captured: list[bytes] = []
    if url is None:
        yield captured
        return
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(*channels)
    try:
        yield captured
    finally:
        while (message := await pubsub.get_message(timeout=0.5)) is not None:
            if message["type"] == "message":
                captured.append(message["data"])
        await pubsub.aclose()
        await client.aclose()


async def checkpoint(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


async def stepped_past(database_url: str, key_file: Path, old_id: str) -> bool:
    """The master key took its step: the file holds another key and the database names only it."""
    connection = await asyncpg.connect(database_url)
    try:
        ids = {row["id"] for row in await connection.fetch("SELECT id FROM master_keys")}
    finally:
        await connection.close()
    return ids == {key_id(read_key(key_file))} and old_id not in ids


@pytest.mark.slow
@pytest.mark.parametrize("fanout", ["postgres", pytest.param("redis", marks=pytest.mark.redis)])
async def test_after_a_logout_nothing_of_it_opens_from_the_disk_even_with_the_master_key(
        fanout: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    redis_url = request.getfixturevalue("redis_url") if fanout == "redis" else None
    var, media = tmp_path / "var", tmp_path / "media"
    key_file = var / "master-key"
    settings = settings_for("", media).replace(database_url=None, var_dir=var, master_key_file=key_file,
                                                broadcast_url=redis_url, key_step_interval=0.0)
    markers = [f"marker-{uuid.uuid4().hex}" for _ in range(4)]
    try:
        async with running_server(settings) as server:
            database_url = devdb.with_database(devdb.start_server(var), devdb.DATABASE_NAME)
            alice, bob, carol = [await server.person(name).register() for name in ("alice", "bob", "carol")]
            ids = [person.user["id"] for person in (alice, bob, carol)]
            async with redis_copies(redis_url, [f"user:{user_id}" for user_id in ids]) as captured:
                await talk(alice, bob, carol, markers)
            bodies, parked = await stored_bodies(database_url), await parked_copies(database_url)
            await checkpoint(database_url)
            before = Attacker(var / "pgdata", key_file, ids).read(bodies, captured, parked)
            for marker in markers:  # the attack works: everything opens while it is stored
                assert any(marker in text for text in before), marker
            if fanout == "postgres":  # the parked copy itself, not only the body
                opened = [text for text in before if markers[1] in text and '"type":"chat"' in text]
                assert opened and parked, "the parked fan-out copy should open before the logout"
            old_id = key_id(read_key(key_file))

            assert (await bob.api("POST", "/api/logout/")).status_code == 200
            await eventually(lambda: stepped_past(database_url, key_file, old_id))
            await checkpoint(database_url)
            after = Attacker(var / "pgdata", key_file, ids).read(bodies, captured, parked)
            for marker in markers[:3]:  # Alice and Bob's: gone for good
                assert not any(marker in text for text in after), marker
            assert any(markers[3] in text for text in after)  # Alice and Carol's still opens: the attack still works
    finally:
        devdb.stop_server(var)


async def talk(alice: Person, bob: Person, carol: Person, markers: list[str]) -> None:
    """A short message and a long one (parked by PostgreSQL: over NOTIFY's 8,000 bytes) to Bob, his
    answer, and a message to Carol, each carrying its marker; every one delivered live."""
    alice_tab, bob_tab, carol_tab = await alice.connect(), await bob.connect(), await carol.connect()
    await alice.say(alice_tab, bob, f"short {markers[0]}")
    await alice.say(alice_tab, bob, incompressible(3950) + markers[1])
    for _ in range(2):
        await bob_tab.expect("chat")
    await bob.say(bob_tab, alice, f"answer {markers[2]}")
    await alice.say(alice_tab, carol, f"to Carol {markers[3]}")
    await carol_tab.expect("chat")


async def stored_bodies(database_url: str) -> list[tuple[int, int, bytes]]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT sender_id, recipient_id, sealed_body FROM messages")
    finally:
        await connection.close()
    return [(row["sender_id"], row["recipient_id"], row["sealed_body"]) for row in rows]


async def parked_copies(database_url: str) -> list[bytes]:
    """The fan-out copies PostgreSQL parked (too long for NOTIFY), as the table holds them."""
    connection = await asyncpg.connect(database_url)
    try:
        return [row["payload"].encode() for row in await connection.fetch("SELECT payload FROM fanout_spill")]
    finally:
        await connection.close()
