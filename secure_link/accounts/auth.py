"""Accounts: username and phrase rules, phrase hashing, sessions, login throttling.

Phrases are NFKC-normalised, pre-hashed with HMAC-SHA256 under a pepper and
base64-encoded (44 bytes) before bcrypt, so bcrypt 5's 72-byte limit neither
raises nor truncates (docs/decisions.md). bcrypt runs in a thread, at most
`bcrypt_concurrency` at once, so logins cannot starve the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import hashlib
import hmac
import re
import secrets
import unicodedata
from typing import Any, Iterator

import asyncpg
import bcrypt
from starlette.requests import HTTPConnection

from secure_link.errors import AppError, rate_limited
from secure_link.wire import is_utf8
from secure_link.http.proxy import origin_allowed
from secure_link.ratelimit import QueueFull
from secure_link.services import Services

SESSION_COOKIE = "session"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
BUSY_RETRY_S = 1.0  # a full hashing line drains within about a second at the defaults
USERNAME_PATTERN = re.compile(r"^[a-z0-9_.\-]{3,32}$")
_BIDI_CONTROLS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): what renders as nothing. Many are
# format characters (Cf) too; the rest are variation selectors, Hangul fillers, the grapheme joiner...
_IGNORABLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
              (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
              (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
              (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF))
_BLANK_SYMBOLS = set("\u2800")  # braille pattern blank: a symbol drawn as nothing
_JOINER, _PRESENTATION_SELECTORS = "\u200d", set("\ufe0e\ufe0f")
# Bases an emoji presentation selector may follow besides symbols (So): keycaps, and the emoji of
# other categories that NFKC leaves alone (↔ ◻ ◼ ◽ ◾ ⤴ ⤵ 〰 〽; it turns ‼ into "!!", so ‼️ is refused).
_OTHER_EMOJI_BASES = set("#*0123456789\u2194\u25fb\u25fc\u25fd\u25fe\u2934\u2935\u3030\u303d")


@dataclasses.dataclass(frozen=True)
class User:
    """The authenticated user of a request or socket, and which session proves it."""

    id: int
    username: str
    display_name: str
    avatar_file_id: str | None
    created_at: datetime.datetime
    session_id: int = 0

    @classmethod
    def from_row(cls, row: asyncpg.Record, session_id: int = 0) -> "User":
        """From a `users` row (and the session that authenticated it)."""
        return cls(row["id"], row["username"], row["display_name"], row["avatar_file_id"],
                   row["created_at"], session_id)


def user_json(row: Any) -> dict[str, Any]:
    """The contract's User object, from a row, a mapping or a `User`."""
    get = (lambda key: getattr(row, key)) if isinstance(row, User) else row.__getitem__
    avatar = get("avatar_file_id")
    return {
        "id": get("id"),
        "username": get("username"),
        "display_name": get("display_name"),
        "avatar_url": f"/media/{avatar}" if avatar else None,
        "created_at": rfc3339(get("created_at")),
    }


def rfc3339(moment: datetime.datetime) -> str:
    """UTC, millisecond precision, `Z` suffix: what JavaScript's Date parses."""
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---- validation -----------------------------------------------------------

def fold_username(raw: str) -> str:
    """NFKC then Unicode case folding: `Alice` and `ALICE` are one account."""
    return unicodedata.normalize("NFKC", raw).casefold()


def username_problem(username: str) -> str | None:
    """Why a (folded) username is refused, or None."""
    if not USERNAME_PATTERN.match(username):
        return "must be 3 to 32 characters of a-z, 0-9, '_', '.' and '-'"
    return None


def phrase_problem(phrase: str, username: str) -> str | None:
    """Why a phrase is refused, or None; the first failed rule is named.

    NUL and lone surrogates never get here: `payload.take` refuses them in every field.
    """
    normal = unicodedata.normalize("NFKC", phrase)
    if any(unicodedata.category(ch) == "Cc" for ch in normal):
        return "must not contain control characters"
    if not 12 <= len(normal) <= 256:
        return "must be 12 to 256 characters long"
    if len(normal.split()) < 3:
        return "must have at least 3 words"
    if username and fold_username(username) in normal.casefold():
        return "must not contain the username"
    return None


def clean_display_name(raw: str) -> tuple[str, str | None]:
    """The trimmed display name and why it is refused, or None (`take` has refused NUL and lone surrogates).

    People see display names where they pick whom to talk to, so nothing in one may hide,
    reorder or break its text: a name that looks like "Alice" is "Alice" plus only what shows.
    Display names are not unique, so clients show the username beside them (docs/api.md).
    """
    name = unicodedata.normalize("NFKC", raw).strip()
    return name, _display_name_problem(name)


def _display_name_problem(name: str) -> str | None:
    """The first broken rule, in the order docs/api.md lists them."""
    categories = [unicodedata.category(ch) for ch in name]
    if "Cc" in categories:
        return "must not contain control characters"
    if "Zl" in categories or "Zp" in categories:
        return "must not contain line or paragraph separators"
    if any(ch in _BIDI_CONTROLS for ch in name):
        return "must not contain text-direction characters"
    if any(_invisible(ch, category) and not _inside_emoji(name, index)
           for index, (ch, category) in enumerate(zip(name, categories))):
        return "must not contain invisible characters (a joiner or variation selector only within an emoji)"
    if not 1 <= len(name) <= 64:
        return "must be 1 to 64 characters long"
    return None


def _invisible(ch: str, category: str) -> bool:
    code = ord(ch)
    return category == "Cf" or ch in _BLANK_SYMBOLS or any(low <= code <= high for low, high in _IGNORABLE)


def _pictographic(ch: str) -> bool:
    """An emoji, near enough: a symbol, or anything in the emoji blocks (also the newest emoji, which
    this Python's Unicode database may not know yet)."""
    return unicodedata.category(ch) == "So" or 0x1F000 <= ord(ch) <= 0x1FAFF


def _inside_emoji(name: str, index: int) -> bool:
    """A joiner between two emoji (👩‍💻, ❤️‍🔥), or a presentation selector right after an emoji's base (❤️, 1️⃣):
    these change only how an emoji is drawn, never hide letters. Other joiners and selectors are refused."""
    ch, before, after = name[index], name[:index], name[index + 1:index + 2]
    if ch in _PRESENTATION_SELECTORS:
        return bool(before) and (_pictographic(before[-1]) or before[-1] in _OTHER_EMOJI_BASES)
    if ch == _JOINER:
        base = before.rstrip("".join(_PRESENTATION_SELECTORS))
        return bool(base) and bool(after) and _pictographic(base[-1]) and _pictographic(after)
    return False


# ---- phrase hashing -------------------------------------------------------

def _prehash(phrase: str, pepper: str) -> bytes:
    normal = unicodedata.normalize("NFKC", phrase).encode("utf-8")
    return base64.b64encode(hmac.new(pepper.encode("utf-8"), normal, hashlib.sha256).digest())


async def hash_phrase(services: Services, phrase: str) -> bytes:
    """bcrypt of the pre-hash, in a thread, in a hashing slot (hold a `hashing_place` first)."""
    salt = bcrypt.gensalt(services.settings.bcrypt_rounds)
    async with services.hash_slots.slot():
        return await asyncio.to_thread(bcrypt.hashpw, _prehash(phrase, services.settings.pepper), salt)


async def phrase_matches(services: Services, phrase: str, stored: bytes | None) -> bool:
    """Check a phrase; with no stored hash, check against a dummy so timing is alike."""
    prehash = _prehash(phrase, services.settings.pepper)
    async with services.hash_slots.slot():
        ok = await asyncio.to_thread(bcrypt.checkpw, prehash, stored or services.dummy_hash)
    return ok and stored is not None


class HashingBusy(AppError):
    """503 `busy`: this worker's line of phrases waiting for bcrypt is full; nothing was hashed."""

    def __init__(self) -> None:
        super().__init__(503, "busy", "The server is busy checking phrases; try again in a moment.",
                         retry_after=BUSY_RETRY_S)


@contextlib.contextmanager
def hashing_place(services: Services) -> Iterator[None]:
    """A place in this worker's line for bcrypt, held for a whole login or registration.

    Taken before anything else, so a full line turns a request away at once
    (503 `busy`) without a database round trip, and nothing is counted for it.
    """
    try:
        with services.hash_slots.place():
            yield
    except QueueFull:
        raise HashingBusy() from None


def make_dummy_hash(rounds: int) -> bytes:
    """A hash of a random phrase at the configured cost, for unknown-user logins."""
    return bcrypt.hashpw(secrets.token_bytes(32), bcrypt.gensalt(rounds))


# ---- sessions -------------------------------------------------------------

def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


async def open_session(services: Services, user_id: int, user_agent: str, address: str) -> tuple[str, int]:
    """A new session: 256 random bits for the client, only their SHA-256 stored."""
    token = secrets.token_urlsafe(32)
    session_id = await services.db.fetchval(
        "insert_session", user_id, _token_hash(token), float(services.settings.session_ttl),
        user_agent[:256], address)
    return token, session_id


def bearer_token(connection: HTTPConnection) -> str | None:
    """The `Authorization: Bearer` token, which a browser never adds by itself."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_from(connection: HTTPConnection) -> str | None:
    """Bearer header first, then the session cookie."""
    return bearer_token(connection) or connection.cookies.get(SESSION_COOKIE) or None


async def user_for_token(services: Services, token: str | None) -> User | None:
    """The live session's user, sliding its expiry; None for missing, bad or expired."""
    if not token or len(token) > 512 or not is_utf8(token):
        return None
    row = await services.db.fetchrow("authenticate_session", _token_hash(token),
                                     float(services.settings.session_ttl))
    return User.from_row(row, row["session_id"]) if row else None


async def authenticated(connection: HTTPConnection) -> tuple[Services, User]:
    """The request's services and user, or 401 `unauthenticated`.

    A browser attaches the session cookie to requests that any page makes, a
    sibling subdomain's included (SameSite=Lax does not stop those), so a
    cookie may change something only when the page is ours or allowed: 403
    `origin_refused` otherwise. A bearer token proves the caller chose to send it.
    """
    services: Services = connection.state.services
    token = bearer_token(connection)
    if token is None:
        token = connection.cookies.get(SESSION_COOKIE) or None
        if token and connection.scope.get("method") not in SAFE_METHODS \
                and not origin_allowed(connection, services.settings):
            raise AppError(403, "origin_refused", "The session cookie cannot be used from another site's page.")
    user = await user_for_token(services, token)
    if user is None:
        raise AppError(401, "unauthenticated", "Log in first: the session is missing, invalid or expired.")
    return services, user


# ---- login throttling -----------------------------------------------------

async def reserve_login_attempt(services: Services, username: str, address: str) -> int | None:
    """Count an attempt before its phrase is hashed; 429 when username+address or address is at its limit.

    Checking first and recording after the hash let a concurrent burst through
    whole; reserving under a per-address lock lets at most the limit be hashed.
    Returns the attempt's id (None when throttling is off).
    """
    limit = services.settings.login_failures_per_15_min
    if limit <= 0:
        return None
    async with services.db.transaction() as conn:
        await services.db.execute("lock_login_address", address, conn=conn)
        row = await services.db.fetchrow("reserve_login_attempt", username, address, limit, conn=conn)
    if row["attempt_id"] is None:
        raise rate_limited(row["wait_seconds"], "Too many failed logins; try again later.")
    return row["attempt_id"]


async def settle_login_attempt(services: Services, username: str, address: str, attempt_id: int | None,
                               succeeded: bool) -> None:
    """A failure stays counted; a success forgives this username+address's earlier failures."""
    if attempt_id is not None and succeeded:
        await services.db.execute("delete_login_failures", username, address)
