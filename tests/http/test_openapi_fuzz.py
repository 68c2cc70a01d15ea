"""schemathesis over /api/openapi.json: the document must describe what the server really answers.

Each operation gets a few generated requests (valid ones and deliberately
invalid ones), sent by a registered user's bearer token to the real app under
real uvicorn and PostgreSQL. A 5xx, a status the document does not declare, a
content type it does not name, or a body or header that breaks its schema fails
the test. Generation is derandomized, so CI sees the same requests every run.

Bounded for CI: schemathesis's coverage phase (boundary values, each missing
field, each wrong type) plus 12 generated examples per operation, about 550
requests in all, ~18 s on a loaded 2-core machine. No warning filter is needed:
neither schemathesis nor hypothesis warns under this configuration, and
`filterwarnings = error` would say so if that changed.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import hypothesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from secure_link.http import openapi
from secure_link.config import Settings

from ..conftest import running_server
from ..story import PHRASE, Server, image_bytes

FUZZER, REVOKER = "fuzzer", "revoker"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]

# `/ws/chat/` is a WebSocket: schemathesis speaks HTTP only (its plain-GET 404
# is checked against the document at the end of this module). Everything else is fuzzed. A fuzzed logout or
# session revocation would end the session the other requests use, so those two
# run as a second account with a new session per request (sessions are per user:
# it cannot revoke the first account's).
ENDS_SESSIONS = {"POST /api/logout/", "DELETE /api/sessions/{session_id}"}
DOCUMENT = schemathesis.openapi.from_dict(openapi.document())
schema = DOCUMENT.exclude(path="/ws/chat/")


@pytest.fixture(scope="module")
def live(settings: Settings) -> Iterator[Server]:
    """The app under uvicorn on a thread of its own, since schemathesis sends requests synchronously
    and would block the tests' event loop; stopped, and its thread joined, at the end of the module."""
    started: queue.Queue[Server | BaseException] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        try:
            async with running_server(settings) as server:
                started.put(server)
                while not stop.is_set():
                    await asyncio.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - reported to the fixture below, not lost in the thread
            started.put(exc)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="fuzzed-server")
    thread.start()
    try:
        server = started.get(timeout=60)
        if isinstance(server, BaseException):
            raise server
        yield server
    finally:
        stop.set()
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def fuzzer_token(live: Server) -> str:
    """The session of the account every other request is sent as."""
    return session_token(live, FUZZER, "register")


def session_token(server: Server, username: str, action: str = "login") -> str:
    """A new session (registering the account first when asked): bcrypt at 4 rounds takes milliseconds."""
    answer = httpx.post(f"{server.http_url}/api/{action}/", json={"username": username, "phrase": PHRASE},
                        timeout=10)
    answer.raise_for_status()
    return answer.json()["token"]


@pytest.fixture(scope="module")
def revoker(live: Server) -> None:
    """The second account, whose sessions the session-ending operations may end."""
    session_token(live, REVOKER, "register")


@schema.parametrize()
# deadline off: a loaded CI machine is not a bug. The health checks are about
# generation speed (a pattern-bound username is slow to draw), not the server.
@hypothesis.settings(max_examples=12, derandomize=True, deadline=None, database=None,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.filter_too_much])
def test_every_answer_matches_the_document(case: Any, live: Server, fuzzer_token: str, revoker: None) -> None:
    """No 5xx, and every status, content type, body and header as declared."""
    ends_session = case.operation.label in ENDS_SESSIONS
    token = session_token(live, REVOKER) if ends_session else fuzzer_token
    headers = {"Authorization": f"Bearer {token}"}
    case.call_and_validate(base_url=live.http_url, headers=headers, checks=CHECKS)


def conforms(method: str, path: str, answer: httpx.Response, **path_parameters: str) -> int:
    """Check a real answer against the document with the fuzzer's checks; its status."""
    answer.request.read()  # schemathesis records the request's body; a multipart one is streamed
    DOCUMENT[path][method].Case(path_parameters=path_parameters).validate_response(answer, checks=CHECKS)
    return answer.status_code


def test_answers_the_fuzzer_rarely_reaches_match_the_document(live: Server) -> None:
    """Random names and ids almost never hit a real user, message or file: these do, on purpose."""
    alice, bob = (session_token(live, name, "register") for name in ("conf_alice", "conf_bob"))
    with httpx.Client(base_url=live.http_url, headers={"Authorization": f"Bearer {alice}"}, timeout=10) as http:
        draft = {"to": "conf_bob", "message": "hello", "client_id": "c-1"}
        sends = [conforms("POST", "/api/send-message/", http.post("/api/send-message/", json=draft))
                 for _ in range(2)]
        pages = [conforms("GET", path, http.get(path, params=params)) for path, params in (
            ("/api/messages/", {"with": "conf_bob"}), ("/api/conversations/", {}), ("/api/sessions/", {}))]
        upload = http.post("/api/upload-file/", files={"file": ("a.png", image_bytes(), "image/png")})
        conforms("POST", "/api/upload-file/", upload)
        file_id = upload.json()["file"]["id"]
        url = f"/media/{file_id}"
        fetched = [conforms("GET", "/media/{file_id}", http.get(url, headers=headers), file_id=file_id)
                   for headers in (
                       {}, {"If-None-Match": http.get(url).headers["etag"]}, {"Range": "bytes=0-9"},
                       {"Range": "bytes=999999-"}, {"Range": "lines=1-2"})]
        plain_ws = conforms("GET", "/ws/chat/", http.get("/ws/chat/"))
    assert bob and sends == [201, 200] and pages == [200, 200, 200] and upload.status_code == 201
    assert fetched == [200, 304, 206, 416, 400] and plain_ws == 404
