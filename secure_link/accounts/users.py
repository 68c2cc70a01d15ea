"""Who people are: a user, the contract's User object, and the rules for usernames and display names.

Usernames are NFKC-normalised and case-folded (`Alice` is `alice`), unique, and
never change; display names are what people see, checked so that nothing in
one can hide, reorder or break its text.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import unicodedata

import asyncpg

from secure_link.db import Row
from secure_link.wire import JsonObject, rfc3339

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
    def from_row(cls, row: asyncpg.Record, session_id: int = 0) -> User:
        """From a `users` row (and the session that authenticated it)."""
        return cls(row["id"], row["username"], row["display_name"], row["avatar_file_id"],
                   row["created_at"], session_id)


def user_json(row: User | Row) -> JsonObject:
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


def fold_username(raw: str) -> str:
    """NFKC then Unicode case folding: `Alice` and `ALICE` are one account."""
    return unicodedata.normalize("NFKC", raw).casefold()


def username_problem(username: str) -> str | None:
    """Why a (folded) username is refused, or None."""
    if not USERNAME_PATTERN.match(username):
        return "must be 3 to 32 characters of a-z, 0-9, '_', '.' and '-'"
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
