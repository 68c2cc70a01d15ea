"""Files: upload, store, serve only to those allowed, delete, and collect what is left over.

An upload streams to a temp file (uploads.py), encrypted as it arrives with a
data key of its own, is recognised from its bytes, re-encoded if it is an
image (images.py), moved into place under MEDIA_ROOT as `ab/cd/<id>.<ext>`,
and only then recorded with its data key wrapped by the master key, so a crash
leaves at worst an unreferenced file, which `collect_garbage` removes, and
which nothing can decrypt. Serving is downloads.py's (docs/media.md).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import logging
import os
import secrets
import stat
import string
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import anyio.to_thread
import asyncpg

from secure_link.encryption import aead as crypto
from secure_link.files import images
from secure_link.encryption import datakeys as keys
from secure_link.encryption import sealedfile
from secure_link.files import multipart as uploads
from secure_link.accounts.auth import User
from secure_link.config import Settings
from secure_link.db import Database
from secure_link.errors import AppError, invalid
from secure_link.services import Services

log = logging.getLogger("secure_link.media")

PURPOSES = ("attachment", "avatar")
ORPHAN_AGE_S = 3600           # leftovers of a crash; an upload in progress touches its file far more often
SWEEP_SLICE_S = 10            # the disk sweep covers 1/64 of MEDIA_ROOT per slice of time
_ID_CHARS = string.ascii_letters + string.digits + "-_"


def media_url(file_id: str) -> str:
    """Files are addressed by their random id, never by a path or the user's file name."""
    return f"/media/{file_id}"


def file_json(row: Any, prefix: str = "") -> dict[str, Any] | None:
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


# ---- upload ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Stored:
    """A file in its final place, described as it is served."""

    path: Path
    thumbnail_path: Path | None
    name: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    sha256: str


async def upload(services: Services, user: User, headers: Mapping[str, str], stream: AsyncIterator[bytes],
                 on_avatar: Callable[[], Awaitable[None]] | None = None) -> dict[str, Any]:
    """Receive, check, store and record one upload; the answer describes what will be served.
    `on_avatar` runs once a new avatar is in place: who must hear of it is not media's to know."""
    settings: Settings = services.settings
    await _check_allowance(services, user)
    file_id = secrets.token_urlsafe(16)
    stem = settings.media_root / file_id[:2] / file_id[2:4] / file_id
    key = crypto.new_key()
    received = await uploads.receive(headers, stream, stem.with_name(file_id + ".part"),
                                     settings.max_upload_bytes, key, file_aad(file_id, thumbnail=False))
    try:
        purpose = _checked_purpose(received)
        stored = await _store(services, user, received, stem, purpose, key)
        row, replaced = await _record(services, user, file_id, purpose, stored, key)
    except BaseException:
        _discard(stem)  # not awaited: it must run even when the request is cancelled
        raise
    finally:
        received.path.unlink(missing_ok=True)
    unlink_files(services, replaced)
    if purpose == "avatar" and on_avatar is not None:
        await on_avatar()
    return file_json(row)  # type: ignore[return-value]


async def _check_allowance(services: Services, user: User) -> None:
    """Refuse before reading the body: past the upload rate (429), or the quota already full (413).

    Whether this file fits is known only once it is stored (`_record_attachment`).
    """
    if wait := services.upload_limiter.hit(str(user.id)):
        raise AppError(429, "quota_exceeded", "Too many uploads; try again shortly.", retry_after=wait)
    quota = services.settings.upload_quota_bytes
    if quota > 0 and await services.db.fetchval("pending_upload_bytes", user.id) >= quota:
        raise quota_exceeded(quota)


def quota_exceeded(quota: int) -> AppError:
    """413 for an upload that would take the user's unsent files over UPLOAD_QUOTA_BYTES."""
    return AppError(413, "quota_exceeded", f"Your unsent uploads would be over the quota of {quota} bytes: "
                    "send them, or wait until unsent ones expire.")


def file_aad(file_id: str, thumbnail: bool) -> bytes:
    """What a stored file's segments are bound to: its id and its role, so no file passes for another."""
    return f"file:{file_id}:{'thumbnail' if thumbnail else 'full'}".encode()


def _checked_purpose(received: uploads.Received) -> str:
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


async def _store(services: Services, user: User, received: uploads.Received, stem: Path,
                 purpose: str, key: bytes) -> Stored:
    """Images are re-encoded from pixels; other allowed types are moved into place as received."""
    settings = services.settings
    aad = file_aad(stem.name, thumbnail=False)
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
        return Stored(path, None, uploads.clean_name(received.filename, kind.content_type),
                      kind.content_type, received.size, None, None, received.sha256)
    # One decode per user, then one of the worker's slots: one user cannot hold them all.
    async with services.image_locks.hold(user.id), services.image_slots:
        image = await anyio.to_thread.run_sync(_render_sealed, received.path, key, aad, kind.image,
                                               purpose == "avatar", settings.max_image_pixels)
    path, thumbnail_path = (stem.with_name(stem.name + part + image.extension) for part in ("", ".thumb"))
    digest = await anyio.to_thread.run_sync(_write_renditions, image, path, thumbnail_path, key, stem.name)
    return Stored(path, thumbnail_path, uploads.clean_name(received.filename, image.content_type),
                  image.content_type, len(image.image), image.width, image.height, digest)


def _sniff_sealed(path: Path, key: bytes, aad: bytes) -> uploads.Kind | None:
    with io.BufferedReader(sealedfile.Reader.open(path, key, aad)) as file:
        return uploads.sniff(file)


def _render_sealed(path: Path, key: bytes, aad: bytes, decoder: str, avatar: bool,
                   max_pixels: int) -> images.Rendition:
    with io.BufferedReader(sealedfile.Reader.open(path, key, aad)) as file:
        return images.render(file, decoder, avatar, max_pixels)


def _write_renditions(image: images.Rendition, path: Path, thumbnail_path: Path, key: bytes, file_id: str) -> str:
    """Seal the image and its thumbnail into place; the image's SHA-256 (its ETag)."""
    sealedfile.write_file(path, key, file_aad(file_id, thumbnail=False), image.image)
    sealedfile.write_file(thumbnail_path, key, file_aad(file_id, thumbnail=True), image.thumbnail)
    return hashlib.sha256(image.image).hexdigest()


async def _record(services: Services, user: User, file_id: str, purpose: str,
                  stored: Stored, key: bytes) -> tuple[Any, list[Any]]:
    """Insert the row with the file's data key (wrapped); an avatar also replaces the user's
    previous one (returned, to unlink)."""
    root = services.settings.media_root
    thumbnail = stored.thumbnail_path.relative_to(root).as_posix() if stored.thumbnail_path else None
    args = (file_id, user.id, purpose, stored.path.relative_to(root).as_posix(), thumbnail, stored.name,
            stored.content_type, stored.size, stored.width, stored.height, stored.sha256)

    async def insert(wrapped: bytes, master_key_id: str, conn: asyncpg.Connection) -> Any:
        return await services.db.fetchrow("insert_file", *args, wrapped, master_key_id, conn=conn)

    insert_row = functools.partial(keys.insert_wrapped, services.db, services.keyring, key, keys.file_key_context(file_id), insert)
    if purpose != "avatar":
        return await _record_attachment(services, user, insert_row, stored.size), []
    async with services.db.transaction() as conn:
        row = await insert_row(conn)
        previous = await services.db.fetchval("replace_avatar", user.id, file_id, conn=conn)
        replaced = await delete_files(services, [previous] if previous else [], conn=conn)
    return row, replaced


async def _record_attachment(services: Services, user: User,
                             insert_row: Callable[[asyncpg.Connection], Awaitable[Any]], size: int) -> Any:
    """Insert an attachment's row if the user's unsent uploads stay within the quota.

    Under the user's upload lock, so concurrent uploads cannot all pass the check.
    """
    quota = services.settings.upload_quota_bytes
    async with services.db.transaction() as conn:
        if quota > 0:
            await services.db.execute("lock_user_uploads", user.id, conn=conn)
            if await services.db.fetchval("pending_upload_bytes", user.id, conn=conn) + size > quota:
                raise quota_exceeded(quota)
        return await insert_row(conn)


def _discard(stem: Path) -> None:
    """Remove whatever a failed upload left: its temp file and any output written so far."""
    for path in stem.parent.glob(stem.name + ".*"):
        path.unlink(missing_ok=True)


# ---- deletion and garbage -------------------------------------------------

async def delete_files(services: Any, file_ids: list[str], conn: Any = None) -> list[Any]:
    """Delete file rows (inside the caller's transaction); returns what to unlink after commit."""
    if not file_ids:
        return []
    return await services.db.fetch("delete_files_by_ids", file_ids, conn=conn)


def unlink_files(services: Any, rows: list[Any]) -> None:
    """Remove deleted files from disk; a crash before this leaves unreferenced bytes, never served."""
    _unlink_rows(services.settings.media_root, rows)


async def unlink_doomed(services: Any, paths: list[str]) -> None:
    """Remove files whose rows are gone from disk, then their record in `doomed_files` (erasure.py).

    A file that cannot be unlinked (a directory in its place, no permission) keeps its record
    and is logged; it must not hold back the others, nor fail the logout or sweep that asked:
    its row, and with it the file's data key, is gone already (a file stored before encryption
    at rest has none, and stays as it was until the operator removes it).
    """
    if not paths:
        return
    stuck = await anyio.to_thread.run_sync(_unlink_paths, services.settings.media_root, paths)
    try:
        if stuck:  # first: a record left alone is one the sweeper may take up next round
            await services.db.execute("postpone_doomed_files", stuck)
        await services.db.execute("forget_doomed_files", [path for path in paths if path not in stuck])
    except Exception:  # a record left behind is the sweeper's to finish: it unlinks again, harmlessly
        log.warning("could not update the doomed files' records; the sweeper will", exc_info=True)


def _unlink_paths(root: Path, paths: list[str]) -> list[str]:
    """Unlink each path (one already gone is fine); the ones that could not be, each logged."""
    stuck = []
    for path in paths:
        try:
            (root / path).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not unlink doomed file %s (%s); the sweeper tries again", path, exc)
            stuck.append(path)
    return stuck


def _unlink_rows(root: Path, rows: list[Any]) -> None:
    for row in rows:
        for relative in (row["path"], row["thumbnail_path"]):
            if relative:
                (root / relative).unlink(missing_ok=True)


async def collect_garbage(db: Database, settings: Settings, whole_disk: bool = False) -> dict[str, int]:
    """Drop abandoned uploads older than UPLOAD_GC_AGE, then sweep files no row names.

    Housekeeping calls this every round and sweeps one 64th of MEDIA_ROOT, by
    the clock; `secure-link media gc` sweeps all of it.
    """
    rows = await db.fetch("delete_stale_uploads", float(settings.upload_gc_age))
    await anyio.to_thread.run_sync(_unlink_rows, settings.media_root, rows)
    first = "*" if whole_disk else _ID_CHARS[int(time.time() // SWEEP_SLICE_S) % len(_ID_CHARS)]
    orphans = await _sweep_disk(db, settings.media_root, f"{first}?/??/*")
    return {"uploads": len(rows), "orphans": orphans}


async def _sweep_disk(db: Database, root: Path, pattern: str) -> int:
    """Unlink files under `root` older than ORPHAN_AGE_S that no row names (crash leftovers)."""
    old = await anyio.to_thread.run_sync(_old_files, root, pattern, time.time() - ORPHAN_AGE_S)
    ids = sorted({path.name.split(".", 1)[0] for path in old})
    named: set[str] = set()
    for start in range(0, len(ids), 1000):
        for row in await db.fetch("list_file_paths", ids[start:start + 1000]):
            named.update(relative for relative in (row["path"], row["thumbnail_path"]) if relative)
    orphans = [path for path in old if path.relative_to(root).as_posix() not in named]
    for path in orphans:
        path.unlink(missing_ok=True)
    return len(orphans)


def _old_files(root: Path, pattern: str, cutoff: float) -> list[Path]:
    found = []
    for path in root.glob(pattern):
        try:
            info = path.lstat()
        except FileNotFoundError:  # removed meanwhile, by another worker's sweep
            continue
        if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
            found.append(path)
    return found
