"""What a client asks of chat, checked before anything is done: one parser per REST body or socket frame.

A socket opened with `?with=` is bound to one peer: its frames may leave out
whom they are about (`to`, `with`), and every parser here fills it in the same
way. Every refusal is an `AppError` in the one error shape.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from secure_link.accounts import fold_username
from secure_link.chat.timers import parse_seconds
from secure_link.errors import AppError, invalid
from secure_link.wire import is_storable_text, take


@dataclasses.dataclass(frozen=True)
class Draft:
    """A message as the client asked to send it, validated."""

    to: str
    message: str
    client_id: str | None
    attachment: str | None


@dataclasses.dataclass(frozen=True)
class Page:
    """A page of history asked for: before or after an id (or the newest), and how many."""

    peer: str
    before: int | None
    after: int | None
    limit: int


def _peer(named: str | None, bound_peer: str | None, field: str, message: str) -> str:
    """The peer a frame names, else the socket's `?with=`; 422 `missing_recipient` without either."""
    peer = named or bound_peer
    if not peer:
        raise AppError(422, "missing_recipient", message, fields={field: "is required"})
    return peer


def parse_draft(body: object, max_chars: int, bound_peer: str | None = None) -> Draft:
    """A send, REST or socket: a socket bound with `?with=` may omit `to`."""
    values = take(body, {"message": str}, {"to": str, "client_id": str, "attachment": str})
    to = _peer(values["to"], bound_peer, "to", "Say who the message is for: `to`.")
    fields = _draft_problems(values, max_chars)
    if fields:
        raise invalid(fields)
    return Draft(fold_username(to), values["message"], values["client_id"], values["attachment"])


def _draft_problems(values: dict[str, Any], max_chars: int) -> dict[str, str]:
    text, client_id = values["message"], values["client_id"]
    fields: dict[str, str] = {}
    if len(text) > max_chars:
        fields["message"] = f"must be at most {max_chars} characters"
    elif not text.strip() and not values["attachment"]:  # NUL: `take` has refused it already
        fields["message"] = "must not be empty"
    if client_id is not None and not (1 <= len(client_id) <= 64 and client_id.isprintable()):
        fields["client_id"] = "must be 1 to 64 printable characters"
    if values["attachment"] is not None and not 1 <= len(values["attachment"]) <= 64:
        fields["attachment"] = "is not a file id"
    return fields


def parse_sync(frame: object) -> int:
    """`sync`: the last message id the client has (0 for none)."""
    since: int = take(frame, {"since": int})["since"]
    if since < 0:
        raise AppError(422, "invalid_input", "since must be 0 or more.", fields={"since": "must be 0 or more"})
    return since


def parse_read(frame: object, bound_peer: str | None) -> tuple[str, int]:
    """`read`: whose messages, and up to which id (a negative one reads nothing)."""
    values = take(frame, {"up_to": int}, {"with": str})
    peer = _peer(values["with"], bound_peer, "with", "Say whose messages were read: `with`.")
    return peer, max(0, values["up_to"])


def parse_typing(frame: object, bound_peer: str | None) -> str:
    """`typing`: who is being typed to."""
    return _peer(take(frame, {}, {"to": str})["to"], bound_peer, "to", "Say who is being typed to: `to`.")


def parse_timer(frame: object, bound_peer: str | None) -> tuple[str, int]:
    """`timer`: whose conversation, and its new timer in seconds."""
    peer = _peer(take(frame, {}, {"with": str})["with"], bound_peer, "with", "Say whose conversation: `with`.")
    return peer, parse_seconds(frame)


def parse_delete(frame: object) -> int:
    """`delete`: the message's id (`take` bounds it to int64; one of no message of the user's is a 404)."""
    message_id: int = take(frame, {"id": int})["id"]
    return message_id


def parse_page(query: dict[str, str]) -> Page:
    """A history query: `with`, and `before` or `after` (not both), `limit` up to 100 (50 if left out)."""
    fields: dict[str, str] = {}
    numbers: dict[str, int | None] = {}
    for name in ("before", "after", "limit"):
        raw = query.get(name)
        numbers[name] = int(raw) if raw is not None and raw.isascii() and raw.isdigit() and len(raw) < 19 else None
        if raw is not None and numbers[name] is None:
            fields[name] = "must be a whole number"
    if not query.get("with"):
        fields["with"] = "is required"
    elif not is_storable_text(query["with"]):
        fields["with"] = "is not a username"
    if numbers["before"] is not None and numbers["after"] is not None:
        fields["after"] = "cannot be combined with before"
    limit = 50 if numbers["limit"] is None else numbers["limit"]
    if limit < 1:
        fields["limit"] = "must be at least 1"
    if fields:
        raise invalid(fields)
    return Page(query["with"], numbers["before"], numbers["after"], min(limit, 100))
