"""Checking the shape of a JSON body or frame before any domain code sees it.

Missing fields and wrong types are one 422 naming every bad field, so a client
fixes them all at once.
"""

from __future__ import annotations

from typing import Any

from .errors import AppError, invalid

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean"}


def take(body: Any, required: dict[str, type], optional: dict[str, type] | None = None) -> dict[str, Any]:
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
        else:
            values[name] = value
    if fields:
        raise invalid(fields)
    return values


def _is(value: Any, kind: type) -> bool:
    """isinstance, except that a bool is not an int (JSON true is not 1)."""
    if kind is int and isinstance(value, bool):
        return False
    return isinstance(value, kind)
