"""One error shape for HTTP and WebSocket, and the contract's close codes.

Anything raised as `AppError` reaches the client as
`{"error": {"code", "message", "fields"?}}` (HTTP) or as an `error` frame
(WebSocket); `error_body()` is the only place that shape is built.
"""

from __future__ import annotations

import errno
import math
from typing import Any

# WebSocket close codes (docs/api.md lists what each means to a client).
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008          # refused origin, auth timeout
CLOSE_TOO_BIG = 1009         # frame over WS_MAX_FRAME_BYTES
CLOSE_INTERNAL = 1011        # a bug on our side (logged)
CLOSE_RESTARTING = 1012      # graceful shutdown: reconnect and sync
CLOSE_TRY_AGAIN = 1013       # send queue full, or the database unreachable: reconnect and sync
CLOSE_UNAUTHENTICATED = 4401 # bad, expired or revoked session
CLOSE_RATE_LIMITED = 4429    # kept sending past the rate limit


class AppError(Exception):
    """A refusal the client can act on: HTTP status, stable code, human message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, str] | None = None,
        retry_after: float | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.retry_after = retry_after
        self.extra_headers = extra_headers or {}

    def headers(self) -> dict[str, str]:
        """HTTP headers the refusal needs: Retry-After in whole seconds (at least 1), and any other."""
        if self.retry_after is None:
            return dict(self.extra_headers)
        return {**self.extra_headers, "Retry-After": str(max(1, math.ceil(self.retry_after)))}


def error_body(code: str, message: str, fields: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON body of every HTTP error."""
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return {"error": error}


def error_frame(error: AppError, client_id: str | None = None) -> dict[str, Any]:
    """The WebSocket form of the same error; the socket stays open."""
    frame: dict[str, Any] = {"type": "error", "code": error.code, "message": error.message}
    if error.fields:
        frame["fields"] = error.fields
    if client_id is not None:
        frame["client_id"] = client_id
    if error.retry_after is not None:
        frame["retry_after_ms"] = max(1, math.ceil(error.retry_after * 1000))
    return frame


def invalid(fields: dict[str, str], message: str = "Some fields are invalid.") -> AppError:
    """A 422 naming each bad field."""
    return AppError(422, "invalid_input", message, fields=fields)


def rate_limited(retry_after_s: float, message: str = "Too many requests; slow down.") -> AppError:
    """A 429 that tells the client when to try again."""
    return AppError(429, "rate_limited", message, retry_after=retry_after_s)


def undecryptable() -> AppError:
    """500 for stored data that does not decrypt: the wrong MASTER_KEY_FILE, or altered bytes.

    Not 503: retrying cannot help, the operator must act (docs/privacy.md); and
    never the undecrypted bytes.
    """
    return AppError(500, "undecryptable", "Stored data could not be decrypted; the server's operator has been told.")


def conversation_cleared() -> AppError:
    """409 for a send whose conversation was cleared under it again and again (logouts in a
    loop, writer.MAX_RESEALS): nothing was stored, and sending it again is safe."""
    return AppError(409, "conversation_cleared",
                    "The conversation was cleared while this message was being stored; nothing was stored. Send it again.")


def blocked() -> AppError:
    """403 for a send, timer change or delete between two users one of whom blocks the other
    (contract v1.2): nothing was stored or changed."""
    return AppError(403, "blocked", "One of you has blocked the other: nothing passes between you.")


OUTAGE_RETRY_S = 2.0
_DISK_TROUBLE = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO}


class DatabaseUnavailable(Exception):
    """The database could not be reached or dropped the connection (db.py raises it, from the driver's error)."""


def outage(exc: BaseException) -> AppError | None:
    """503 `unavailable` when a dependency failed rather than our code, else None.

    The database down or restarting, or MEDIA_ROOT full or read-only: the
    client should retry the same request (a send with the same client_id is
    always safe), so it is told when, instead of getting a 500 (settled detail 14).
    """
    if isinstance(exc, DatabaseUnavailable):
        what = "database"
    elif isinstance(exc, OSError) and exc.errno in _DISK_TROUBLE:
        what = "storage"
    else:
        return None
    return AppError(503, "unavailable", f"The server's {what} is unavailable; try again shortly.",
                    retry_after=OUTAGE_RETRY_S)
