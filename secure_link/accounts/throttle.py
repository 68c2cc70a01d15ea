"""Login throttling: failed logins counted in PostgreSQL, per username and address and per address.

Failures guard accounts, so they are counted where every worker sees them;
the other limits may be kept per worker (ratelimit.py). An attempt is counted
before its phrase is hashed, and forgiven only by a success.
"""

from __future__ import annotations

from secure_link.db import Database
from secure_link.errors import rate_limited


async def reserve_login_attempt(db: Database, limit: int, username: str, address: str) -> int | None:
    """Count an attempt before its phrase is hashed; 429 when username+address or address is at its limit.

    Checking first and recording after the hash let a concurrent burst through
    whole; reserving under a per-address lock lets at most the limit be hashed.
    Returns the attempt's id (None when throttling is off: `limit` 0).
    """
    if limit <= 0:
        return None
    async with db.transaction() as conn:
        await db.execute("lock_login_address", address, conn=conn)
        row = await db.fetchrow("reserve_login_attempt", username, address, limit, conn=conn)
    assert row is not None  # the query always answers one row
    if row["attempt_id"] is None:
        raise rate_limited(row["wait_seconds"], "Too many failed logins; try again later.")
    attempt_id: int = row["attempt_id"]
    return attempt_id


async def settle_login_attempt(db: Database, username: str, address: str, attempt_id: int | None,
                               succeeded: bool) -> None:
    """A failure stays counted; a success forgives this username+address's earlier failures."""
    if attempt_id is not None and succeeded:
        await db.execute("delete_login_failures", username, address)
