"""`create_app(settings)`: routes, middleware, the error handler and one lifespan.

The lifespan opens everything a worker shares (pool, fan-out, limits) and
yields it as `{"services": ...}`, which handlers read as `request.state.services`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from secure_link import housekeeping, routes, sockets
from secure_link.accounts import PhraseHasher, SessionCache
from secure_link.chat import MessageWriter, announce_messages, client_tag_key, run_sweeper, stored_message
from secure_link.config import Settings
from secure_link.db import Database
from secure_link.encryption import BodyKeys, DecryptionError, epochs, master_key_path, open_keyring, secretfile
from secure_link.errors import AppError, DatabaseUnavailable, error_body, outage, undecryptable
from secure_link.fanout import EnvelopeSeal, Fanout
from secure_link.files import return_freed_pixels_to_the_system
from secure_link.http import AccessLog, JsonCORSMiddleware, SecurityHeaders, webclient
from secure_link.ops import Metrics, defer_shutdown_signals, devdb
from secure_link.ratelimit import BoundedSlots, KeyedBuckets, SlidingWindow
from secure_link.schema import apply_schema
from secure_link.services import Services

DRAIN_TIMEOUT_S = 5.0  # longest wait for in-flight acks before uvicorn closes sockets
log = logging.getLogger("secure_link")


class ChatSocketFirst:
    """The ASGI entry: the chat socket straight to its handler, everything else to Starlette.

    A socket lives for hours, and each layer around it keeps a coroutine frame
    alive all that time (docs/performance.md, "idle socket RSS"); none of them
    does anything for it: the access log and CORS are HTTP's, and the socket
    checks its own Origin and closes with its own codes. Lifespan state reaches
    it all the same: uvicorn copies it into every connection's scope.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == sockets.PATH:
            await sockets.chat_socket(WebSocket(scope, receive, send))
        else:
            await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> ChatSocketFirst:
    """The ASGI app; `settings` defaults to the environment (uvicorn's --factory)."""
    settings = settings or Settings.from_env()
    return ChatSocketFirst(SecurityHeaders(Starlette(
        routes=routes.routes,
        middleware=[
            Middleware(AccessLog),
            Middleware(JsonCORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=True,
                       allow_methods=routes.served_methods(routes.routes),
                       allow_headers=["Authorization", "Content-Type"], max_age=600),
        ],
        exception_handlers={AppError: app_error, HTTPException: http_error,
                            DatabaseUnavailable: dependency_error, OSError: dependency_error,
                            DecryptionError: decryption_error, ClientDisconnect: client_gone,
                            Exception: internal_error},
        lifespan=lambda app: lifespan(settings),
    )))


async def open_services(settings: Settings) -> Services:
    """Connect the pool and the fan-out; the schema is brought up to date first."""
    pepper = secretfile.pepper(settings)  # before anything starts: a missing secret fails fast
    key_file = master_key_path(settings)
    return_freed_pixels_to_the_system()
    url = await asyncio.to_thread(devdb.database_url, settings)
    await apply_schema(url)
    db = await Database.connect(url)
    try:  # a start that fails here leaves no pool behind (tests and `serve` retries start again)
        keyring = await open_keyring(db, key_file)
        bodies = BodyKeys(db, keyring)
        fanout = Fanout(settings.broadcast_url or url, queue_size=settings.ws_send_queue,
                        seal=EnvelopeSeal(keyring, bodies))
        await fanout.connect()
    except BaseException:
        await db.close()
        raise
    rate = settings.chat_rate_per_s
    services = Services(
        settings=settings.replace(database_url=url, pepper=pepper, master_key_file=key_file),
        db=db,
        fanout=fanout,
        keyring=keyring,
        bodies=bodies,
        phrases=await PhraseHasher.start(pepper, settings.bcrypt_rounds,
                                         BoundedSlots(settings.bcrypt_concurrency, settings.bcrypt_queue)),
        register_limiter=SlidingWindow(settings.register_rate_per_min, 60.0),
        rest_send_limiter=KeyedBuckets(rate, 2 * rate),
        rest_change_limiter=KeyedBuckets(rate, 2 * rate),
        image_slots=asyncio.Semaphore(max(1, settings.image_concurrency)),
        upload_limiter=SlidingWindow(settings.upload_rate_per_min, 60.0),
        metrics=Metrics(settings.metrics_dir),
        sessions=SessionCache(settings.session_cache_size),
    )
    services.writer = MessageWriter(db, bodies, client_tag_key(pepper), stored_message,
                                    functools.partial(announce_messages, fanout), services.metrics.send_batch_size.observe)
    services.writer.start()
    # registered before the first socket: its connection row needs this worker's (housekeeping's
    # heartbeat, a task, could come after a socket accepted under load: a foreign-key error, 1011)
    await db.execute("insert_worker", services.worker_id)
    return services


async def close_services(services: Services) -> None:
    """Store what is queued, then leave no worker row, subscription or connection behind."""
    await services.writer.close()
    with contextlib.suppress(Exception):
        await services.db.execute("delete_worker", services.worker_id)
    await services.fanout.disconnect()
    await services.db.close()


@contextlib.asynccontextmanager
async def lifespan(settings: Settings) -> AsyncIterator[dict[str, Services]]:
    """Open the worker's services and chores for the app's life; close them after."""
    services = await open_services(settings)
    db, media_root = services.db, services.settings.media_root
    tasks = [asyncio.create_task(housekeeping.run(services, settings.housekeeping_interval)),
             asyncio.create_task(run_sweeper(db, services.fanout, media_root, settings.expiry_sweep_interval)),
             asyncio.create_task(epochs.run(db, services.keyring, master_key_path(services.settings),
                                            settings.key_step_interval))]
    restore_signals = defer_shutdown_signals(services.in_flight, DRAIN_TIMEOUT_S)
    try:
        async with services.sessions.hearing(services.fanout):  # every worker, REST-only ones too
            yield {"services": services}
    finally:
        restore_signals()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_services(services)


async def app_error(request: Request, exc: Exception) -> Response:
    """A refusal raised by our code: its status, code, message and fields."""
    assert isinstance(exc, AppError)
    _count_error(request, exc.code)
    return JSONResponse(error_body(exc.code, exc.message, exc.fields), exc.status, headers=exc.headers())


def _count_error(request: Request, code: str) -> None:
    request.state.services.metrics.errors.labels(code).inc()


_HTTP_CODES = {404: ("not_found", "Nothing here."), 405: ("method_not_allowed", "That method is not allowed here.")}


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown route, wrong method) in our shape; a
    browser opening one of the web client's own routes gets its page."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404 and webclient.serves_client_route(request):
        return webclient.index_response(request.state.services.settings.web_root)
    code, message = _HTTP_CODES.get(exc.status_code, ("http_error", str(exc.detail)))
    _count_error(request, code)
    return JSONResponse(error_body(code, message), exc.status_code, headers=exc.headers)


async def dependency_error(request: Request, exc: Exception) -> Response:
    """The database or the disk failed: 503 `unavailable` with Retry-After; else a bug after all.

    Registered per exception class, so Starlette does not re-raise it to the
    server as it does for the catch-all `Exception` handler.
    """
    error = outage(exc)
    if error is None:
        return await internal_error(request, exc)
    log.warning("%s on %s %s: %r", error.code, request.method, request.url.path, exc)
    _count_error(request, error.code)
    return JSONResponse(error_body(error.code, error.message), error.status, headers=error.headers())


async def decryption_error(request: Request, exc: Exception) -> Response:
    """Stored data that does not decrypt: logged for the operator, 500 `undecryptable` to the client."""
    log.error("cannot decrypt stored data on %s %s: %s", request.method, request.url.path, exc)
    return await app_error(request, undecryptable())


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client went away before its body ended (an upload cancelled, a tab closed): not a bug.

    Counted under its own code and logged without a traceback, so nobody can inflate
    `internal` by hanging up; what it had sent is already discarded (uploads.receive).
    Nobody reads the answer, but the access log records its status (499, as nginx says).
    """
    log.info("client disconnected during %s %s", request.method, request.url.path)
    _count_error(request, "client_disconnected")
    return JSONResponse(error_body("client_disconnected", "The client went away before the request ended."), 499)


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, answered without one."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    _count_error(request, "internal")
    return JSONResponse(error_body("internal", "Something went wrong on our side."), 500)
