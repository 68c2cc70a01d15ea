"""What crosses the wire: a JSON body or frame checked before any domain code sees it, and
times written as the contract writes them.

Missing fields and wrong types are one 422 naming every bad field, so a client
fixes them all at once. ("Payload", elsewhere, is what the fan-out carries.)
"""

from __future__ import annotations

import datetime
from typing import Any

from secure_link.errors import AppError, invalid

JsonObject = dict[str, Any]  # a JSON object as the contract writes it (User, Message, File, a frame)
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean"}
INT64 = 2**63 - 1


def take(body: object, required: dict[str, type], optional: dict[str, type] | None = None) -> dict[str, Any]:
    """The named fields of an object body, type-checked; optional ones default to None."""
    if not isinstance(body, dict):
        raise AppError(422, "invalid_input", "The body must be a JSON object.")
    fields: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, kind in {**required, **(optional or {})}.items():
        value = body.get(name)
        if value is None:
            if name in required:
                fields[name] = "is required"
            values[name] = None
        elif not _is(value, kind):
            fields[name] = f"must be {_TYPE_NAMES.get(kind, kind.__name__)}"
        elif problem := _storable_problem(value):
            fields[name] = problem
        else:
            values[name] = value
    if fields:
        raise invalid(fields)
    return values


def _storable_problem(value: object) -> str | None:
    """What PostgreSQL would refuse with an error: NUL or lone surrogates in text, ints beyond int64."""
    if isinstance(value, str):
        if "\x00" in value:
            return "must not contain NUL characters"
        if not is_utf8(value):
            return "must be valid Unicode (no lone surrogates)"
    if isinstance(value, int) and not -INT64 - 1 <= value <= INT64:
        return "is out of range"
    return None


def is_storable_text(text: str) -> bool:
    """Text PostgreSQL accepts: no NUL, no lone surrogates (for values outside `take`)."""
    return "\x00" not in text and is_utf8(text)


def is_utf8(text: str) -> bool:
    """Whether a str can be stored: JSON's \\ud800 escapes decode to lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is(value: object, kind: type) -> bool:
    """isinstance, except that a bool is not an int (JSON true is not 1)."""
    if kind is int and isinstance(value, bool):
        return False
    return isinstance(value, kind)


def rfc3339(moment: datetime.datetime) -> str:
    """UTC, millisecond precision, `Z` suffix: what JavaScript's Date parses."""
    return moment.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
