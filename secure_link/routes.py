"""HTTP handlers: check who asks, read and validate, call one domain function, answer JSON.

No SQL and no `try` here: domain code raises `AppError`, which app.py turns
into the one error shape. The route table is the explicit list at the end.
"""

from __future__ import annotations

import functools

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from secure_link import accounts, chat, files, sockets
from secure_link.accounts import SESSION_COOKIE, User
from secure_link.errors import AppError, rate_limited
from secure_link.http import client_address, is_secure, openapi, own_origin, webclient
from secure_link.ratelimit import KeyedBuckets
from secure_link.services import Services
from secure_link.wire import JSONResponse, loads

_JSON_TYPE = "application/json"


class Id64(Convertor[int]):
    """A row id in a path: digits, as Starlette's `int`, but one past PostgreSQL's bigint is 0,
    which names no row (a 404 from the domain, not a 500 from the database)."""

    regex = "[0-9]+"

    def convert(self, value: str) -> int:
        number = int(value)
        return number if number < 2**63 else 0

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id64", Id64())  # Starlette's only way to name a convertor; before the table below


def _services(request: Request) -> Services:
    services: Services = request.state.services
    return services


async def authenticated(request: Request) -> tuple[Services, User]:
    """The request's services and user, or 401 (403 for a cookie sent by another site's page)."""
    services = _services(request)
    return services, await accounts.authenticate(request, services.db, services.settings, services.sessions)


async def read_json(request: Request) -> object:
    """The JSON body: 415 unless declared JSON, 413 over MAX_JSON_BYTES, 400 if unparsable."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != _JSON_TYPE:
        raise AppError(415, "unsupported_media_type", "Send the body as application/json.")
    limit = _services(request).settings.max_json_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AppError(413, "too_large", f"The body is over {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise AppError(413, "too_large", f"The body is over {limit} bytes.")
    try:
        return loads(body)
    except (ValueError, RecursionError):  # also too deep, or a number of 4,300+ digits
        raise AppError(400, "bad_json", "The body is not valid JSON.") from None


def _with_session_cookie(request: Request, response: Response, token: str) -> Response:
    settings = _services(request).settings
    response.set_cookie(SESSION_COOKIE, token, max_age=settings.session_ttl, httponly=True,
                        samesite="lax", secure=is_secure(request, settings), path="/")
    return response


def _check_rate(limiter: KeyedBuckets, user: User) -> None:
    """429 with Retry-After once the user has spent this budget (CHAT_RATE_PER_S, bursts of twice that)."""
    if wait := limiter.take(user.id):
        raise rate_limited(wait)


def _origin_of(request: Request) -> tuple[Services, str, str]:
    services = _services(request)
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
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response


async def logout(request: Request) -> Response:
    """End this session and clear the user's chats; any body is ignored."""
    services, user = await authenticated(request)
    cleared = await chat.logout(services, user)
    return _signed_out(JSONResponse({"cleared": cleared}))


async def user_profile(request: Request) -> Response:
    """Read (GET) or change (PATCH: display_name) the logged-in user's profile."""
    services, user = await authenticated(request)
    if request.method == "PATCH":
        body = await read_json(request)
        return JSONResponse({"user": await accounts.update_profile(services.db, services.fanout, user, body)})
    return JSONResponse({"user": await accounts.profile(services.db, user)})


async def find_user(request: Request) -> Response:
    """Someone's public profile, so a chat is opened only with a username someone has."""
    services, user = await authenticated(request)
    username = request.path_params["username"]
    return JSONResponse(await accounts.find_person(services.db, services.rest_send_limiter, user, username))


async def list_sessions(request: Request) -> Response:
    """The user's live sessions, to spot and revoke one left logged in elsewhere."""
    services, user = await authenticated(request)
    return JSONResponse({"sessions": await accounts.list_sessions(services.db, user)})


async def revoke_session(request: Request) -> Response:
    """Revoke one of the user's sessions; its sockets close with 4401."""
    services, user = await authenticated(request)
    session_id = request.path_params["session_id"]
    await accounts.revoke_session(services.db, services.fanout, user, session_id)
    return JSONResponse({"revoked": session_id})


async def send_message(request: Request) -> Response:
    """REST fallback: same path and idempotency as the socket's chat frame."""
    services, user = await authenticated(request)
    _check_rate(services.rest_send_limiter, user)
    draft = chat.parse_draft(await read_json(request), services.settings.max_message_chars)
    message, created = await chat.send_message(services, user, draft)
    request.state.message_id = message["id"]  # for the access log line
    return JSONResponse(message, status_code=201 if created else 200)


async def conversations(request: Request) -> Response:
    """The user's conversations, newest first, with unread counts."""
    services, user = await authenticated(request)
    return JSONResponse({"conversations": await chat.conversations(services.db, services.bodies, user)})


async def messages(request: Request) -> Response:
    """A page of one conversation's history (cursor by id, either direction)."""
    services, user = await authenticated(request)
    return JSONResponse(await chat.history(services.db, services.bodies, user, dict(request.query_params)))


async def upload_file(request: Request) -> Response:
    """Stream an attachment or avatar to disk; the answer is the File as it will be served."""
    services, user = await authenticated(request)
    on_avatar = functools.partial(accounts.avatar_changed, services.db, services.fanout, user)
    file = await files.upload(services, user.id, request.headers, request.stream(), on_avatar=on_avatar)
    return JSONResponse({"file": file}, status_code=201)


async def _media(request: Request, thumbnail: bool) -> Response:
    """A file or its thumbnail, to those allowed to see it; anyone else, anonymous included, gets the same 404."""
    services = _services(request)
    viewer = await accounts.user_for_token(services.db, services.settings.session_ttl, accounts.token_from(request),
                                           services.sessions)
    return await files.serve(services, viewer.id if viewer else None, request.path_params["file_id"],
                             thumbnail=thumbnail, headers=request.headers)


async def media_file(request: Request) -> Response:
    """A file, to those allowed to see it; anyone else, anonymous included, gets the same 404."""
    return await _media(request, thumbnail=False)


async def media_thumbnail(request: Request) -> Response:
    """An image's thumbnail, under the same rule as the image."""
    return await _media(request, thumbnail=True)


async def conversation_timer(request: Request) -> Response:
    """A conversation's disappearing-message timer: read it, or set it for both parties."""
    services, user = await authenticated(request)
    peer = request.path_params["username"]
    if request.method == "GET":
        return JSONResponse(await chat.get_timer(services.db, user, peer))
    _check_rate(services.rest_change_limiter, user)  # each change is pushed to both parties' sockets
    seconds = chat.parse_seconds(await read_json(request))
    return JSONResponse(await chat.set_timer(services.db, services.fanout, user, peer, seconds))


async def delete_message(request: Request) -> Response:
    """Delete one message for both parties; its file is gone from disk before this answers."""
    services, user = await authenticated(request)
    _check_rate(services.rest_change_limiter, user)
    message_id = request.path_params["message_id"]
    return JSONResponse({"deleted": await chat.delete_for_everyone(services, user, message_id)})


async def registration(request: Request) -> Response:
    """How people may register here: open, by invite, or not at all (no session needed)."""
    return JSONResponse({"mode": _services(request).settings.registration})


def _invites_of(request: Request) -> tuple[bytes, str]:
    """The key of invite codes' tags, and the origin their links open (PUBLIC_URL, else this server's)."""
    settings = _services(request).settings
    return accounts.invites.tag_key(settings.pepper or ""), own_origin(request, settings)


async def create_invite(request: Request) -> Response:
    """A new invite of the user's, within INVITES_PER_USER live ones."""
    services, user = await authenticated(request)
    uses, expires_in = accounts.invites.parse_terms(await read_json(request))
    key, origin = _invites_of(request)
    row = await accounts.invites.create(services.db, user, uses, expires_in, services.settings.invites_per_user)
    return JSONResponse(accounts.invites.invite_json(key, row, origin), status_code=201)


async def list_invites(request: Request) -> Response:
    """The user's own live invites, newest first."""
    services, user = await authenticated(request)
    key, origin = _invites_of(request)
    rows = await services.db.fetch("list_live_invites", user.id)
    return JSONResponse({"invites": [accounts.invites.invite_json(key, row, origin) for row in rows],
                         "limit": services.settings.invites_per_user})


async def revoke_invite(request: Request) -> Response:
    """Revoke one of the user's own live invites."""
    services, user = await authenticated(request)
    key, origin = _invites_of(request)
    row = await accounts.invites.revoke_own(services.db, key, user, request.path_params["code"])
    return JSONResponse({"revoked": accounts.invites.invite_json(key, row, origin)})


async def list_blocks(request: Request) -> Response:
    """Whom the user blocks, newest first."""
    services, user = await authenticated(request)
    return JSONResponse({"blocks": await accounts.list_blocks(services.db, user)})


async def block(request: Request) -> Response:
    """Block someone (PUT), or lift one's block (DELETE)."""
    services, user = await authenticated(request)
    username = request.path_params["username"]
    if request.method == "PUT":
        return JSONResponse(await accounts.block(services.db, services.fanout, user, username))
    return JSONResponse(await accounts.unblock(services.db, services.fanout, user, username))


async def change_phrase(request: Request) -> Response:
    """A new phrase; every other session of the user ends."""
    services, user = await authenticated(request)
    address, body = client_address(request, services.settings), await read_json(request)
    return JSONResponse({"user": await accounts.change_phrase(services, services.fanout, user, body, address)})


async def delete_account(request: Request) -> Response:
    """Leave for good: everything a logout erases for every session, then the account itself."""
    services, user = await authenticated(request)
    address, body = client_address(request, services.settings), await read_json(request)
    return _signed_out(JSONResponse({"deleted": await chat.delete_account(services, user, body, address)}))


async def healthz(request: Request) -> Response:
    """The process is up (no dependency is checked: a liveness probe)."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """The database answers: a readiness probe for load balancers."""
    services = _services(request)
    if not await services.db.is_reachable():
        raise AppError(503, "not_ready", "The database is not reachable.")
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    """Prometheus metrics of this host's workers (not exposed through the nginx kit)."""
    services = _services(request)
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
    Route("/api/registration/", registration, methods=["GET"]),
    Route("/api/registration", registration, methods=["GET"]),
    Route("/api/invites/", list_invites, methods=["GET"]),
    Route("/api/invites", list_invites, methods=["GET"]),
    Route("/api/invites/", create_invite, methods=["POST"]),
    Route("/api/invites", create_invite, methods=["POST"]),
    Route("/api/invites/{code}/", revoke_invite, methods=["DELETE"]),
    Route("/api/invites/{code}", revoke_invite, methods=["DELETE"]),
    Route("/api/blocks/", list_blocks, methods=["GET"]),
    Route("/api/blocks", list_blocks, methods=["GET"]),
    Route("/api/blocks/{username}/", block, methods=["PUT", "DELETE"]),
    Route("/api/blocks/{username}", block, methods=["PUT", "DELETE"]),
    Route("/api/change-phrase/", change_phrase, methods=["POST"]),
    Route("/api/change-phrase", change_phrase, methods=["POST"]),
    Route("/api/delete-account/", delete_account, methods=["POST"]),
    Route("/api/delete-account", delete_account, methods=["POST"]),
    Route("/api/sessions/", list_sessions, methods=["GET"]),
    Route("/api/sessions/{session_id:id64}", revoke_session, methods=["DELETE"]),
    Route("/api/send-message/", send_message, methods=["POST"]),
    Route("/api/conversations/", conversations, methods=["GET"]),
    Route("/api/messages/", messages, methods=["GET"]),
    Route("/api/messages/{message_id:id64}/", delete_message, methods=["DELETE"]),
    Route("/api/messages/{message_id:id64}", delete_message, methods=["DELETE"]),
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
