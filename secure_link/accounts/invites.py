"""Invitations to register (contract v1.2): made by users (`INVITES_PER_USER` live each) or the operator.

A code is 16 random bytes (its row's `nonce`) and an 8-byte tag, an HMAC of the
nonce under a key derived from the pepper, in URL-safe base64: 32 characters,
128 bits a guesser must find, and nothing in the database makes one (a dump
holds nonces, not tags). A registration takes one use in its own transaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

import asyncpg

from secure_link.accounts.users import User
from secure_link.db import Database
from secure_link.errors import AppError, invalid
from secure_link.wire import JsonObject, rfc3339

NONCE_BYTES, TAG_BYTES = 16, 8
DEFAULT_USES, MAX_USES = 1, 100
DEFAULT_EXPIRES_S, MIN_EXPIRES_S, MAX_EXPIRES_S = 7 * 24 * 3600, 60, 30 * 24 * 3600


def tag_key(pepper: str) -> bytes:
    """The key of the codes' tags, derived from the secret pepper (which never changes)."""
    return hmac.new(pepper.encode("utf-8"), b"secure-link invite codes", hashlib.sha256).digest()


def code_of(key: bytes, nonce: bytes) -> str:
    """The code a person holds for this row."""
    tag = hmac.new(key, nonce, hashlib.sha256).digest()[:TAG_BYTES]
    return base64.urlsafe_b64encode(nonce + tag).decode("ascii")


def nonce_of(key: bytes, code: str) -> bytes | None:
    """The row a code names, or None when it is not a code of this deployment."""
    try:
        raw = base64.urlsafe_b64decode(code.encode("ascii")) if len(code) == 32 else b""
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    nonce = raw[:NONCE_BYTES]
    if len(raw) != NONCE_BYTES + TAG_BYTES or not hmac.compare_digest(code_of(key, nonce), code):
        return None
    return nonce


def invite_json(key: bytes, row: asyncpg.Record, origin: str) -> JsonObject:
    """The contract's Invite; `url` opens the web client's registration with the code filled in."""
    code = code_of(key, row["nonce"])
    return {"code": code, "url": f"{origin}/?invite={code}", "uses_left": row["uses_left"],
            "expires_at": rfc3339(row["expires_at"]), "created_at": rfc3339(row["created_at"])}


def parse_terms(body: object) -> tuple[int, int]:
    """`{"uses"?, "expires_in"?}`: 1 to 100 uses (1), expiring in 60 s to 30 days (a week)."""
    if not isinstance(body, dict):
        raise AppError(422, "invalid_input", "The body must be a JSON object.")
    fields: dict[str, str] = {}
    uses = _whole(body, "uses", DEFAULT_USES, 1, MAX_USES, fields)
    expires = _whole(body, "expires_in", DEFAULT_EXPIRES_S, MIN_EXPIRES_S, MAX_EXPIRES_S, fields)
    if fields:
        raise invalid(fields)
    return uses, expires


def _whole(body: dict[str, object], name: str, default: int, low: int, high: int, fields: dict[str, str]) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        fields[name] = f"must be a whole number from {low:,} to {high:,}"
        return default
    return value


async def create(db: Database, creator: User | None, uses: int, expires_in: int, limit: int) -> asyncpg.Record:
    """A new invite row: the user's (within `limit` live ones), or the operator's (`creator` None)."""
    async with db.transaction() as conn:
        if creator is not None:
            if limit <= 0:
                raise AppError(403, "invites_disabled", "Only the server's operator can invite people here.")
            await db.execute("lock_user_invites", creator.id, conn=conn)
            if await db.fetchval("count_live_invites", creator.id, conn=conn) >= limit:
                raise AppError(409, "invite_limit", f"You already have {limit} live invites: revoke one first.")
        row = await db.fetchrow("insert_invite", secrets.token_bytes(NONCE_BYTES),
                                creator.id if creator else None, uses, float(expires_in), conn=conn)
    assert row is not None  # an INSERT … RETURNING
    return row


async def revoke_own(db: Database, key: bytes, user: User, code: str) -> asyncpg.Record:
    """Revoke one of the user's own live invites; 404 for any other code."""
    nonce = nonce_of(key, code)
    row = await db.fetchrow("revoke_own_invite", nonce, user.id) if nonce else None
    if row is None:
        raise AppError(404, "not_found", "You have no live invite with that code.")
    return row


async def is_live(db: Database, key: bytes, code: str) -> bytes | None:
    """The nonce of a live invite's code, or None (unknown, revoked, expired, used up: one answer)."""
    nonce = nonce_of(key, code)
    if nonce is None or not await db.fetchval("invite_is_live", nonce):
        return None
    return nonce
