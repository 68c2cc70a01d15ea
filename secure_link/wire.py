"""What crosses the wire: JSON read and written (orjson), a body or frame checked before any
domain code sees it, and times written as the contract writes them.

Missing fields and wrong types are one 422 naming every bad field, so a client
fixes them all at once. ("Payload", elsewhere, is what the fan-out carries.)
JSON is read by `loads` and written by `dumps`, both orjson (docs/decisions.md, "orjson"),
read exactly as the standard library reads it wherever the two differ, so every refusal
keeps its code and message.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse

from secure_link.errors import AppError, invalid

JsonObject = dict[str, Any]  # a JSON object as the contract writes it (User, Message, File, a frame)
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean"}
INT64 = 2**63 - 1


class Encoded(dict[str, Any]):
    """A JSON object that keeps the text it was encoded to: a Message is encoded once, and its
    `ack`, its `chat` event and its REST answer are all built from that text. Never changed
    after `encoded` made it (the text would no longer say what the dict holds)."""

    __slots__ = ("text",)
    text: str


def encoded(value: JsonObject) -> Encoded:
    """The object with its JSON text, encoded now, once."""
    result = Encoded(value)
    result.text = orjson.dumps(value).decode("utf-8")
    return result


def dumps(value: object) -> str:
    """Compact JSON, non-ASCII as is: what `json.dumps(value, ensure_ascii=False, separators=(",", ":"))`
    writes, for every value the server sends (str keys, no NaN, ints within 64 bits), at
    a fraction of its cost. An `Encoded` object's text is reused."""
    if isinstance(value, Encoded):
        return value.text
    return orjson.dumps(value).decode("utf-8")


def loads(text: str | bytes | bytearray) -> object:
    """A JSON body or frame; ValueError (or RecursionError) when it is not JSON.

    orjson reads it unless it reads it differently from the standard library,
    which the refusals' codes and messages were written against: orjson refuses
    `\\ud800` escapes (lone surrogates: `take` names the field) and reads an
    integer past 64 bits as a float (`take`: "is out of range", not "must be an
    integer"), so those frames are read again by `json`. NaN and Infinity are
    not JSON (RFC 8259): both refuse them now (`json` read them before).
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, parse_constant=_not_json)
    if isinstance(value, dict) and float in map(type, value.values()):  # no field takes a float
        return json.loads(text, parse_constant=_not_json)
    return value


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")


class JSONResponse(StarletteJSONResponse):
    """Starlette's JSONResponse, rendered by orjson (int keys written as strings, as `json` does);
    an `Encoded` object (a Message just sent) is not encoded again."""

    def render(self, content: Any) -> bytes:
        """The body's bytes."""
        if isinstance(content, Encoded):
            return content.text.encode("utf-8")
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


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
