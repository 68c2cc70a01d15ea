"""The OpenAPI 3.1 document served at /api/openapi.json.

Written out by hand from the contract (docs/api.md is the prose version); a
test checks that every route of the app appears here.
"""

from __future__ import annotations

from typing import Any

from . import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}
_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"}}}}}},
    "User": {"type": "object", "properties": {
        "id": {"type": "integer"}, "username": {"type": "string"}, "display_name": {"type": "string"},
        "avatar_url": _NULLABLE_STR, "created_at": {"type": "string", "format": "date-time"}}},
    "File": {"type": "object", "properties": {
        "id": {"type": "string"}, "url": {"type": "string"}, "name": {"type": "string"},
        "content_type": {"type": "string"}, "size": {"type": "integer"}, "width": _NULLABLE_INT,
        "height": _NULLABLE_INT, "thumbnail_url": _NULLABLE_STR}},
    "Message": {"type": "object", "properties": {
        "id": {"type": "integer"}, "from": {"type": "string"}, "to": {"type": "string"},
        "message": {"type": "string"}, "client_id": _NULLABLE_STR,
        "attachment": {"oneOf": [{"$ref": "#/components/schemas/File"}, {"type": "null"}]},
        "sent_at": {"type": "string", "format": "date-time"}}},
    "Credentials": {"type": "object", "required": ["username", "phrase"], "properties": {
        "username": {"type": "string"}, "phrase": {"type": "string"}, "display_name": {"type": "string"}}},
    "Draft": {"type": "object", "required": ["to", "message"], "properties": {
        "to": {"type": "string"}, "message": {"type": "string", "maxLength": 4000},
        "client_id": {"type": "string"}, "attachment": {"type": "string"}}},
}

# (path, method, summary, request body schema or None, success status, errors)
OPERATIONS: list[tuple[str, str, str, str | None, int, tuple[int, ...]]] = [
    ("/api/register/", "post", "Create an account and log in", "Credentials", 201, (400, 409, 413, 415, 422, 429)),
    ("/api/login/", "post", "Log in", "Credentials", 200, (400, 401, 413, 415, 422, 429)),
    ("/api/logout/", "post", "Log out and clear the user's chats", None, 200, (401,)),
    ("/api/user-profile/", "get", "The logged-in user", None, 200, (401,)),
    ("/api/user-profile/", "patch", "Change the display name", None, 200, (400, 401, 415, 422)),
    ("/api/sessions/", "get", "List the user's sessions", None, 200, (401,)),
    ("/api/sessions/{session_id}", "delete", "Revoke a session", None, 200, (401, 404)),
    ("/api/send-message/", "post", "Send a message (REST fallback)", "Draft", 201, (400, 401, 404, 413, 415, 422, 429)),
    ("/api/conversations/", "get", "Conversations, newest first", None, 200, (401,)),
    ("/api/messages/", "get", "A page of one conversation's history", None, 200, (401, 404, 422)),
    ("/api/upload-file/", "post", "Upload an attachment or avatar (multipart)", None, 201, (401, 413, 415, 422)),
    ("/media/{file_id}", "get", "A file, to those allowed to see it", None, 200, (404,)),
    ("/media/{file_id}/thumbnail", "get", "An image's thumbnail", None, 200, (404,)),
    ("/ws/chat/", "get", "The chat WebSocket (see docs/api.md for frames)", None, 101, (403,)),
    ("/api/openapi.json", "get", "This document", None, 200, ()),
    ("/healthz", "get", "Liveness: the process is up", None, 200, ()),
    ("/readyz", "get", "Readiness: the database answers", None, 200, (503,)),
    ("/metrics", "get", "Prometheus metrics of this host's workers (text format)", None, 200, ()),
]


def _operation(summary: str, body: str | None, status: int, errors: tuple[int, ...]) -> dict[str, Any]:
    responses: dict[str, Any] = {str(status): {"description": "Success"}}
    for code in errors:
        responses[str(code)] = {"description": "Error", "content": {"application/json": {"schema": _ERROR}}}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
    return operation


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    for path, method, summary, body, status, errors in OPERATIONS:
        paths.setdefault(path, {})[method] = _operation(summary, body, status, errors)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Secure Link", "version": __version__},
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "session"}}},
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": paths,
    }
