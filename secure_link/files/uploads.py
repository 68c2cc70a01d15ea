"""The upload flow: receive a file, check it, store it sealed, record it; and the File it becomes.

An upload streams to a temp file (multipart.py), encrypted as it arrives with a
data key of its own, is recognised from its bytes, re-encoded if it is an
image (images.py), moved into place under MEDIA_ROOT as `ab/cd/<id>.<ext>`,
and only then recorded with its data key wrapped by the master key, so a crash
leaves at worst an unreferenced file, which cleanup.py removes, and which
nothing can decrypt. Serving is downloads.py's (docs/media.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import io
import os
import secrets
from pathlib import Path
from typing import Protocol
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import anyio.to_thread
import asyncpg

from secure_link.config import Settings
from secure_link.db import Conn, Database, Row
from secure_link.encryption import Keyring, aead, contexts, insert_wrapped, sealedfile
from secure_link.errors import AppError, invalid
from secure_link.files import images, multipart
from secure_link.files.cleanup import delete_files, unlink_files
from secure_link.ratelimit import KeyedLocks, SlidingWindow
from secure_link.wire import JsonObject

PURPOSES = ("attachment", "avatar")


class FileServices(Protocol):
    """What files need of the process (app.py's `Services` has it all)."""

    settings: Settings
    db: Database
    keyring: Keyring
    upload_limiter: SlidingWindow
    image_locks: KeyedLocks  # one decode per user
    image_slots: asyncio.Semaphore  # decodes at once in this worker


def media_url(file_id: str) -> str:
    """Files are addressed by their random id, never by a path or the user's file name."""
    return f"/media/{file_id}"


def file_json(row: Row, prefix: str = "") -> JsonObject | None:
    """The contract's File object from a row (columns optionally prefixed, e.g. `file_`)."""
    file_id = row[prefix + "id"]
    if file_id is None:
        return None
    return {
        "id": file_id,
        "url": media_url(file_id),
        "name": row[prefix + "name"],
        "content_type": row[prefix + "content_type"],
        "size": row[prefix + "size"],
        "width": row[prefix + "width"],
        "height": row[prefix + "height"],
        "thumbnail_url": media_url(file_id) + "/thumbnail" if row[prefix + "thumbnail_path"] else None,
    }


@dataclasses.dataclass(frozen=True)
class StoredFile:
    """A file in its final place, described as it is served."""

    path: Path
    thumbnail_path: Path | None
    name: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    sha256: str


async def upload(services: FileServices, user_id: int, headers: Mapping[str, str], stream: AsyncIterator[bytes],
                 on_avatar: Callable[[], Awaitable[None]] | None = None) -> JsonObject:
    """Receive, check, store and record one upload; the answer describes what will be served.
    `on_avatar` runs once a new avatar is in place: who must hear of it is not files' to know."""
    settings = services.settings
    await _check_allowance(services, user_id)
    file_id = secrets.token_urlsafe(16)
    stem = settings.media_root / file_id[:2] / file_id[2:4] / file_id
    key = aead.new_key()
    received = await multipart.receive(headers, stream, stem.with_name(file_id + ".part"),
                                       settings.max_upload_bytes, key, contexts.file_content(file_id, thumbnail=False))
    try:
        purpose = _checked_purpose(received)
        stored = await _store(services, user_id, received, stem, purpose, key)
        row, replaced = await _record(services, user_id, file_id, purpose, stored, key)
    except BaseException:
        _discard(stem)  # not awaited: it must run even when the request is cancelled
        raise
    finally:
        received.path.unlink(missing_ok=True)
    unlink_files(settings.media_root, replaced)
    if purpose == "avatar" and on_avatar is not None:
        await on_avatar()
    answer = file_json(row)
    assert answer is not None  # the row just inserted has an id
    return answer


async def _check_allowance(services: FileServices, user_id: int) -> None:
    """Refuse before reading the body: past the upload rate (429), or the quota already full (413).

    Whether this file fits is known only once it is stored (`_record_attachment`).
    """
    if wait := services.upload_limiter.hit(str(user_id)):
        raise AppError(429, "quota_exceeded", "Too many uploads; try again shortly.", retry_after=wait)
    quota = services.settings.upload_quota_bytes
    if quota > 0 and await services.db.fetchval("pending_upload_bytes", user_id) >= quota:
        raise quota_exceeded(quota)


def quota_exceeded(quota: int) -> AppError:
    """413 for an upload that would take the user's unsent files over UPLOAD_QUOTA_BYTES."""
    return AppError(413, "quota_exceeded", f"Your unsent uploads would be over the quota of {quota} bytes: "
                    "send them, or wait until unsent ones expire.")


def _checked_purpose(received: multipart.Received) -> str:
    """422 naming every bad field, then 422 `empty_file`."""
    fields: dict[str, str] = {}
    purpose = received.fields.get("purpose", "attachment")
    if not received.has_file:
        fields["file"] = "is required"
    if purpose not in PURPOSES:
        fields["purpose"] = "must be attachment or avatar"
    if fields:
        raise invalid(fields)
    if received.size == 0:
        raise AppError(422, "empty_file", "The file is empty.", fields={"file": "is empty"})
    return purpose


async def _store(services: FileServices, user_id: int, received: multipart.Received, stem: Path,
                 purpose: str, key: bytes) -> StoredFile:
    """Images are re-encoded from pixels; other allowed types are moved into place as received."""
    settings = services.settings
    aad = contexts.file_content(stem.name, thumbnail=False)
    kind = await anyio.to_thread.run_sync(_sniff_sealed, received.path, key, aad)
    if kind is None or kind.content_type not in settings.allowed_upload_types:
        raise AppError(415, "unsupported_file_type", "This type of file is not accepted.",
                       fields={"file": "is not an allowed type"})
    if kind.image is None:
        if purpose == "avatar":
            raise AppError(415, "unsupported_file_type", "An avatar must be a PNG, JPEG, GIF or WebP image.",
                           fields={"file": "is not an image"})
        path = stem.with_name(stem.name + kind.extensions[0])
        await anyio.to_thread.run_sync(os.replace, received.path, path)
        return StoredFile(path, None, multipart.clean_name(received.filename, kind.content_type),
                          kind.content_type, received.size, None, None, received.sha256)
    # One decode per user, then one of the worker's slots: one user cannot hold them all.
    async with services.image_locks.hold(user_id), services.image_slots:
        image = await anyio.to_thread.run_sync(_render_sealed, received.path, key, aad, kind.image,
                                               purpose == "avatar", settings.max_image_pixels)
    path, thumbnail_path = (stem.with_name(stem.name + part + image.extension) for part in ("", ".thumb"))
    digest = await anyio.to_thread.run_sync(_write_renditions, image, path, thumbnail_path, key, stem.name)
    return StoredFile(path, thumbnail_path, multipart.clean_name(received.filename, image.content_type),
                      image.content_type, len(image.image), image.width, image.height, digest)


def _sniff_sealed(path: Path, key: bytes, aad: bytes) -> multipart.Kind | None:
    with io.BufferedReader(sealedfile.Reader.open(path, key, aad)) as file:
        return multipart.sniff(file)


def _render_sealed(path: Path, key: bytes, aad: bytes, decoder: str, avatar: bool,
                   max_pixels: int) -> images.Rendition:
    with io.BufferedReader(sealedfile.Reader.open(path, key, aad)) as file:
        return images.render(file, decoder, avatar, max_pixels)


def _write_renditions(image: images.Rendition, path: Path, thumbnail_path: Path, key: bytes, file_id: str) -> str:
    """Seal the image and its thumbnail into place; the image's SHA-256 (its ETag)."""
    sealedfile.write_file(path, key, contexts.file_content(file_id, thumbnail=False), image.image)
    sealedfile.write_file(thumbnail_path, key, contexts.file_content(file_id, thumbnail=True), image.thumbnail)
    return hashlib.sha256(image.image).hexdigest()


InsertRow = Callable[[Conn], Awaitable[asyncpg.Record]]


async def _record(services: FileServices, user_id: int, file_id: str, purpose: str,
                  stored: StoredFile, key: bytes) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """Insert the row with the file's data key (wrapped); an avatar also replaces the user's
    previous one (returned, to unlink)."""
    root = services.settings.media_root
    thumbnail = stored.thumbnail_path.relative_to(root).as_posix() if stored.thumbnail_path else None
    args = (file_id, user_id, purpose, stored.path.relative_to(root).as_posix(), thumbnail, stored.name,
            stored.content_type, stored.size, stored.width, stored.height, stored.sha256)

    async def insert(wrapped: bytes, master_key_id: str, conn: Conn) -> asyncpg.Record:
        row = await services.db.fetchrow("insert_file", *args, wrapped, master_key_id, conn=conn)
        assert row is not None  # an INSERT … RETURNING
        return row

    insert_row: InsertRow = functools.partial(insert_wrapped, services.db, services.keyring, key,
                                              contexts.file_key(file_id), insert)
    if purpose != "avatar":
        return await _record_attachment(services, user_id, insert_row, stored.size), []
    async with services.db.transaction() as conn:
        row = await insert_row(conn)
        previous = await services.db.fetchval("replace_avatar", user_id, file_id, conn=conn)
        replaced = await delete_files(services.db, [previous] if previous else [], conn=conn)
    return row, replaced


async def _record_attachment(services: FileServices, user_id: int, insert_row: InsertRow,
                             size: int) -> asyncpg.Record:
    """Insert an attachment's row if the user's unsent uploads stay within the quota.

    Under the user's upload lock, so concurrent uploads cannot all pass the check.
    """
    quota = services.settings.upload_quota_bytes
    async with services.db.transaction() as conn:
        if quota > 0:
            await services.db.execute("lock_user_uploads", user_id, conn=conn)
            if await services.db.fetchval("pending_upload_bytes", user_id, conn=conn) + size > quota:
                raise quota_exceeded(quota)
        return await insert_row(conn)


def _discard(stem: Path) -> None:
    """Remove whatever a failed upload left: its temp file and any output written so far."""
    for path in stem.parent.glob(stem.name + ".*"):
        path.unlink(missing_ok=True)
