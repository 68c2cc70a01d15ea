"""Files going away: rows deleted with what asked for it, files unlinked after, leftovers swept.

A file's row goes in the transaction that removes what held it (a message
deleted or expired, a conversation cleared, an avatar replaced); its path is
recorded in `doomed_files` in that same commit, and the record goes only once
the file is gone from disk (`unlink_doomed`): a process killed in between
leaves the record, and a later sweep (chat/erasure.py, on any worker) unlinks
the file. Uploads never sent, and files no row names, are collected by
housekeeping (`collect_garbage`).
"""

from __future__ import annotations

import logging
import stat
import string
import time
from pathlib import Path
from collections.abc import Sequence

import anyio.to_thread
import asyncpg

from secure_link.config import Settings
from secure_link.db import Conn, Database, Row

log = logging.getLogger("secure_link.media")  # the operator's word for files: MEDIA_ROOT

ORPHAN_AGE_S = 3600           # leftovers of a crash; an upload in progress touches its file far more often
SWEEP_SLICE_S = 10            # the disk sweep covers 1/64 of MEDIA_ROOT per slice of time
_ID_CHARS = string.ascii_letters + string.digits + "-_"


async def delete_files(db: Database, file_ids: list[str],
                       conn: Conn | None = None) -> list[asyncpg.Record]:
    """Delete file rows (inside the caller's transaction); returns what to unlink after commit."""
    if not file_ids:
        return []
    return await db.fetch("delete_files_by_ids", file_ids, conn=conn)


def unlink_files(media_root: Path, rows: list[asyncpg.Record]) -> None:
    """Remove deleted files from disk; a crash before this leaves unreferenced bytes, never served."""
    _unlink_rows(media_root, rows)


async def unlink_doomed(db: Database, media_root: Path, paths: list[str]) -> None:
    """Remove files whose rows are gone from disk, then their record in `doomed_files`.

    A file that cannot be unlinked (a directory in its place, no permission) keeps its record
    and is logged; it must not hold back the others, nor fail the logout or sweep that asked:
    its row, and with it the file's data key, is gone already (a file stored before encryption
    at rest has none, and stays as it was until the operator removes it).
    """
    if not paths:
        return
    stuck = await anyio.to_thread.run_sync(_unlink_paths, media_root, paths)
    try:
        if stuck:  # first: a record left alone is one the sweeper may take up next round
            await db.execute("postpone_doomed_files", stuck)
        await db.execute("forget_doomed_files", [path for path in paths if path not in stuck])
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


def _unlink_rows(root: Path, rows: Sequence[Row]) -> None:
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
