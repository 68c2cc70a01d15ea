"""The OpenAPI 3.1 document served at /api/openapi.json.

Written out by hand from the contract (docs/api.md is the prose version); a
test checks that every route of the app appears here. The web client's types
are generated from it (web/src/lib/api-types.ts), so every answer and every
WebSocket frame has a schema with its required fields.
"""

from __future__ import annotations

import copy
from typing import Any

from secure_link import __version__

_ERROR = {"$ref": "#/components/schemas/Error"}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_STR = {"type": ["string", "null"]}
_TIMER_SECONDS = {"type": "integer", "minimum": 0, "maximum": 2_419_200}  # 0: off; up to four weeks
_NULLABLE_INT = {"type": ["integer", "null"]}
# The limits the server enforces, so a generated client (or a fuzzer) knows them.
_USERNAME = {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]{3,32}$",
             "description": "NFKC-normalised and case-folded first: `Alice` is `alice`."}
_PHRASE = {"type": "string", "minLength": 12, "maxLength": 256,
           "description": "Counted after NFKC; at least 3 words; may not contain the username."}
_DISPLAY_NAME = {"type": "string", "minLength": 1, "maxLength": 64,
                 "description": "Trimmed; no control, line-separator, text-direction or invisible characters "
                                "(a joiner or variation selector only within an emoji). Not unique: show the "
                                "username beside it."}
_CLIENT_ID = {"type": "string", "minLength": 1, "maxLength": 64, "description": "Printable characters."}
_FILE_ID = {"type": "string", "minLength": 1, "maxLength": 64}
_NAME = {"type": "string", "minLength": 1, "description": "A username (folded like one)"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object schema whose properties are all required unless named optional."""
    required = [name for name in properties if name not in optional]
    return {"type": "object", "required": required, "properties": properties}


def _frame(kind: str, optional: tuple[str, ...] = (), /, **properties: Any) -> dict[str, Any]:
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
                        "attachment": {"oneOf": [_ref("File"), {"type": "null"}]}, "sent_at": _TIME,
                        "expires_at": {"type": ["string", "null"], "format": "date-time"}}),
    "Credentials": _object({"username": _USERNAME, "phrase": _PHRASE, "display_name": _DISPLAY_NAME,
                            "invite": {"type": "string", "description": "An invite code: needed when the "
                                                                        "registration mode is `invite`"}},
                           optional=("display_name", "invite")),
    "Login": _object({"username": _STR, "phrase": _STR}),
    "ProfileChange": _object({"display_name": _DISPLAY_NAME}),
    "Draft": _object({"to": _NAME, "message": {"type": "string", "maxLength": 4000}, "client_id": _CLIENT_ID,
                      "attachment": _FILE_ID}, optional=("client_id", "attachment")),
    "Upload": _object({"file": {"type": "string", "format": "binary"},
                       "purpose": {"type": "string", "enum": ["attachment", "avatar"], "default": "attachment"}},
                      optional=("purpose",)),
    "Session": _object({"id": _INT, "created_at": _TIME, "last_used_at": _TIME, "expires_at": _TIME,
                        "user_agent": _STR, "address": _STR, "current": _BOOL}),
    "Conversation": _object({"with": _ref("User"), "last_message": _ref("Message"), "unread": _INT,
                             "timer": _INT}),
    "Timer": _object({"with": _STR, "seconds": _TIMER_SECONDS, "set_by": _NULLABLE_STR,
                      "set_at": {"type": ["string", "null"], "format": "date-time"}}),
    "TimerChange": _object({"seconds": _TIMER_SECONDS}),
    # v1.2: who may reach you
    "Registration": _object({"mode": {"type": "string", "enum": ["open", "invite", "closed"]}}),
    "Invite": _object({"code": _STR, "url": _STR, "uses_left": _INT, "expires_at": _TIME, "created_at": _TIME}),
    "InviteTerms": _object({"uses": {"type": "integer", "minimum": 1, "maximum": 100, "default": 1},
                            "expires_in": {"type": "integer", "minimum": 60, "maximum": 2_592_000,
                                           "default": 604_800}}, optional=("uses", "expires_in")),
    "Block": _object({"username": _STR, "since": _TIME}),
    "PhraseChange": _object({"phrase": _STR, "new_phrase": _PHRASE}),
    "PhraseProof": _object({"phrase": _STR}),
}

_ANSWERS: dict[str, Any] = {
    "LoggedIn": _object({"user": _ref("User"), "token": _STR}),
    "Profile": _object({"user": _ref("User")}),
    "Person": _object({"user": _ref("User"), "online": {
        "type": "boolean", "description": "Online as the asker may see it: false unless they share a conversation"}}),
    "Cleared": _object({"cleared": _object({"messages": _INT, "files": _INT})}),
    "SessionList": _object({"sessions": {"type": "array", "items": _ref("Session")}}),
    "Revoked": _object({"revoked": _INT}),
    "ConversationList": _object({"conversations": {"type": "array", "items": _ref("Conversation")}}),
    "MessagePage": _object({"messages": {"type": "array", "items": _ref("Message")}, "has_more": _BOOL}),
    "Uploaded": _object({"file": _ref("File")}),
    "Status": _object({"status": _STR}),
    "Deleted": _object({"deleted": _object({"id": _INT, "files": _INT})}),
    "InviteList": _object({"invites": {"type": "array", "items": _ref("Invite")}, "limit": {
        "type": "integer", "minimum": 0, "description": "INVITES_PER_USER: live invites a user may hold (0: only "
                                                        "the operator invites)"}}),
    "InviteRevoked": _object({"revoked": _ref("Invite")}),
    "BlockList": _object({"blocks": {"type": "array", "items": _ref("Block")}}),
    "Unblocked": _object({"unblocked": _STR}),
    "AccountDeleted": _object({"deleted": _object({"messages": _INT, "files": _INT})}),
}

_CLIENT_FRAMES: dict[str, Any] = {
    "ChatFrame": _frame("chat", ("to", "client_id", "attachment"), to=_STR, message=_STR, client_id=_STR,
                        attachment=_STR),
    "SyncFrame": _frame("sync", since=_INT),
    "ReadFrame": _frame("read", ("with",), **{"with": _STR, "up_to": _INT}),
    "TypingFrame": _frame("typing", ("to",), to=_STR),
    "TimerFrame": _frame("timer", ("with",), **{"with": _STR, "seconds": _TIMER_SECONDS}),
    "DeleteFrame": _frame("delete", id=_INT),
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
    "ProfileEvent": _frame("profile", user=_ref("User")),
    "ClearedEvent": _frame("cleared", **{"with": _STR}),
    "ResyncEvent": _frame("resync"),
    "TimerEvent": _frame("timer", **{"with": _STR, "seconds": _INT, "by": _STR}),
    "DeletedEvent": _frame("deleted", **{"with": _STR, "ids": {"type": "array", "items": _INT},
                                         "reason": {"type": "string", "enum": ["deleted", "expired"]}}),
    "PongEvent": _frame("pong"),
    "ErrorEvent": _frame("error", ("client_id", "retry_after_ms"), code=_STR, message=_STR,
                         client_id=_NULLABLE_STR, retry_after_ms=_INT),
}

SCHEMAS: dict[str, Any] = {
    **_RECORDS, **_ANSWERS, **_CLIENT_FRAMES, **_SERVER_FRAMES,
    "ClientFrame": {"oneOf": [_ref(name) for name in _CLIENT_FRAMES]},
    "ServerFrame": {"oneOf": [_ref(name) for name in _SERVER_FRAMES]},
}

# What each error status means here; 429 and 503 carry Retry-After (seconds).
_ERRORS: dict[int, str] = {
    400: "`bad_json`: the body is not valid JSON",
    401: "`unauthenticated` (or `invalid_credentials` for a login)",
    403: "`origin_refused`: a cookie-authenticated change from another site's page",
    404: "`not_found` or `unknown_user`",
    409: "`username_taken`",
    413: "`too_large` or `quota_exceeded`",
    415: "`unsupported_media_type` or `unsupported_file_type`",
    422: "`invalid_input` (with `fields`) or a more precise code",
    429: "`rate_limited` or `quota_exceeded`; `Retry-After`",
    503: "`unavailable` (database or storage down; also `busy` for register and login); `Retry-After`",
}
_RETRY_AFTER = {"Retry-After": {"required": True, "description": "Seconds to wait", "schema": _INT}}
_BINARY = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
_CACHED = {"ETag": {"required": True, "schema": _STR}}
_SETS_COOKIE = {"Set-Cookie": {"required": True, "schema": _STR,
                               "description": "The `session` cookie: HttpOnly, SameSite=Lax, Secure over https"}}
_CLEARS_COOKIE = {"Set-Cookie": {"required": True, "schema": _STR, "description": "Expires the `session` cookie"},
                  "Clear-Site-Data": {"required": True, "schema": _STR,
                                      "description": '`"cache", "storage"`: the browser forgets what it kept'}}

_JSON_BODY = (400, 413, 415, 422)         # read_json and take() refuse these
_AUTHENTICATED = (401, 503)               # every session lookup reads the database
_CHANGE = (*_AUTHENTICATED, 403)          # state-changing with a cookie: origin checked
_ANONYMOUS: list[dict[str, Any]] = []     # the security of public operations


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _answer(answer: str, description: str = "Success", headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A success answer: JSON of the named schema, and the headers it always carries."""
    success: dict[str, Any] = {"description": description, "content": _json_content(_ref(answer))}
    return {**success, "headers": headers} if headers else success


def _error(status: int, description: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"description": description or _ERRORS[status], "content": _json_content(_ERROR)}
    if status in (429, 503):
        error["headers"] = _RETRY_AFTER
    return error


def _parameter(where: str, name: str, schema: dict[str, Any], required: bool = False,
               description: str = "") -> dict[str, Any]:
    parameter = {"in": where, "name": name, "required": required or where == "path", "schema": schema}
    return {**parameter, "description": description} if description else parameter


def _op(summary: str, answers: dict[int, dict[str, Any]], errors: tuple[int, ...] = (), *,
        body: str | None = None, parameters: tuple[dict[str, Any], ...] = (),
        security: list[dict[str, Any]] | None = None, error_notes: dict[int, str] | None = None) -> dict[str, Any]:
    """One operation: its success answers as given, then the error shape for each error status
    (described as in _ERRORS, unless `error_notes` says what that status means here)."""
    responses = {str(status): answer for status, answer in answers.items()}
    notes = error_notes or {}
    responses.update({str(status): _error(status, notes.get(status)) for status in sorted(set(errors))})
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body:
        operation["requestBody"] = {"required": True, "content": _json_content(_ref(body))}
    if parameters:
        operation["parameters"] = list(parameters)
    if security is not None:
        operation["security"] = security
    return operation


_FILE_ID_PARAMETER = _parameter("path", "file_id", _STR)
_MEDIA_PARAMETERS = (
    _FILE_ID_PARAMETER,
    _parameter("header", "If-None-Match", _STR, description="An ETag seen before: 304 if unchanged"),
)
_MEDIA_ANSWERS = {
    200: {"description": "The file; a download unless it is a re-encoded image", "headers": _CACHED,
          "content": _BINARY},
    206: {"description": "The requested byte range(s) of the file (`Range`)", "content": _BINARY},
    304: {"description": "Unchanged since the ETag in If-None-Match", "headers": _CACHED},
    400: {"description": "A malformed `Range` header (`bad_range`)", "content": _json_content(_ERROR)},
    416: {"description": "A `Range` beyond the end of the file (`range_not_satisfiable`)",
          "content": _json_content(_ERROR)},
}
_MEDIA_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"cookie": []}, {}]  # anonymous too: a 404
_PAGE_NUMBER = {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}  # under 19 digits
_HISTORY_PARAMETERS = (
    _parameter("query", "with", _NAME, required=True, description="The other party's username"),
    _parameter("query", "before", _PAGE_NUMBER, description="Page back: messages with smaller ids"),
    _parameter("query", "after", _PAGE_NUMBER, description="Page forward: messages with larger ids"),
    _parameter("query", "limit", {"type": "integer", "minimum": 1, "maximum": 10**18 - 1, "default": 50},
               description="Page size; above 100 is clamped to 100"),
)
_UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": _ref("Upload")}}}
_WS_ANSWERS: dict[int, dict[str, Any]] = {
    101: {"description": "Switching protocols: the socket speaks ClientFrame and ServerFrame"},
    403: {"description": "A refused Origin, before the handshake (no body)"},
    404: {"description": "A plain GET without the WebSocket upgrade", "content": _json_content(_ERROR)},
}

PATHS: dict[str, dict[str, dict[str, Any]]] = {
    "/api/register/": {"post": _op("Create an account and log in",
                                   {201: _answer("LoggedIn", "Registered and logged in", _SETS_COOKIE)},
                                   (*_JSON_BODY, 403, 409, 429, 503), body="Credentials", security=_ANONYMOUS,
                                   error_notes={403: "`registration_closed`, `invite_required` or "
                                                     "`invite_invalid` (the registration mode)"})},
    "/api/login/": {"post": _op("Log in", {200: _answer("LoggedIn", "Logged in", _SETS_COOKIE)},
                                (*_JSON_BODY, 401, 403, 429, 503), body="Login", security=_ANONYMOUS,
                                error_notes={403: "`account_suspended`: the operator suspended the account"})},
    "/api/logout/": {"post": _op("Log out and clear the user's chats (any body is ignored)",
                                 {200: _answer("Cleared", "Logged out", _CLEARS_COOKIE)}, _CHANGE)},
    "/api/user-profile/": {
        "get": _op("The logged-in user", {200: _answer("Profile")}, _AUTHENTICATED),
        "patch": _op("Change the display name", {200: _answer("Profile")}, (*_CHANGE, *_JSON_BODY),
                     body="ProfileChange"),
    },
    "/api/users/{username}/": {"get": _op(
        "Someone's public profile, to check a username before opening a chat", {200: _answer("Person")},
        (*_AUTHENTICATED, 404, 422, 429), parameters=(_parameter("path", "username", _STR),),
        error_notes={404: "`unknown_user`: nobody has that username",
                     422: "`invalid_recipient`: the asker's own username"})},
    "/api/registration/": {"get": _op("How people may register here", {200: _answer("Registration")},
                                      security=_ANONYMOUS)},
    "/api/invites/": {
        "get": _op("The user's own live invites, newest first", {200: _answer("InviteList")}, _AUTHENTICATED),
        "post": _op("Invite someone", {201: _answer("Invite")}, (*_CHANGE, *_JSON_BODY, 409), body="InviteTerms",
                    error_notes={403: "`invites_disabled` (INVITES_PER_USER is 0), or `origin_refused`",
                                 409: "`invite_limit`: the user has INVITES_PER_USER live invites"}),
    },
    "/api/invites/{code}/": {"delete": _op(
        "Revoke one of the user's own live invites", {200: _answer("InviteRevoked")}, (*_CHANGE, 404),
        parameters=(_parameter("path", "code", _STR),),
        error_notes={404: "`not_found`: not a live invite of the user's"})},
    "/api/blocks/": {"get": _op("Whom the user blocks, newest first", {200: _answer("BlockList")}, _AUTHENTICATED)},
    "/api/blocks/{username}/": {
        "put": _op("Block someone: nothing passes between the two either way", {200: _answer("Block")},
                   (*_CHANGE, 404, 422), parameters=(_parameter("path", "username", _STR),),
                   error_notes={404: "`unknown_user`", 422: "`invalid_recipient`: oneself"}),
        "delete": _op("Lift the user's block", {200: _answer("Unblocked")}, (*_CHANGE, 404),
                      parameters=(_parameter("path", "username", _STR),), error_notes={404: "`unknown_user`"}),
    },
    "/api/change-phrase/": {"post": _op(
        "Change the phrase; every other session ends", {200: _answer("Profile")},
        (*_CHANGE, *_JSON_BODY, 429), body="PhraseChange",
        error_notes={401: "`invalid_credentials`: the current phrase is wrong (counted by the login throttle), "
                          "or `unauthenticated`"})},
    "/api/delete-account/": {"post": _op(
        "Delete the account and everything of it; the username is retired",
        {200: _answer("AccountDeleted", "Deleted", _CLEARS_COOKIE)}, (*_CHANGE, *_JSON_BODY, 429),
        body="PhraseProof",
        error_notes={401: "`invalid_credentials`: the phrase is wrong (counted by the login throttle), "
                          "or `unauthenticated`"})},
    "/api/sessions/": {"get": _op("List the user's sessions", {200: _answer("SessionList")}, _AUTHENTICATED)},
    "/api/sessions/{session_id}": {"delete": _op(
        "Revoke one of the user's sessions", {200: _answer("Revoked")}, (*_CHANGE, 404),
        parameters=(_parameter("path", "session_id", {"type": "integer", "minimum": 0}),))},
    "/api/send-message/": {"post": _op(
        "Send a message (REST fallback)",
        {201: _answer("Message", "Stored"), 200: _answer("Message", "A retry with the same client_id: "
                                                          "the original, nothing stored twice")},
        (*_CHANGE, *_JSON_BODY, 404, 409, 429), body="Draft",
        error_notes={409: "`conversation_cleared`: the conversation was cleared under the send again and again; "
                          "nothing stored, send it again"})},
    "/api/conversations/": {"get": _op("Conversations, newest first", {200: _answer("ConversationList")},
                                       _AUTHENTICATED)},
    "/api/messages/": {"get": _op("A page of one conversation's history", {200: _answer("MessagePage")},
                                  (*_AUTHENTICATED, 404, 422), parameters=_HISTORY_PARAMETERS)},
    "/api/messages/{message_id}/": {"delete": _op(
        "Delete one message, and its file, for both parties", {200: _answer("Deleted")}, (*_CHANGE, 404, 429),
        parameters=(_parameter("path", "message_id", {"type": "integer", "minimum": 0}),))},
    "/api/conversations/{username}/timer/": {
        "get": _op("A conversation's disappearing-message timer", {200: _answer("Timer")},
                   (*_AUTHENTICATED, 404, 422), parameters=(_parameter("path", "username", _STR),)),
        "put": _op("Set the timer for messages sent from now on; both parties hear of it",
                   {200: _answer("Timer")}, (*_CHANGE, *_JSON_BODY, 404, 429), body="TimerChange",
                   parameters=(_parameter("path", "username", _STR),)),
    },
    "/api/upload-file/": {"post": {**_op("Upload an attachment or avatar", {201: _answer("Uploaded")},
                                         (*_CHANGE, 413, 415, 422, 429)), "requestBody": _UPLOAD_BODY}},
    "/media/{file_id}": {"get": _op("A file, to those allowed to see it", _MEDIA_ANSWERS, (404, 503),
                                    parameters=_MEDIA_PARAMETERS, security=_MEDIA_SECURITY)},
    "/media/{file_id}/thumbnail": {"get": _op("An image's thumbnail, under the same rule", _MEDIA_ANSWERS,
                                              (404, 503), parameters=_MEDIA_PARAMETERS,
                                              security=_MEDIA_SECURITY)},
    "/ws/chat/": {"get": _op("The chat WebSocket (frames: ClientFrame, ServerFrame)", _WS_ANSWERS)},
    "/api/openapi.json": {"get": _op("This document", {200: {"description": "OpenAPI 3.1", "content":
                                     _json_content({"type": "object"})}}, security=_ANONYMOUS)},
    "/healthz": {"get": _op("Liveness: the process is up", {200: _answer("Status")}, security=_ANONYMOUS)},
    "/readyz": {"get": _op("Readiness: the database answers", {200: _answer("Status"), 503: {
        "description": "`not_ready`: the database does not answer", "content": _json_content(_ERROR)}},
        security=_ANONYMOUS)},
    "/metrics": {"get": _op("Prometheus metrics of this host's workers", {200: {
        "description": "Prometheus text format", "content": {"text/plain": {"schema": _STR}}}},
        security=_ANONYMOUS)},
    "/": {"get": _op("The web client's page (when built)", {200: {
        "description": "index.html", "content": {"text/html": {"schema": _STR}}}}, (404,), security=_ANONYMOUS)},
    "/assets/{name}": {"get": _op("The web client's hashed assets, cached for a year", {200: {
        "description": "The asset", "content": _BINARY}}, (404,), parameters=(_parameter("path", "name", _STR),),
        security=_ANONYMOUS)},
}


# v1.1's paths answer the same without their final slash (contract): both are served.
PATHS.update({path.rstrip("/"): PATHS[path] for path in ("/api/messages/{message_id}/",
                                                         "/api/conversations/{username}/timer/",
                                                         "/api/users/{username}/", "/api/registration/",
                                                         "/api/invites/", "/api/invites/{code}/", "/api/blocks/",
                                                         "/api/blocks/{username}/", "/api/change-phrase/",
                                                         "/api/delete-account/")})


def document() -> dict[str, Any]:
    """The whole OpenAPI document (built anew: callers may change their copy)."""
    return copy.deepcopy({
        "openapi": "3.1.0",
        "info": {"title": "Secure Link", "version": __version__},
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "session"}}},
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": PATHS,
    })
