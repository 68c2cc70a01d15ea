"""Sending a stored file: only to those allowed, with safe headers, decrypted as it is sent.

Every refused fetch is the same 404, so a file's existence is never revealed.
A sealed file (uploads.py stores every file so) is decrypted segment by segment,
only those a request's range needs (encryption/sealedfile.py); its ETag, length and
ranges are the plaintext's (docs/media.md).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from collections.abc import Mapping
from urllib.parse import quote

import anyio.to_thread
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response, StreamingResponse

import asyncpg

from secure_link.encryption import contexts, sealedfile
from secure_link.errors import AppError
from secure_link.files.uploads import FileServices

# No copy in any cache: a file cleared by logout or deleted for everyone must not linger on a
# disk. ETags stay, for If-Range (resuming a download) and for clients that keep their own copy.
CACHE_CONTROL = "no-store"
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def not_found() -> AppError:
    """The one answer for a missing file and a file the viewer may not see."""
    return AppError(404, "not_found", "Nothing here.")


async def serve(services: FileServices, viewer_id: int | None, file_id: str, *, thumbnail: bool,
                headers: Mapping[str, str]) -> Response:
    """The file (or its thumbnail), decrypted as it is sent, with safe headers; 304 if unchanged
    (If-None-Match); 206 for one range (Range, If-Range); 404 for everyone else."""
    if viewer_id is None or not _ID.match(file_id):
        raise not_found()
    byte_range = headers.get("range")
    row = await services.db.fetchrow("find_visible_file", file_id, viewer_id)
    relative = None if row is None else row["thumbnail_path"] if thumbnail else row["path"]
    if row is None or relative is None:
        raise not_found()
    answer = _headers(row, thumbnail)
    if _etag_matches(headers.get("if-none-match"), answer["ETag"]):
        return Response(status_code=304, headers=answer)
    if (if_range := headers.get("if-range")) is not None and if_range != answer["ETag"]:
        byte_range = None  # the client's copy is another version: the whole file, as RFC 9110 says
    path = services.settings.media_root / relative
    if row["wrapped_key"] is None:
        return await _serve_as_stored(path, answer, row["content_type"], byte_range)
    key = services.keyring.unwrap(row["wrapped_key"], contexts.file_key(file_id))
    try:
        reader = await anyio.to_thread.run_sync(sealedfile.Reader.open, path, key,
                                                contexts.file_content(file_id, thumbnail))
    except FileNotFoundError:
        raise not_found() from None
    try:
        return await _sealed_response(reader, answer, row["content_type"], byte_range)
    except BaseException:
        reader.close()
        raise


async def _sealed_response(reader: sealedfile.Reader, headers: dict[str, str], content_type: str,
                           byte_range: str | None) -> Response:
    """200 or 206 streaming the plaintext. Its first segment is decrypted before any header is
    sent, so a wrong key or an altered file is a clean error (docs/media.md, "Encryption")."""
    span = _requested_range(byte_range, reader.size)
    start, end = span or (0, reader.size)
    await anyio.to_thread.run_sync(reader.segment, start // reader.segment_size)
    headers = {**headers, "Accept-Ranges": "bytes", "Content-Length": str(end - start)}
    if span:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{reader.size}"
    return StreamingResponse(sealedfile.stream(reader, start, end), status_code=206 if span else 200,
                             headers=headers, media_type=content_type)


async def _serve_as_stored(path: Path, headers: dict[str, str], content_type: str,
                           byte_range: str | None) -> Response:
    """A file stored before encryption at rest (no data key): sent as it is on disk."""
    try:
        found = await anyio.to_thread.run_sync(os.stat, path)
    except FileNotFoundError:
        raise not_found() from None
    _requested_range(byte_range, found.st_size)
    return FileResponse(path, headers=headers, media_type=content_type, stat_result=found)


def _requested_range(byte_range: str | None, size: int) -> tuple[int, int] | None:
    """The one range [start, end) to send, or None for the whole file (no Range, or several).

    Parsed by Starlette's FileResponse parser, so what it accepts is what
    FileResponse served before; its refusals come in the error shape instead of plain text.
    """
    if byte_range is None:
        return None
    try:
        ranges = FileResponse._parse_range_header(byte_range, size)
    except MalformedRangeHeader as exc:
        raise AppError(400, "bad_range", f"The Range header is not understood: {exc.content}") from None
    except RangeNotSatisfiable:
        raise AppError(416, "range_not_satisfiable", "The range starts beyond the end of the file.",
                       extra_headers={"Content-Range": f"bytes */{size}"}) from None
    return ranges[0] if len(ranges) == 1 else None


def _headers(row: asyncpg.Record, thumbnail: bool) -> dict[str, str]:
    """Only re-encoded images are shown inline; anything else is a download, never sniffed."""
    disposition = "inline" if row["content_type"].startswith("image/") else "attachment"
    return {
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(row['name'], safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
        "Cache-Control": CACHE_CONTROL,
        "ETag": f'"{row["sha256"]}{".thumb" if thumbnail else ""}"',
    }


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags
