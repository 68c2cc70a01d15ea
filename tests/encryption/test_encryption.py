"""No plaintext at rest: what a thief with the disk, the database, or the wrong key finds.

First the primitives (seal, open, the segmented file format, every Range
boundary), then the story: Alice sends Bob files carrying markers, a byte scan
of MEDIA_ROOT finds none of them, before and after her logout; a server with
another master key refuses to start, and that key opens nothing stored; a
rotation leaves everything readable and the old key useless.
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from collections.abc import AsyncIterator

import asyncpg
import pytest
from click.testing import CliRunner
from PIL import Image, PngImagePlugin

from secure_link import cli
from secure_link.encryption import aead, contexts, datakeys
from secure_link.encryption import sealedfile
from secure_link.encryption import secretfile
from secure_link.config import ConfigError
from secure_link.encryption.aead import DecryptionError
from secure_link.db import Database, load_queries
from secure_link.encryption.keyring import Keyring, UnknownMasterKey, encode_key, new_master_key, next_path, read_key

from ..conftest import running_server, settings_for, shared_master_key_file
from ..story import BOUNDARY, Server, assert_error, found_on_disk, image_bytes, upload

SEGMENT = 16  # tiny segments, so small files cross many boundaries


# ---- seal and open ------------------------------------------------------------

def test_a_sealed_value_opens_only_with_its_key_and_context() -> None:
    key = aead.new_key()
    blob = aead.seal(key, b"hello bob", b"conversation:3:7")
    assert aead.open(key, blob, b"conversation:3:7") == b"hello bob"
    assert b"hello" not in blob and aead.seal(key, b"hello bob", b"conversation:3:7") != blob  # random nonce
    tampered = bytes([blob[0]]) + blob[1:20] + bytes([blob[20] ^ 1]) + blob[21:]
    for wrong_key, wrong_blob, wrong_context in [
        (aead.new_key(), blob, b"conversation:3:7"),
        (key, blob, b"conversation:3:8"),
        (key, tampered, b"conversation:3:7"),
        (key, blob[:-1], b"conversation:3:7"),
        (key, blob[:27], b"conversation:3:7"),
    ]:
        with pytest.raises(DecryptionError):
            aead.open(wrong_key, wrong_blob, wrong_context)


def test_a_wrapped_key_names_its_master_key_and_opens_only_in_its_context() -> None:
    keyring, other = Keyring([new_master_key()]), Keyring([new_master_key()])
    data_key, wrapped = keyring.new_data_key(b"file:abc")
    assert keyring.unwrap(wrapped, b"file:abc") == data_key and data_key not in wrapped
    with pytest.raises(DecryptionError):
        keyring.unwrap(wrapped, b"file:abd")
    with pytest.raises(UnknownMasterKey, match=keyring.wrap_id):
        other.unwrap(wrapped, b"file:abc")
    both = Keyring([new_master_key(), new_master_key()])
    assert both.unwrap(both.rewrap(both.wrap(data_key, b"x"), b"x"), b"x") == data_key


# ---- the segmented file format --------------------------------------------------

def sealed(tmp_path: Path, data: bytes, aad: bytes = b"file:x:full", piece: int = 7) -> Path:
    """`data` written to a sealed file in pieces of `piece` bytes, as an upload streams in."""
    path = tmp_path / f"sealed-{uuid.uuid4().hex}"
    writer = sealedfile.Writer.create(path, KEY, aad, segment_size=SEGMENT)
    for start in range(0, len(data), piece):
        writer.write(data[start:start + piece])
    writer.close()
    return path


KEY = aead.new_key()


@pytest.mark.parametrize("size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 3 * SEGMENT + 5])
def test_every_range_of_a_sealed_file_reads_back_exactly(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = sealed(tmp_path, data)
    assert sealedfile.plaintext_size(path.stat().st_size, SEGMENT) == size
    with sealedfile.Reader.open(path, KEY, b"file:x:full") as reader:
        assert reader.size == size
        for start in range(size):
            for end in range(start + 1, size + 1):
                assert b"".join(reader.chunks(start, end)) == data[start:end], (start, end)
    with io.BufferedReader(sealedfile.Reader.open(path, KEY, b"file:x:full")) as file:
        assert file.read() == data
        file.seek(size // 2)
        assert file.read(SEGMENT) == data[size // 2:size // 2 + SEGMENT]


def alter(path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    path.write_bytes(change(path.read_bytes()))
    return path


HEADER, SEALED_SEGMENT = sealedfile.HEADER.size, SEGMENT + aead.TAG_BYTES


@pytest.mark.parametrize("change", [
    pytest.param(lambda b: b[:HEADER + 5] + bytes([b[HEADER + 5] ^ 1]) + b[HEADER + 6:], id="a-flipped-bit"),
    pytest.param(lambda b: b[:HEADER + SEALED_SEGMENT], id="cut-at-a-segment-boundary"),
    pytest.param(lambda b: b[:HEADER + SEALED_SEGMENT + 7], id="cut-inside-a-segment"),
    pytest.param(lambda b: b[:HEADER] + b[HEADER + SEALED_SEGMENT:HEADER + 2 * SEALED_SEGMENT]
                 + b[HEADER:HEADER + SEALED_SEGMENT] + b[HEADER + 2 * SEALED_SEGMENT:], id="two-segments-swapped"),
    pytest.param(lambda b: b + b[HEADER:HEADER + SEALED_SEGMENT], id="a-segment-appended"),
    pytest.param(lambda b: b[:8] + bytes([b[8] ^ 1]) + b[9:], id="the-nonce-prefix-altered"),
    pytest.param(lambda b: b[:HEADER - 1], id="shorter-than-a-header"),
])
def test_an_altered_sealed_file_never_reads_as_plaintext(tmp_path: Path, change) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(3 * SEGMENT + 5)
    path = alter(sealed(tmp_path, data), change)
    with pytest.raises(DecryptionError), sealedfile.Reader.open(path, KEY, b"file:x:full") as reader:
        b"".join(reader.chunks(0, reader.size))


def test_a_sealed_file_opens_only_with_its_key_and_context(tmp_path: Path) -> None:
    path = sealed(tmp_path, b"a thumbnail is not its image" * 3)
    for key, aad in [(aead.new_key(), b"file:x:full"), (KEY, b"file:x:thumbnail"), (KEY, b"file:y:full")]:
        with pytest.raises(DecryptionError), sealedfile.Reader.open(path, key, aad) as reader:
            reader.segment(0)


# ---- the master key file and the database -----------------------------------------

@pytest.fixture
async def vault(database_url: str) -> AsyncIterator[SimpleNamespace]:
    """What a worker holds for encryption: the pool and the shared master key."""
    db = await Database.connect(database_url, min_size=1, max_size=4)
    try:
        yield SimpleNamespace(db=db, keyring=await datakeys.open_keyring(db, shared_master_key_file()))
    finally:
        await db.close()


async def test_a_database_accepts_one_master_key_and_a_missing_file_is_not_replaced(own_database: str,
                                                                                    tmp_path: Path) -> None:
    db = await Database.connect(own_database, min_size=1, max_size=2)
    try:
        first = await datakeys.open_keyring(db, tmp_path / "keys" / "master-key")
        assert (tmp_path / "keys" / "master-key").stat().st_mode & 0o777 == 0o600
        assert (await datakeys.open_keyring(db, tmp_path / "keys" / "master-key")).ids == first.ids
        secretfile.create(tmp_path / "other", encode_key(new_master_key()))
        with pytest.raises(ConfigError, match=f"also has keys wrapped by {first.wrap_id}"):
            await datakeys.open_keyring(db, tmp_path / "other")
        with pytest.raises(ConfigError, match="does not exist, and this database's keys are wrapped"):
            await datakeys.open_keyring(db, tmp_path / "lost")
        assert not (tmp_path / "lost").exists()
        # A .next the database does not know is what a rotation killed before registering it leaves:
        # it is registered, before it wraps anything (test_rotation.py kills one there).
        secretfile.create(next_path(tmp_path / "keys" / "master-key"), encode_key(new_master_key()))
        resumed = await datakeys.open_keyring(db, tmp_path / "keys" / "master-key")
        assert resumed.ids > first.ids and resumed.wrap_id != first.wrap_id
        assert {row["id"] for row in await db.fetch("list_master_keys")} == resumed.ids
    finally:
        await db.close()


async def test_a_conversation_has_one_key_until_a_logout_destroys_it(server: Server, vault: SimpleNamespace) -> None:
    alice, bob = [(await server.person(name).register()).user["id"] for name in ("alice", "bob")]
    raced = [key for _, key in await asyncio.gather(*(datakeys.conversation_key(vault.db, vault.keyring, *pair)
                                                      for pair in [(alice, bob), (bob, alice)] * 4))]
    assert len(set(raced)) == 1
    body = aead.seal(raced[0], b"hi Bob", contexts.conversation_key(bob, alice))
    async with vault.db.transaction() as conn:
        assert await datakeys.forget_conversation_keys(vault.db, alice, conn) == 1
    _, fresh = await datakeys.conversation_key(vault.db, vault.keyring, alice, bob)
    with pytest.raises(DecryptionError):
        aead.open(fresh, body, contexts.conversation_key(alice, bob))


# ---- the story: nothing readable on disk ----------------------------------------------

def marked_files(marker: str) -> list[tuple[str, bytes]]:
    """Files whose bytes carry the marker: in text, in an uncompressed archive, in a PDF, in an image's metadata."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:
        zipped.writestr("notes.txt", f"{marker} inside a zip\n")
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", marker)
    image = io.BytesIO()
    Image.new("RGB", (300, 200), (10, 120, 200)).save(image, "PNG", pnginfo=info)
    text = (f"{marker}\n" + "filler line of the long note\n" * 5000).encode()  # ~150 KiB: several segments
    pdf = f"%PDF-1.4\n% {marker}\n%%EOF\n".encode()
    return [("note.txt", text), ("notes.zip", archive.getvalue()), ("minutes.pdf", pdf), ("photo.png", image.getvalue())]


def windows(data: bytes, count: int = 8, width: int = 24) -> list[bytes]:
    """Slices of served bytes: if any lay on disk as is, the file would be stored in the clear."""
    step = max(1, (len(data) - width) // count)
    return [data[start:start + width] for start in range(0, max(1, len(data) - width), step)][:count]


async def test_files_sent_with_markers_leave_no_marker_on_disk_before_or_after_a_logout(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    marker = f"marker-{uuid.uuid4().hex}"
    needles = [marker.encode()]
    for name, content in marked_files(marker):
        file = await upload(alice, content, name)
        sent = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "", "attachment": file["id"]})
        assert sent.status_code == 201, sent.text
        for url in filter(None, (file["url"], file["thumbnail_url"])):
            served = (await bob.api("GET", url)).content
            needles += windows(served)
            if url == file["url"] and not name.endswith(".png"):
                assert served == content and marker.encode() in served  # what is served is the plaintext
    assert found_on_disk(server.settings.media_root, needles) == {}
    assert (await alice.api("POST", "/api/logout/")).json()["cleared"]["files"] == 4
    assert found_on_disk(server.settings.media_root, needles) == {}


async def test_an_upload_in_progress_is_sealed_on_disk_already(server: Server) -> None:
    """The temp file an upload streams into holds ciphertext from its first byte."""
    alice = await server.person("alice").register()
    marker = f"marker-{uuid.uuid4().hex}".encode()
    halfway, finish = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n"
               "Content-Type: text/plain\r\n\r\n").encode()
        for _ in range(12):
            yield (marker + b" and then some words\n") * 1500  # 12 x ~77 KiB: past the first flush
        halfway.set()
        await finish.wait()
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    uploading = asyncio.create_task(alice.api("POST", "/api/upload-file/", content=slow_body(),
                                              headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}))
    await halfway.wait()
    parts: list[Path] = []
    for _ in range(200):
        parts = [path for path in server.settings.media_root.rglob("*.part") if path.stat().st_size > 512 * 1024]
        if parts:
            break
        await asyncio.sleep(0.05)
    assert parts, "the upload's temp file never grew past its first flush"
    assert found_on_disk(server.settings.media_root, [marker]) == {}
    finish.set()
    assert (await uploading).status_code == 201
    assert found_on_disk(server.settings.media_root, [marker]) == {}


# ---- serving: ranges of the plaintext ----------------------------------------------

async def test_ranges_are_of_the_plaintext_across_segment_boundaries(server: Server) -> None:
    alice = await server.person("alice").register()
    content = b"".join(b"line %06d of a long text file\n" % n for n in range(8000))  # ~250 KiB, 4 segments
    file = await upload(alice, content, "long.txt")
    size, segment = len(content), sealedfile.SEGMENT_BYTES
    whole = await alice.api("GET", file["url"])
    assert whole.content == content and whole.headers["content-length"] == str(size)
    assert whole.headers["accept-ranges"] == "bytes"
    for header, start, end in [
        ("bytes=0-0", 0, 1), (f"bytes={size - 1}-{size - 1}", size - 1, size), ("bytes=-1", size - 1, size),
        (f"bytes={segment - 1}-{segment}", segment - 1, segment + 1), (f"bytes={segment}-", segment, size),
        (f"bytes=10-{3 * segment + 10}", 10, 3 * segment + 11), (f"bytes=0-{size + 100}", 0, size),
    ]:
        part = await alice.api("GET", file["url"], headers={"Range": header})
        assert part.status_code == 206, (header, part.text)
        assert part.content == content[start:end], header
        assert part.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert part.headers["content-length"] == str(end - start)
    several = await alice.api("GET", file["url"], headers={"Range": "bytes=0-1, 100-101"})
    assert several.status_code == 200 and several.content == content  # allowed: Range may be ignored
    stale = await alice.api("GET", file["url"], headers={"Range": "bytes=0-1", "If-Range": '"another"'})
    assert stale.status_code == 200 and stale.content == content
    assert_error(await alice.api("GET", file["url"], headers={"Range": f"bytes={size}-"}), 416, "range_not_satisfiable")


async def test_a_stored_file_that_does_not_decrypt_is_a_500_never_its_bytes(server: Server,
                                                                             db: asyncpg.Connection) -> None:
    alice = await server.person("alice").register()
    altered, rewrapped = [await upload(alice, f"secret {n}\n".encode(), "s.txt") for n in range(2)]
    path = server.settings.media_root / await db.fetchval("SELECT path FROM files WHERE id = $1", altered["id"])
    alter(path, lambda b: b[:-3] + bytes([b[-3] ^ 1]) + b[-2:])
    foreign = Keyring([new_master_key()])
    await db.execute("INSERT INTO master_keys (id) VALUES ($1)", foreign.wrap_id)
    await db.execute("UPDATE files SET wrapped_key = $2, master_key_id = $3 WHERE id = $1", rewrapped["id"],
                     foreign.wrap(aead.new_key(), contexts.file_key(rewrapped["id"])), foreign.wrap_id)
    for file in (altered, rewrapped):
        response = await alice.api("GET", file["url"])
        assert_error(response, 500, "undecryptable")
        assert b"secret" not in response.content
    await db.execute("DELETE FROM files WHERE id = $1", rewrapped["id"])  # the module's other stories use one key
    await db.execute("DELETE FROM master_keys WHERE id = $1", foreign.wrap_id)


async def test_a_thumbnail_copied_over_its_image_is_refused_not_served_in_its_place(
        server: Server, db: asyncpg.Connection, vault: SimpleNamespace) -> None:
    """An image and its thumbnail share the file's key, so what tells them apart is the role
    each is sealed to (`file:<id>:thumbnail`, docs/privacy.md: files already stored are sealed
    to it): one put in the other's place does not decrypt."""
    alice = await server.person("alice").register()
    photo = await upload(alice, image_bytes(size=(640, 480)), "photo.png")
    row = await db.fetchrow("SELECT path, thumbnail_path, wrapped_key FROM files WHERE id = $1", photo["id"])
    image, thumbnail = (server.settings.media_root / row[column] for column in ("path", "thumbnail_path"))
    key = vault.keyring.unwrap(row["wrapped_key"], contexts.file_key(photo["id"]))
    with sealedfile.Reader.open(thumbnail, key, f"file:{photo['id']}:thumbnail".encode()) as reader:
        assert Image.open(io.BytesIO(b"".join(reader.chunks(0, reader.size)))).width < 640  # the thumbnail
    kept = image.read_bytes()
    image.write_bytes(thumbnail.read_bytes())
    assert_error(await alice.api("GET", photo["url"]), 500, "undecryptable")
    image.write_bytes(kept)
    assert (await alice.api("GET", photo["url"])).status_code == 200


async def test_a_file_stored_before_encryption_is_still_served_as_stored(server: Server, vault: SimpleNamespace,
                                                                        db: asyncpg.Connection) -> None:
    """An upgraded deployment's old files have no data key: they are sent as they lie on disk."""
    alice = await server.person("alice").register()
    content = b"written before issue 13\n" * 100
    file = await upload(alice, content, "old.txt")
    row = await db.fetchrow("SELECT path, wrapped_key FROM files WHERE id = $1", file["id"])
    key = vault.keyring.unwrap(row["wrapped_key"], contexts.file_key(file["id"]))
    path = server.settings.media_root / row["path"]
    with sealedfile.Reader.open(path, key, f"file:{file['id']}:full".encode()) as reader:
        plain = b"".join(reader.chunks(0, reader.size))
    path.unlink()
    bare = PurePosixPath(row["path"]).with_suffix("").as_posix()  # its type comes from its row, not its name
    (server.settings.media_root / bare).write_bytes(plain)
    await db.execute("UPDATE files SET path = $2, wrapped_key = NULL, master_key_id = NULL WHERE id = $1",
                     file["id"], bare)
    old = await alice.api("GET", file["url"])
    assert old.content == content
    part = await alice.api("GET", file["url"], headers={"Range": "bytes=6-12"})
    assert part.status_code == 206 and part.content == content[6:13]
    assert_error(await alice.api("GET", file["url"], headers={"Range": "bytes=9999-"}), 416, "range_not_satisfiable")
    sealed = await alice.api("GET", (await upload(alice, content, "old.txt"))["url"])
    for header in ("content-type", "content-disposition", "x-content-type-options", "content-security-policy",
                   "cache-control", "etag"):  # an old file is as safe to fetch as a new one
        assert old.headers[header] == sealed.headers[header], header


# ---- the wrong master key, and rotation -------------------------------------------------

def invoke(*args: str, **env: str) -> tuple[int, str]:
    """The `secure-link` command, in-process; its exit code and output."""
    result = CliRunner().invoke(cli.main, list(args), env=env)
    return result.exit_code, result.output


async def stored_keys(db: asyncpg.Connection) -> list[tuple[bytes, bytes]]:
    """Every wrapped key in the database, with the context it is bound to."""
    conversations = await db.fetch("SELECT low_user_id, high_user_id, wrapped_key FROM conversation_keys")
    files = await db.fetch("SELECT id, wrapped_key FROM files WHERE wrapped_key IS NOT NULL")
    return ([(row["wrapped_key"], contexts.conversation_key(row["low_user_id"], row["high_user_id"])) for row in conversations]
            + [(row["wrapped_key"], contexts.file_key(row["id"])) for row in files])


def assert_opens_nothing(keyring: Keyring, wrapped_keys: list[tuple[bytes, bytes]], media_root: Path) -> None:
    """Not one wrapped key opens, and no file under MEDIA_ROOT decrypts with anything it could give."""
    assert wrapped_keys
    for wrapped, context in wrapped_keys:
        with pytest.raises(DecryptionError):
            keyring.unwrap(wrapped, context)
    for path in (path for path in media_root.rglob("*") if path.is_file()):
        with pytest.raises(DecryptionError), sealedfile.Reader.open(path, aead.new_key(), b"") as reader:
            reader.segment(0)


async def test_rotation_rewraps_everything_and_the_old_key_opens_nothing(own_database: str, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "master-key"
    settings = settings_for(own_database, tmp_path / "media", master_key_file=key_file)
    env = {"DATABASE_URL": own_database, "MASTER_KEY_FILE": str(key_file), "MEDIA_ROOT": str(settings.media_root)}
    db = await asyncpg.connect(own_database)
    try:
        async with running_server(settings) as server:
            alice, bob = await server.person("alice").register(), await server.person("bob").register()
            photo = await upload(alice, image_bytes("PNG", (400, 300)), "photo.png")
            note = await upload(alice, b"before the rotation\n", "note.txt")
            pool = await Database.connect(own_database, min_size=1, max_size=2)
            try:
                vault = SimpleNamespace(db=pool, keyring=await datakeys.open_keyring(pool, key_file))
                _, talk_key = await datakeys.conversation_key(vault.db, vault.keyring, alice.user["id"], bob.user["id"])
            finally:
                await pool.close()
            old_master, old_id = read_key(key_file), Keyring.load(key_file).wrap_id

            # A rotation that crashed after writing the new key: servers keep working meanwhile.
            await asyncio.to_thread(_prepare_only, own_database, key_file)
            assert next_path(key_file).exists()
            during = await upload(alice, b"uploaded mid-rotation\n", "during.txt")
            code, output = await asyncio.to_thread(invoke, "keys", "rotate", **env)
            assert code == 0, output
            new_id = Keyring.load(key_file).wrap_id
            assert f"master key {new_id} now wraps every key" in output and old_id in output
            assert not next_path(key_file).exists() and new_id != old_id
            assert [row["id"] for row in await db.fetch("SELECT id FROM master_keys")] == [new_id]
            assert {row["master_key_id"] for row in await db.fetch(
                "SELECT master_key_id FROM files UNION SELECT master_key_id FROM conversation_keys")} == {new_id}

            # The running server held only the old key: it reads the new one when a row names it.
            for file, content in ((note, b"before the rotation\n"), (during, b"uploaded mid-rotation\n")):
                assert (await alice.api("GET", file["url"])).content == content
            assert (await alice.api("GET", photo["thumbnail_url"])).status_code == 200
        async with running_server(settings) as restarted:
            assert (await restarted.person("x").register()).token
            assert (await alice.on(restarted).api("GET", note["url"])).content == b"before the rotation\n"
        rotated = Keyring.load(key_file)
        wrapped = await stored_keys(db)
        talk_context = contexts.conversation_key(alice.user["id"], bob.user["id"])
        assert [rotated.unwrap(key, context) for key, context in wrapped if context == talk_context] == [talk_key]
        assert_opens_nothing(Keyring([old_master]), wrapped, settings.media_root)
    finally:
        await db.close()


def _prepare_only(database_url: str, key_file: Path) -> None:
    """`keys rotate --prepare`: step 1 alone, as a rotation that crashed right after it leaves things."""
    code, output = invoke("keys", "rotate", "--prepare", DATABASE_URL=database_url, MASTER_KEY_FILE=str(key_file))
    assert code == 0 and "copy it to every host" in output, output


async def test_a_rotation_rewraps_the_key_of_a_conversation_with_a_send_in_flight(
        server: Server, database_url: str, db: asyncpg.Connection) -> None:
    """A send holds its conversation's key row FOR KEY SHARE until it commits (insert_messages);
    the rotation's batch must still take that row, not skip it until the conversation is quiet."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    assert (await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hi"})).status_code == 201
    pair = (alice.user["id"], bob.user["id"])
    rotation = await asyncpg.connect(database_url)
    try:
        async with db.transaction():  # as the send in flight:
            await db.execute("SELECT 1 FROM conversation_keys WHERE low_user_id = $1 AND high_user_id = $2 "
                             "FOR KEY SHARE", *pair)
            async with rotation.transaction():
                batch = await rotation.fetch(load_queries()["list_conversation_keys_to_rewrap"].sql, "new-id", 500)
    finally:
        await rotation.close()
    assert pair in [(row["low_user_id"], row["high_user_id"]) for row in batch]


async def test_with_another_master_key_serve_refuses_and_that_key_opens_nothing(server: Server, database_url: str,
                                                                                db: asyncpg.Connection,
                                                                                tmp_path: Path) -> None:
    alice = await server.person("alice").register()
    await upload(alice, image_bytes("PNG", (400, 300)), "photo.png")
    other = tmp_path / "other-master-key"
    secretfile.create(other, encode_key(new_master_key()))
    env = {"DATABASE_URL": database_url, "MASTER_KEY_FILE": str(other)}
    code, output = await asyncio.to_thread(invoke, "serve", **env)
    assert code == 1 and "MASTER_KEY_FILE" in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1
    code, output = await asyncio.to_thread(invoke, "serve", **{**env, "MASTER_KEY_FILE": str(tmp_path / "gone")})
    assert code == 1 and "does not exist" in output and not (tmp_path / "gone").exists()
    assert_opens_nothing(Keyring.load(other), await stored_keys(db), server.settings.media_root)
