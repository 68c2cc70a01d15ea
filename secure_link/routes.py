"""HTTP handlers: check who asks, read and validate, call one domain function, answer JSON.

No SQL and no `try` here: domain code raises `AppError`, which app.py turns
into the one error shape. The route table is the explicit list at the end.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from secure_link.accounts import flows as accounts
from secure_link.accounts import auth
from secure_link.chat import messages as chat
from secure_link.files import downloads
from secure_link.chat import erasure
from secure_link.files import uploads as media
from secure_link.http import openapi
from secure_link import sockets
from secure_link.chat import timers
from secure_link.http import webclient
from secure_link.errors import AppError, rate_limited
from secure_link.accounts.auth import User
from secure_link.http.proxy import client_address, is_secure
from secure_link.ratelimit import KeyedBuckets
from secure_link.services import Services

_JSON_TYPE = "application/json"


async def read_json(request: Request) -> Any:
    """The JSON body: 415 unless declared JSON, 413 over MAX_JSON_BYTES, 400 if unparsable."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != _JSON_TYPE:
        raise AppError(415, "unsupported_media_type", "Send the body as application/json.")
    limit = request.state.services.settings.max_json_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AppError(413, "too_large", f"The body is over {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise AppError(413, "too_large", f"The body is over {limit} bytes.")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # also too deep, or a number of 4,300+ digits
        raise AppError(400, "bad_json", "The body is not valid JSON.") from None


def _with_session_cookie(request: Request, response: Response, token: str) -> Response:
    settings = request.state.services.settings
    response.set_cookie(auth.SESSION_COOKIE, token, max_age=settings.session_ttl, httponly=True,
                        samesite="lax", secure=is_secure(request, settings), path="/")
    return response


def _check_rate(limiter: KeyedBuckets, user: User) -> None:
    """429 with Retry-After once the user has spent this budget (CHAT_RATE_PER_S, bursts of twice that)."""
    if wait := limiter.take(user.id):
        raise rate_limited(wait)


def _origin_of(request: Request) -> tuple[Services, str, str]:
    services: Services = request.state.services
    return services, client_address(request, services.settings), request.headers.get("user-agent", "")


async def register(request: Request) -> Response:
    """Create an account; the answer logs the client in (token and cookie)."""
    services, address, agent = _origin_of(request)
    user, token = await accounts.register(services, await read_json(request), address, agent)
    return _with_session_cookie(request, JSONResponse({"user": user, "token": token}, 201), token)


async def login(request: Request) -> Response:
    """Exchange username and phrase for a session."""
    services, address, agent = _origin_of(request)
    user, token = await accounts.login(services, await read_json(request), address, agent)
    return _with_session_cookie(request, JSONResponse({"user": user, "token": token}), token)


def _signed_out(response: Response) -> Response:
    """Make the browser forget the session: its cookie, and what it cached or stored of the
    conversations (Clear-Site-Data), since the server erased them for both sides. For every
    answer that ends a session for good: logout, and deleting the account."""
    response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response


async def logout(request: Request) -> Response:
    """End this session and clear the user's chats; any body is ignored."""
    services, user = await auth.authenticated(request)
    cleared = await accounts.logout(services, user)
    return _signed_out(JSONResponse({"cleared": cleared}))


async def user_profile(request: Request) -> Response:
    """Read (GET) or change (PATCH: display_name) the logged-in user's profile."""
    services, user = await auth.authenticated(request)
    if request.method == "PATCH":
        return JSONResponse({"user": await accounts.update_profile(services, user, await read_json(request))})
    row = await services.db.fetchrow("find_user_by_id", user.id)
    return JSONResponse({"user": auth.user_json(row)})


async def find_user(request: Request) -> Response:
    """Someone's public profile, so a chat is opened only with a username someone has."""
    services, user = await auth.authenticated(request)
    return JSONResponse(await accounts.find_person(services, user, request.path_params["username"]))


async def list_sessions(request: Request) -> Response:
    """The user's live sessions, to spot and revoke one left logged in elsewhere."""
    services, user = await auth.authenticated(request)
    return JSONResponse({"sessions": await accounts.list_sessions(services, user)})


async def revoke_session(request: Request) -> Response:
    """Revoke one of the user's sessions; its sockets close with 4401."""
    services, user = await auth.authenticated(request)
    raw = request.path_params["session_id"]
    await accounts.revoke_session(services, user, raw if raw < 2**63 else 0)
    return JSONResponse({"revoked": raw})


async def send_message(request: Request) -> Response:
    """REST fallback: same path and idempotency as the socket's chat frame."""
    services, user = await auth.authenticated(request)
    _check_rate(services.rest_send_limiter, user)
    draft = chat.parse_draft(services, await read_json(request))
    message, created = await chat.send_message(services, user, draft)
    request.state.message_id = message["id"]  # for the access log line
    return JSONResponse(message, status_code=201 if created else 200)


async def conversations(request: Request) -> Response:
    """The user's conversations, newest first, with unread counts."""
    services, user = await auth.authenticated(request)
    return JSONResponse({"conversations": await chat.conversations(services, user)})


async def messages(request: Request) -> Response:
    """A page of one conversation's history (cursor by id, either direction)."""
    services, user = await auth.authenticated(request)
    return JSONResponse(await chat.history(services, user, dict(request.query_params)))


async def upload_file(request: Request) -> Response:
    """Stream an attachment or avatar to disk; the answer is the File as it will be served."""
    services, user = await auth.authenticated(request)
    file = await media.upload(services, user, request.headers, request.stream(),
                              on_avatar=functools.partial(accounts.avatar_changed, services, user))
    return JSONResponse({"file": file}, status_code=201)


async def media_file(request: Request) -> Response:
    """A file, to those allowed to see it; anyone else, anonymous included, gets the same 404."""
    services: Services = request.state.services
    viewer = await auth.user_for_token(services, auth.token_from(request))
    return await downloads.serve(services, viewer, request.path_params["file_id"], thumbnail=False,
                             if_none_match=request.headers.get("if-none-match"),
                             byte_range=request.headers.get("range"), if_range=request.headers.get("if-range"))


async def media_thumbnail(request: Request) -> Response:
    """An image's thumbnail, under the same rule as the image."""
    services: Services = request.state.services
    viewer = await auth.user_for_token(services, auth.token_from(request))
    return await downloads.serve(services, viewer, request.path_params["file_id"], thumbnail=True,
                             if_none_match=request.headers.get("if-none-match"),
                             byte_range=request.headers.get("range"), if_range=request.headers.get("if-range"))


async def conversation_timer(request: Request) -> Response:
    """A conversation's disappearing-message timer: read it, or set it for both parties."""
    services, user = await auth.authenticated(request)
    peer = request.path_params["username"]
    if request.method == "GET":
        return JSONResponse(await timers.get_timer(services, user, peer))
    _check_rate(services.rest_change_limiter, user)  # each change is pushed to both parties' sockets
    seconds = timers.parse_seconds(await read_json(request))
    return JSONResponse(await timers.set_timer(services, user, peer, seconds))


async def delete_message(request: Request) -> Response:
    """Delete one message for both parties; its file is gone from disk before this answers."""
    services, user = await auth.authenticated(request)
    _check_rate(services.rest_change_limiter, user)
    raw = request.path_params["message_id"]
    return JSONResponse({"deleted": await erasure.delete_for_everyone(services, user, raw if raw < 2**63 else 0)})


async def healthz(request: Request) -> Response:
    """The process is up (no dependency is checked: a liveness probe)."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """The database answers: a readiness probe for load balancers."""
    services: Services = request.state.services
    if not await services.db.is_reachable():
        raise AppError(503, "not_ready", "The database is not reachable.")
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    """Prometheus metrics of this host's workers (not exposed through the nginx kit)."""
    services: Services = request.state.services
    services.sample_metrics()
    body, content_type = services.metrics.exposition()
    return Response(body, media_type=content_type)


async def openapi_document(request: Request) -> Response:
    """The OpenAPI description of this API."""
    return JSONResponse(openapi.document())


def served_methods(table: list[BaseRoute]) -> list[str]:
    """Every HTTP method the route table serves, for CORS preflights: a hand-kept list forgot PUT."""
    return sorted({method for route in table if isinstance(route, Route) for method in route.methods or ()})


routes: list[BaseRoute] = [
    Route("/api/register/", register, methods=["POST"]),
    Route("/api/login/", login, methods=["POST"]),
    Route("/api/logout/", logout, methods=["POST"]),
    Route("/api/user-profile/", user_profile, methods=["GET", "PATCH"]),
    Route("/api/users/{username}/", find_user, methods=["GET"]),
    Route("/api/users/{username}", find_user, methods=["GET"]),
    Route("/api/sessions/", list_sessions, methods=["GET"]),
    Route("/api/sessions/{session_id:int}", revoke_session, methods=["DELETE"]),
    Route("/api/send-message/", send_message, methods=["POST"]),
    Route("/api/conversations/", conversations, methods=["GET"]),
    Route("/api/messages/", messages, methods=["GET"]),
    Route("/api/messages/{message_id:int}/", delete_message, methods=["DELETE"]),
    Route("/api/messages/{message_id:int}", delete_message, methods=["DELETE"]),
    Route("/api/conversations/{username}/timer/", conversation_timer, methods=["GET", "PUT"]),
    Route("/api/conversations/{username}/timer", conversation_timer, methods=["GET", "PUT"]),
    Route("/api/upload-file/", upload_file, methods=["POST"]),
    Route("/media/{file_id}", media_file, methods=["GET"]),
    Route("/media/{file_id}/thumbnail", media_thumbnail, methods=["GET"]),
    Route("/api/openapi.json", openapi_document, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    WebSocketRoute(sockets.PATH, sockets.chat_socket),  # app.ChatSocketFirst serves it ahead of the middleware
    Route("/", webclient.index, methods=["GET"]),
    Route("/assets/{name}", webclient.asset, methods=["GET"]),
]
