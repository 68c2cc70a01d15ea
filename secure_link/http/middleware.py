"""The HTTP middleware of the app: an access log with request ids, CORS in our error shape,
and the security headers every answer carries."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from secure_link.errors import error_body

access_log = logging.getLogger("secure_link.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in the one error shape."""

    def preflight_response(self, request_headers):  # type: ignore[no-untyped-def]
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        reason = bytes(response.body).decode(errors="replace")
        return JSONResponse(error_body("cors_refused", reason), 400)


# The built client needs nothing inline (docs/security.md, "Pages, frames and caches"): its script and
# styles are files under /assets/, its images come from /media/ (data: is its empty favicon; blob: for
# previews of files picked to upload), and its socket is same-origin, which connect-src 'self' covers
# (ws: and wss: included, CSP Level 3). tests/test_browser.py reports any violation.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",  # the client's page and assets, and media, set their own
}


class SecurityHeaders:
    """Every HTTP answer carries SECURITY_HEADERS, unless it set one of them itself.

    Outermost (app.create_app wraps Starlette in it), so Starlette's own 500 answer,
    sent from outside the middleware list, carries them too. No page of another
    origin may frame ours (its Log out button erases both sides of every
    conversation), and no API answer or file stays in a browser's disk cache.
    """

    def __init__(self, app: ASGIApp, headers: dict[str, str] = SECURITY_HEADERS) -> None:
        self.app = app
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = list(message.get("headers", []))
                present = {bytes(name).lower() for name, _ in own}
                message["headers"] = own + [header for header in self.headers if header[0] not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AccessLog:
    """One structured log line per HTTP request: method, path, status, duration, request id,
    and the id of the message a send stored, to follow it from this line to its deliveries.

    The request id is the proxy's `X-Request-ID` (nginx's `$request_id`) when
    it looks like one, else a new one; it is answered in `X-Request-ID` too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = [500]

        async def send_and_remember(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_and_remember)
        finally:
            access_log.info("request", extra={
                "method": scope["method"], "path": scope["path"], "status": status[0],
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "request_id": request_id, **({"message_id": state["message_id"]} if "message_id" in state else {}),
            })


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex[:16]
