"""`secure-link audit`: what a deployment still holds that it promised to erase.

Read-only: it reports and never fixes, so an operator can see what went wrong
(the sweeper and housekeeping fix these in their own rounds). Run against a
running deployment; findings younger than their grace period are in flight,
not leftovers.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from secure_link.config import Settings
from secure_link.db import Database

EXPIRY_GRACE_S = 5.0      # the contract: rows and files gone within 5 s of expires_at
IN_FLIGHT_GRACE_S = 3600  # a file on disk without a row younger than this may be an upload under way


@dataclasses.dataclass(frozen=True)
class Finding:
    """One kind of leftover, and the examples of it."""

    what: str
    items: list[str]


async def audit(db: Database, settings: Settings) -> list[Finding]:
    """Every kind of leftover found; an empty list means none."""
    findings = [
        Finding("messages past their expiry, still stored",
                [f"message {row['id']} (expired {row['expires_at'].isoformat()})"
                 for row in await db.fetch("audit_expired_messages", EXPIRY_GRACE_S)]),
        *await _files(db, settings.media_root),
        Finding("conversation keys of conversations that no longer exist",
                [f"users {row['low_user_id']} and {row['high_user_id']}"
                 for row in await db.fetch("audit_orphan_conversation_keys")]),
    ]
    return [finding for finding in findings if finding.items]


async def _files(db: Database, root: Path) -> list[Finding]:
    rows = await db.fetch("audit_file_rows")
    named = {relative for row in rows for relative in (row["path"], row["thumbnail_path"]) if relative}
    missing = [f"file {row['id']}: {relative}" for row in rows
               for relative in (row["path"], row["thumbnail_path"]) if relative and not (root / relative).exists()]
    doomed = {row["path"] for row in await db.fetch("audit_doomed_files", EXPIRY_GRACE_S)}
    cutoff = time.time() - IN_FLIGHT_GRACE_S
    on_disk = {path.relative_to(root).as_posix(): path for path in root.rglob("*") if path.is_file()}
    unnamed = [relative for relative, path in sorted(on_disk.items())
               if relative not in named and (relative in doomed or path.stat().st_mtime < cutoff)]
    return [Finding("files on disk that no row names (deleted or never finished)", unnamed),
            Finding("file rows whose file is not on disk", missing)]
