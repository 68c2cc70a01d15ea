"""The OpenAPI 3.1 document served at /api/openapi.json.

Written out by hand from the contract (docs/api.md is the prose version); a
test checks that every route of the app appears here. The web client's types
are generated from it (web/src/lib/api-types.ts), so every answer and every
WebSocket frame has a schema with its required fields.
"""

from __future__ import annotations

from typing import Any

from . import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object schema whose properties are all required unless named optional."""
    required = [name for name in properties if name not in optional]
    return {"type": "object", "required": required, "properties": properties}


def _frame(kind: str, optional: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    """A WebSocket frame: an object whose `type` is the constant `kind`."""
    return _object({"type": {"type": "string", "const": kind}, **properties}, optional)


_RECORDS: dict[str, Any] = {
    "Error": _object({"error": _object({
        "code": _STR, "message": _STR,
        "fields": {"type": "object", "additionalProperties": _STR}}, optional=("fields",))}),
    "User": _object({"id": _INT, "username": _STR, "display_name": _STR, "avatar_url": _NULLABLE_STR,
                     "created_at": _TIME}),
    "File": _object({"id": _STR, "url": _STR, "name": _STR, "content_type": _STR, "size": _INT,
                     "width": _NULLABLE_INT, "height": _NULLABLE_INT, "thumbnail_url": _NULLABLE_STR}),
    "Message": _object({"id": _INT, "from": _STR, "to": _STR, "message": _STR, "client_id": _NULLABLE_STR,
                        "attachment": {"oneOf": [_ref("File"), {"type": "null"}]}, "sent_at": _TIME}),
    "Credentials": _object({"username": _STR, "phrase": _STR, "display_name": _STR}, optional=("display_name",)),
    "ProfileChange": _object({"display_name": _STR}),
    "Draft": _object({"to": _STR, "message": {"type": "string", "maxLength": 4000}, "client_id": _STR,
                      "attachment": _STR}, optional=("client_id", "attachment")),
    "Session": _object({"id": _INT, "created_at": _TIME, "last_used_at": _TIME, "expires_at": _TIME,
                        "user_agent": _STR, "address": _STR, "current": _BOOL}),
    "Conversation": _object({"with": _ref("User"), "last_message": _ref("Message"), "unread": _INT}),
}

_ANSWERS: dict[str, Any] = {
    "LoggedIn": _object({"user": _ref("User"), "token": _STR}),
    "Profile": _object({"user": _ref("User")}),
    "Cleared": _object({"cleared": _object({"messages": _INT, "files": _INT})}),
    "SessionList": _object({"sessions": {"type": "array", "items": _ref("Session")}}),
    "Revoked": _object({"revoked": _INT}),
    "ConversationList": _object({"conversations": {"type": "array", "items": _ref("Conversation")}}),
    "MessagePage": _object({"messages": {"type": "array", "items": _ref("Message")}, "has_more": _BOOL}),
    "Uploaded": _object({"file": _ref("File")}),
    "Status": _object({"status": _STR}),
}

_CLIENT_FRAMES: dict[str, Any] = {
    "ChatFrame": _frame("chat", ("to", "client_id", "attachment"), to=_STR, message=_STR, client_id=_STR,
                        attachment=_STR),
    "SyncFrame": _frame("sync", since=_INT),
    "ReadFrame": _frame("read", ("with",), **{"with": _STR, "up_to": _INT}),
    "TypingFrame": _frame("typing", ("to",), to=_STR),
    "PingFrame": _frame("ping"),
    "AuthFrame": _frame("auth", token=_STR),
}

_SERVER_FRAMES: dict[str, Any] = {
    "ReadyEvent": _frame("ready", user=_ref("User")),
    "AckEvent": _frame("ack", client_id=_NULLABLE_STR, message=_ref("Message")),
    "ChatEvent": _frame("chat", message=_ref("Message")),
    "SyncedEvent": _frame("synced", last_id=_INT),
    "ReadEvent": _frame("read", by=_STR, up_to=_INT),
    "TypingEvent": _frame("typing", **{"from": _STR}),
    "PresenceEvent": _frame("presence", user=_STR, online=_BOOL),
    "ClearedEvent": _frame("cleared", **{"with": _STR}),
    "ResyncEvent": _frame("resync"),
    "PongEvent": _frame("pong"),
    "ErrorEvent": _frame("error", ("client_id", "retry_after_ms"), code=_STR, message=_STR,
                         client_id=_NULLABLE_STR, retry_after_ms=_INT),
}

SCHEMAS: dict[str, Any] = {
    **_RECORDS, **_ANSWERS, **_CLIENT_FRAMES, **_SERVER_FRAMES,
    "ClientFrame": {"oneOf": [_ref(name) for name in _CLIENT_FRAMES]},
    "ServerFrame": {"oneOf": [_ref(name) for name in _SERVER_FRAMES]},
}

# (path, method, summary, request body schema, answer schema, success status, errors)
OPERATIONS: list[tuple[str, str, str, str | None, str | None, int, tuple[int, ...]]] = [
    ("/api/register/", "post", "Create an account and log in", "Credentials", "LoggedIn", 201,
     (400, 409, 413, 415, 422, 429, 503)),
    ("/api/login/", "post", "Log in", "Credentials", "LoggedIn", 200, (400, 401, 413, 415, 422, 429, 503)),
    ("/api/logout/", "post", "Log out and clear the user's chats", None, "Cleared", 200, (401, 403, 503)),
    ("/api/user-profile/", "get", "The logged-in user", None, "Profile", 200, (401, 503)),
    ("/api/user-profile/", "patch", "Change the display name", "ProfileChange", "Profile", 200,
     (400, 401, 403, 415, 422, 503)),
    ("/api/sessions/", "get", "List the user's sessions", None, "SessionList", 200, (401, 503)),
    ("/api/sessions/{session_id}", "delete", "Revoke a session", None, "Revoked", 200, (401, 403, 404, 503)),
    ("/api/send-message/", "post", "Send a message (REST fallback)", "Draft", "Message", 201,
     (400, 401, 403, 404, 413, 415, 422, 429, 503)),
    ("/api/conversations/", "get", "Conversations, newest first", None, "ConversationList", 200, (401, 503)),
    ("/api/messages/", "get", "A page of one conversation's history", None, "MessagePage", 200,
     (401, 404, 422, 503)),
    ("/api/upload-file/", "post", "Upload an attachment or avatar (multipart)", None, "Uploaded", 201,
     (401, 403, 413, 415, 422, 429, 503)),
    ("/media/{file_id}", "get", "A file, to those allowed to see it", None, None, 200, (404, 503)),
    ("/media/{file_id}/thumbnail", "get", "An image's thumbnail", None, None, 200, (404, 503)),
    ("/ws/chat/", "get", "The chat WebSocket (frames: ClientFrame, ServerFrame)", None, None, 101, (403,)),
    ("/api/openapi.json", "get", "This document", None, None, 200, ()),
    ("/healthz", "get", "Liveness: the process is up", None, "Status", 200, ()),
    ("/readyz", "get", "Readiness: the database answers", None, "Status", 200, (503,)),
    ("/metrics", "get", "Prometheus metrics of this host's workers (text format)", None, None, 200, ()),
    ("/", "get", "The web client (when built), and its routes", None, None, 200, (404,)),
    ("/assets/{name}", "get", "The web client's hashed assets, cached for a year", None, None, 200, (404,)),
]


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(summary: str, body: str | None, answer: str | None, status: int,
               errors: tuple[int, ...]) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "Success"}
    if answer:
        success["content"] = _json_content(_ref(answer))
    responses: dict[str, Any] = {str(status): success}
    for code in errors:
        responses[str(code)] = {"description": "Error", "content": _json_content(_ERROR)}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body:
        operation["requestBody"] = {"required": True, "content": _json_content(_ref(body))}
    return operation


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    for path, method, summary, body, answer, status, errors in OPERATIONS:
        paths.setdefault(path, {})[method] = _operation(summary, body, answer, status, errors)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Secure Link", "version": __version__},
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "session"}}},
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": paths,
    }
