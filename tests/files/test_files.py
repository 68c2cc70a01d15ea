"""Alice uploads and sends files; Bob sees what she sent him; Carol and strangers see nothing.

Hostile files come out as clean re-encoded images or not at all. Every fixture
file is generated here with Pillow; no binary is committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import string
import struct
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator
from urllib.parse import quote

import asyncpg
import pytest
from click.testing import CliRunner
from PIL import ExifTags, Image

from secure_link import cli
from secure_link.config import ConfigError, Settings

from ..conftest import running_server, settings_for
from ..story import PNG, Server, assert_error, form, image_bytes, upload

MIB = 1024 * 1024


# ---- generated files ------------------------------------------------------

def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose IHDR claims another size (with a correct CRC): bombs and 0x0 images."""
    data = image_bytes("PNG", (4, 4))
    chunk = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


def animated_gif() -> bytes:
    frames = [Image.new("P", (40, 30), index) for index in (1, 2, 3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def jpeg_with_secrets() -> bytes:
    """A 60x40 photo taken sideways (EXIF orientation 6), with GPS and a comment."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (48.0, 51.0, 24.0)}
    return image_bytes("JPEG", (60, 40), exif=exif, comment=b"secret-comment")


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.html", "<script>alert(1)</script>")
    return buffer.getvalue()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


async def stored_row(db: asyncpg.Connection, file_id: str) -> asyncpg.Record:
    return await db.fetchrow("SELECT * FROM files WHERE id = $1", file_id)


# ---- hostile uploads ------------------------------------------------------

HOSTILE = [
    # (request, status, expected: (code, field) for a refusal, File fields for a success)
    pytest.param(form(PNG[:16] + b"<html><script>alert(1)</script></html>", "a.png"), 422, ("invalid_image", "file"), id="png-header-then-html"),
    pytest.param(form(SVG, "logo.svg"), 415, ("unsupported_file_type", "file"), id="svg-with-script"),
    pytest.param(form(b"  <!doctype html><script>alert(1)</script>", "page.txt"), 415, ("unsupported_file_type", "file"), id="html-as-text"),
    pytest.param(form(image_bytes("JPEG") + zip_bytes(), "photo.jpg"), 201, {"content_type": "image/jpeg", "name": "photo.jpg"}, id="jpeg-then-zip"),
    pytest.param(form(b"GIF89a/*\x00\x00\x00\x00*/=alert(1);", "x.gif"), 422, ("invalid_image", "file"), id="gif-js-polyglot"),
    pytest.param(form(image_bytes("GIF") + b"*/=alert(1);", "x.gif"), 201, {"content_type": "image/png", "name": "x.gif.png"}, id="gif-then-js"),
    pytest.param(form(PNG[: len(PNG) // 2]), 422, ("invalid_image", "file"), id="truncated-png"),
    pytest.param(form(image_bytes("JPEG", (400, 300))[:600]), 422, ("invalid_image", "file"), id="truncated-jpeg"),
    pytest.param(form(png_claiming(100_000, 100_000)), 422, ("image_too_large", "file"), id="decompression-bomb"),
    pytest.param(form(png_claiming(7000, 7000)), 422, ("image_too_large", "file"), id="over-max-image-pixels"),
    pytest.param(form(png_claiming(0, 0)), 422, ("invalid_image", "file"), id="zero-by-zero"),
    pytest.param(form(b""), 422, ("empty_file", "file"), id="zero-bytes"),
    pytest.param(form(animated_gif(), "cat.gif"), 201, {"content_type": "image/png", "width": 40, "height": 30}, id="animated-gif"),
    pytest.param(form(b"MZ\x90\x00\x03\x00\x00\x00PE\x00\x00", "setup.exe"), 415, ("unsupported_file_type", "file"), id="executable"),
    pytest.param(form("caf\xe9 cr\xe8me".encode("latin-1"), "menu.txt"), 415, ("unsupported_file_type", "file"), id="latin-1-text"),
    pytest.param(form(b"red \x1b[31malert\x1b[0m", "log.txt"), 415, ("unsupported_file_type", "file"), id="terminal-escapes"),
    pytest.param(form(b"root:x:0:0\n", "../../etc/passwd"), 201, {"name": "passwd.txt", "content_type": "text/plain"}, id="path-traversal-name"),
    pytest.param(form(b"hello\n", "con.txt"), 201, {"name": "_con.txt"}, id="windows-device-name"),
    pytest.param(form(b"hello\n", "a" * 300 + ".txt"), 201, {"name": "a" * 251 + ".txt"}, id="300-char-name"),
    pytest.param(form(PNG, "evil\u202egnp.exe"), 201, {"name": "evilgnp.exe.png", "content_type": "image/png"}, id="rtl-override-name"),
    pytest.param(form(b"hi <b>there</b>\n", "evil.html"), 201, {"name": "evil.html.txt", "content_type": "text/plain"}, id="html-name-on-text"),
    pytest.param(form(None), 422, ("invalid_input", "file"), id="missing-file-field"),
    pytest.param(form(b"hello\n", purpose="banner"), 422, ("invalid_input", "purpose"), id="wrong-purpose"),
    pytest.param(form(PDF, "me.pdf", purpose="avatar"), 415, ("unsupported_file_type", "file"), id="pdf-as-avatar"),
    pytest.param({"json": {"file": "aGVsbG8="}}, 415, ("unsupported_media_type", None), id="not-multipart"),
    pytest.param({"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, 422, ("invalid_input", "file"), id="truncated-multipart"),
]


@pytest.mark.parametrize(("request_kwargs", "status", "expected"), HOSTILE)
async def test_hostile_uploads_are_refused_or_come_out_clean(server: Server, db: asyncpg.Connection, request_kwargs: dict[str, Any],
                                                             status: int, expected: Any) -> None:
    alice = await server.person("alice").register()
    before = files_under(server.settings.media_root)
    response = await alice.api("POST", "/api/upload-file/", **request_kwargs)
    if status != 201:
        assert_error(response, status, *expected)
        assert files_under(server.settings.media_root) == before  # nothing partial left behind
        return
    assert response.status_code == 201, response.text
    file = response.json()["file"]
    assert file.items() >= expected.items()
    served = await alice.api("GET", file["url"])
    assert served.status_code == 200
    row = await stored_row(db, file["id"])
    assert re.fullmatch(rf"{file['id'][:2]}/{file['id'][2:4]}/{re.escape(file['id'])}\.[a-z]+", row["path"])
    assert hashlib.sha256(served.content).hexdigest() == row["sha256"] and len(served.content) == file["size"]
    if file["content_type"].startswith("image/"):
        assert_clean_image(served.content)


def assert_clean_image(served: bytes) -> None:
    """A fresh single-frame image: nothing appended to the upload survives, nor any EXIF."""
    assert b"PK\x03\x04" not in served and b"alert(1)" not in served
    with Image.open(io.BytesIO(served)) as image:
        image.load()
        assert getattr(image, "n_frames", 1) == 1
        assert not image.getexif()


async def test_uploading_needs_a_session(server: Server) -> None:
    async with server.client() as http:
        assert_error(await http.post("/api/upload-file/", **form(PNG)), 401, "unauthenticated")


async def test_photos_lose_gps_and_comments_and_stand_upright(server: Server) -> None:
    alice = await server.person("alice").register()
    photo = jpeg_with_secrets()
    with Image.open(io.BytesIO(photo)) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the upload really carries GPS
    file = await upload(alice, photo, "holiday.jpg")
    assert (file["width"], file["height"]) == (40, 60)
    served = (await alice.api("GET", file["url"])).content
    assert b"secret-comment" not in served and b"GPS" not in served
    with Image.open(io.BytesIO(served)) as image:
        assert image.size == (40, 60) and not image.getexif() and "comment" not in image.info


async def test_concurrent_uploads_all_land_with_distinct_ids(server: Server, db: asyncpg.Connection) -> None:
    alice = await server.person("alice").register()
    files = await asyncio.gather(*(upload(alice, image_bytes(size=(50 + n, 40))) for n in range(8)))
    assert len({file["id"] for file in files}) == 8
    assert [file["width"] for file in files] == [50 + n for n in range(8)]
    paths = await db.fetch("SELECT path FROM files WHERE id = ANY($1::text[])", [file["id"] for file in files])
    assert all((server.settings.media_root / row["path"]).is_file() for row in paths)


# ---- limits ---------------------------------------------------------------

async def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(database_url: str, tmp_path: Path) -> None:
    settings = settings_for(database_url, tmp_path / "media", max_upload_bytes=MIB)
    head, tail = form(b"\x00").get("content").split(b"\x00", 1)  # type: ignore[union-attr]
    headers = form(b"").get("headers")

    async def three_mib() -> AsyncIterator[bytes]:
        yield head
        for _ in range(48):
            yield b"\x00" * 65536
        yield tail

    async with running_server(settings) as small:
        alice = await small.person("alice").register()
        streamed = await alice.api("POST", "/api/upload-file/", content=three_mib(), headers=headers)
        declared = await alice.api("POST", "/api/upload-file/", content=b"\x00" * (MIB + 100_000), headers=headers)
        fits = await alice.api("POST", "/api/upload-file/", **form(b"x" * (MIB - 10), "fits.txt"))
        assert files_under(settings.media_root) == {settings.media_root / (await small_path(small, fits))}
    assert "content-length" not in streamed.request.headers
    assert_error(streamed, 413, "too_large")
    assert_error(declared, 413, "too_large")


async def small_path(server: Server, response: Any) -> str:
    assert response.status_code == 201, response.text
    file_id = response.json()["file"]["id"]
    connection = await asyncpg.connect(server.settings.database_url)
    try:
        return await connection.fetchval("SELECT path FROM files WHERE id = $1", file_id)
    finally:
        await connection.close()


async def test_types_outside_the_allow_list_are_refused(database_url: str, media_root: Path) -> None:
    settings = settings_for(database_url, media_root, allowed_upload_types=("image/png", "text/plain"))
    async with running_server(settings) as strict:
        alice = await strict.person("alice").register()
        refused = [await alice.api("POST", "/api/upload-file/", **form(content)) for content in (PDF, zip_bytes(), image_bytes("JPEG"))]
        allowed = await alice.api("POST", "/api/upload-file/", **form(PNG))
    for response in refused:
        assert_error(response, 415, "unsupported_file_type", "file")
    assert allowed.status_code == 201


# ---- who sees what --------------------------------------------------------

async def test_alice_sends_bob_files_and_only_they_can_fetch_them(server: Server, db: asyncpg.Connection) -> None:
    alice, bob, carol = [await server.person(name).register() for name in ("alice", "bob", "carol")]
    minutes = await upload(alice, PDF, "minutes.pdf")
    assert (await alice.api("GET", minutes["url"])).status_code == 200
    assert_error(await bob.api("GET", minutes["url"]), 404, "not_found")  # not sent yet

    sent = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "minutes", "attachment": minutes["id"]})
    assert sent.status_code == 201 and sent.json()["attachment"] == minutes
    assert (await bob.api("GET", minutes["url"])).content == PDF
    nowhere = await carol.api("GET", "/media/" + "A" * 22)
    assert_error(nowhere, 404, "not_found")
    assert (await carol.api("GET", minutes["url"])).json() == nowhere.json()
    async with server.client() as anonymous:
        assert (await anonymous.get(minutes["url"])).json() == nowhere.json()

    to_carol = await alice.api("POST", "/api/send-message/", json={"to": carol.username, "message": "fwd", "attachment": minutes["id"]})
    assert_error(to_carol, 422, "invalid_attachment", "attachment")
    stolen = await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "mine", "attachment": minutes["id"]})
    assert_error(stolen, 422, "invalid_attachment", "attachment")
    assert_error(await carol.api("GET", minutes["url"]), 404, "not_found")

    photo = await upload(alice, PNG, "photo.png")
    alice_socket, bob_socket = await alice.connect(), await bob.connect()
    await alice_socket.send({"type": "chat", "to": bob.username, "message": "", "attachment": photo["id"]})
    assert (await alice_socket.expect("ack"))["message"]["attachment"] == photo
    assert (await bob_socket.expect("chat"))["message"]["attachment"] == photo
    assert (await bob.api("GET", photo["thumbnail_url"])).status_code == 200

    paths = [path for row in await db.fetch("SELECT path, thumbnail_path FROM files WHERE id = ANY($1::text[])", [minutes["id"], photo["id"]])
             for path in (row["path"], row["thumbnail_path"]) if path]
    assert len(paths) == 3 and all((server.settings.media_root / path).exists() for path in paths)
    logout = await alice.api("POST", "/api/logout/")
    assert logout.json()["cleared"]["files"] == 2
    assert not any((server.settings.media_root / path).exists() for path in paths)
    for url in (minutes["url"], photo["url"], photo["thumbnail_url"]):
        assert_error(await bob.api("GET", url), 404, "not_found")
    await alice.close_sockets()
    await bob.close_sockets()


async def test_an_avatar_is_square_seen_by_users_and_replaced(server: Server, db: asyncpg.Connection) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    first = await upload(alice, image_bytes("PNG", (900, 600)), "me.png", purpose="avatar")
    assert (first["width"], first["height"]) == (512, 512)
    profile = (await alice.api("GET", "/api/user-profile/")).json()["user"]
    assert profile["avatar_url"] == first["url"]
    socket = await alice.connect(ready=False)  # a socket opened now says who she is, avatar and all
    assert (await socket.expect("ready"))["user"] == profile
    seen = await bob.api("GET", first["url"])
    with Image.open(io.BytesIO(seen.content)) as image:
        assert image.size == (512, 512)
    async with server.client() as anonymous:
        assert_error(await anonymous.get(first["url"]), 404, "not_found")
    first_row = await stored_row(db, first["id"])

    second = await upload(alice, image_bytes("JPEG", (300, 200)), "me.jpg", purpose="avatar")
    assert (second["width"], second["height"], second["content_type"]) == (200, 200, "image/jpeg")
    assert (await alice.api("GET", "/api/user-profile/")).json()["user"]["avatar_url"] == second["url"]
    assert await stored_row(db, first["id"]) is None
    assert not (server.settings.media_root / first_row["path"]).exists()
    assert not (server.settings.media_root / first_row["thumbnail_path"]).exists()
    assert_error(await bob.api("GET", first["url"]), 404, "not_found")
    assert (await bob.api("GET", second["url"])).status_code == 200


async def test_concurrent_avatar_uploads_replace_in_turn(server: Server, db: asyncpg.Connection) -> None:
    """Found in review: two uploads' locks on the user row used to deadlock (a 500)."""
    alice = await server.person("alice").register()
    files = await asyncio.gather(*(upload(alice, image_bytes("PNG", (60 + n, 60)), purpose="avatar") for n in range(8)))
    worn = await db.fetchval("SELECT avatar_file_id FROM users WHERE username = $1", alice.username)
    assert worn in {f["id"] for f in files}
    assert await db.fetchval("SELECT count(*) FROM files f JOIN users u ON u.id = f.owner_id "
                             "WHERE u.username = $1 AND f.purpose = 'avatar'", alice.username) == 1


# ---- how files are served -------------------------------------------------

@pytest.mark.parametrize(("content", "name", "content_type"), [
    (PDF, "minutes.pdf", "application/pdf"),
    ("naïve notes\n".encode(), "naïve notes.txt", "text/plain; charset=utf-8"),
    (zip_bytes(), "archive.zip", "application/zip"),
], ids=["pdf", "text", "zip"])  # the zip's bytes hold the time: xdist workers must collect one id
async def test_anything_but_an_image_is_a_download_never_sniffed(server: Server, content: bytes, name: str, content_type: str) -> None:
    alice = await server.person("alice").register()
    file = await upload(alice, content, name)
    assert file["thumbnail_url"] is None and file["width"] is None
    response = await alice.api("GET", file["url"])
    assert response.content == content
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"] == f"attachment; filename*=UTF-8''{quote(name, safe='')}"
    assert response.headers["cache-control"] == "no-store"
    assert_error(await alice.api("GET", file["url"] + "/thumbnail"), 404, "not_found")


async def test_images_are_inline_with_etag_ranges_and_a_thumbnail(server: Server, db: asyncpg.Connection) -> None:
    alice = await server.person("alice").register()
    file = await upload(alice, image_bytes("PNG", (1000, 500)), "wide.png")
    full = await alice.api("GET", file["url"])
    assert full.headers["content-disposition"] == "inline; filename*=UTF-8''wide.png"
    assert full.headers["x-content-type-options"] == "nosniff"
    assert full.headers["etag"] == f'"{(await stored_row(db, file["id"]))["sha256"]}"'

    unchanged = await alice.api("GET", file["url"], headers={"If-None-Match": full.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""
    weak = await alice.api("GET", file["url"], headers={"If-None-Match": f'"other", W/{full.headers["etag"]}'})
    assert weak.status_code == 304  # a cache may send our tag weakened, among others (RFC 9110 13.1.2)
    first = await alice.api("GET", file["url"], headers={"If-None-Match": f'{full.headers["etag"]},"other"'})
    assert first.status_code == 304  # a list is split on commas, spaces or not
    assert (await alice.api("GET", file["url"], headers={"If-None-Match": "*"})).status_code == 304
    assert (await alice.api("GET", file["url"], headers={"If-None-Match": '"other"'})).status_code == 200
    part = await alice.api("GET", file["url"], headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and part.content == full.content[:10]
    assert part.headers["content-range"] == f"bytes 0-9/{file['size']}"
    beyond = await alice.api("GET", file["url"], headers={"Range": f"bytes={file['size']}-"})
    assert_error(beyond, 416, "range_not_satisfiable")
    assert beyond.headers["content-range"] == f"bytes */{file['size']}"
    assert_error(await alice.api("GET", file["url"], headers={"Range": "lines=1-2"}), 400, "bad_range")

    thumbnail = await alice.api("GET", file["thumbnail_url"])
    assert thumbnail.headers["etag"] != full.headers["etag"]
    with Image.open(io.BytesIO(thumbnail.content)) as image:
        assert image.size == (320, 160)


def test_an_accel_prefix_is_refused_since_nginx_cannot_decrypt() -> None:
    """nginx would send the stored bytes, which are ciphertext: the setting is refused at start."""
    with pytest.raises(ConfigError, match="MEDIA_ACCEL_PREFIX .* encrypted at rest"):
        Settings.from_env({"MEDIA_ACCEL_PREFIX": "/_protected_media/"})


# ---- garbage --------------------------------------------------------------

FILE_ID_ALPHABET = string.ascii_letters + string.digits + "-_"  # secrets.token_urlsafe's


async def test_housekeeping_sweeps_one_slice_of_the_disk_at_a_time(database_url: str, tmp_path: Path) -> None:
    """Each round sweeps the 64th of MEDIA_ROOT whose first character the clock picks (a slice
    lasts SWEEP_SLICE_S), so a large disk is never walked whole by one round. With a crash
    leftover aged in every slice, one goes within a round or two, and a second later at most
    two slices have been swept."""
    root = tmp_path / "media"
    leftovers = [root / f"{first}z" / "zz" / f"{first}zzzcrashed.part" for first in FILE_ID_ALPHABET]
    for path in leftovers:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"partial")
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    async with running_server(settings_for(database_url, root, housekeeping_interval=0.2)):
        for _ in range(100):
            if not all(path.exists() for path in leftovers):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        remaining = sum(path.exists() for path in leftovers)
    assert len(leftovers) - 2 <= remaining < len(leftovers)


async def test_the_disk_sweep_asks_about_every_batch_of_a_thousand_names(own_database: str, tmp_path: Path) -> None:
    """The sweep asks the database about old files' ids a thousand at a time: all 2,500 live
    files are kept, past the first batch and at each batch's edge, and only the leftover goes."""
    live = [f"bulk{n:05}" for n in range(2500)]
    db = await asyncpg.connect(own_database)
    try:
        owner = await db.fetchval("INSERT INTO users (username, display_name, phrase_hash) "
                                  "VALUES ('bulk', 'Bulk', '') RETURNING id")
        await db.execute("INSERT INTO files (id, owner_id, purpose, path, name, content_type, size, sha256) "
                         "SELECT id, $1, 'attachment', 'bu/lk/' || id || '.txt', 'f.txt', 'text/plain', 1, '' "
                         "FROM unnest($2::text[]) AS id", owner, live)
    finally:
        await db.close()
    root = tmp_path / "media"
    (root / "bu" / "lk").mkdir(parents=True)
    paths = [root / "bu" / "lk" / f"{file_id}.txt" for file_id in [*live, "bulkleftover"]]
    for path in paths:
        path.write_bytes(b"x")
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    env = {"DATABASE_URL": own_database, "MEDIA_ROOT": str(root), "UPLOAD_GC_AGE": "86400"}
    result = await asyncio.to_thread(CliRunner().invoke, cli.main, ["media", "gc"], env=env)
    assert result.exit_code == 0, result.output
    assert [path.name for path in paths if not path.exists()] == ["bulkleftover.txt"]


async def test_the_disk_sweep_goes_on_past_a_leftover_already_gone(database_url: str, tmp_path: Path) -> None:
    """Two workers sweeping one disk can both list a leftover; the second to unlink it finds it
    gone and must go on. The race is made certain here: a second name for its directory lists
    the leftover twice, so the sweep itself is the other worker."""
    root = tmp_path / "media"
    leftover = root / "ab" / "cd" / "abcdcrashed.part"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"partial")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    (root / "ef").symlink_to(root / "ab", target_is_directory=True)
    env = {"DATABASE_URL": database_url, "MEDIA_ROOT": str(root), "UPLOAD_GC_AGE": "86400"}
    result = await asyncio.to_thread(CliRunner().invoke, cli.main, ["media", "gc"], env=env)
    assert result.exit_code == 0, result.output
    assert not leftover.exists()


async def test_media_gc_removes_stale_uploads_and_crash_leftovers(server: Server, db: asyncpg.Connection, database_url: str,
                                                                  media_root: Path) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    stale, vanished, fresh = [await upload(alice, f"{label}\n".encode(), f"{label}.txt")
                              for label in ("stale", "vanished", "fresh")]
    sent = await upload(alice, image_bytes(), "sent.png")  # an image: its thumbnail is a second file
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "old", "attachment": sent["id"]})
    await db.execute("UPDATE files SET created_at = now() - interval '2 days' WHERE id = ANY($1::text[])",
                     [stale["id"], vanished["id"], sent["id"]])
    stale_path = media_root / (await stored_row(db, stale["id"]))["path"]
    (media_root / (await stored_row(db, vanished["id"]))["path"]).unlink()  # its row stays: dropped all the same
    leftover, recent = media_root / "zz" / "zz" / "zzzzcrashed.part", media_root / "zz" / "zy" / "zzzyinflight.part"
    for path in (leftover, recent):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    sent_row = await stored_row(db, sent["id"])
    sent_paths = [media_root / sent_row["path"], media_root / sent_row["thumbnail_path"]]
    for old in (leftover, *sent_paths):  # all older than the sweep's hour: only the row decides
        os.utime(old, (time.time() - 7200, time.time() - 7200))

    env = {"DATABASE_URL": database_url, "MEDIA_ROOT": str(media_root), "UPLOAD_GC_AGE": "86400"}
    result = await asyncio.to_thread(CliRunner().invoke, cli.main, ["media", "gc"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("removed ")  # housekeeping may have collected some first
    assert await stored_row(db, stale["id"]) is None and not stale_path.exists()
    assert await stored_row(db, vanished["id"]) is None
    assert not leftover.exists() and recent.exists()
    assert (media_root / (await stored_row(db, fresh["id"]))["path"]).exists()
    assert all(path.exists() for path in sent_paths)
    for url in (sent["url"], sent["thumbnail_url"]):
        assert (await bob.api("GET", url)).status_code == 200
