"""Story helpers: people who register, log in, open sockets and chat (after flaskr's AuthActions)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import io
import json
import re
import ssl
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from PIL import Image
from websockets.asyncio.client import ClientConnection, connect

from secure_link.config import Settings
from secure_link.fanout import Gap, Subscription

PHRASE = "correct horse battery staple"
BOUNDARY = "sl-test-boundary-7f3a9c"

# httpx builds a new SSL context for every client (certifi's bundle parsed again: 10-30 ms of
# CPU), and the stories make a client per request, thousands a run, against plain-http
# servers. One context, made once, serves them all (docs/testing.md, "Run time").
ONE_TLS_CONTEXT = ssl.create_default_context()


@dataclasses.dataclass
class Server:
    """A running server: where to reach it and the settings it runs with."""

    address: str
    settings: Settings
    pid: int | None = None  # set when the server runs in its own process
    invite: str | None = None  # the code its people register with, when it takes them by invite

    @property
    def http_url(self) -> str:
        return f"http://{self.address}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.address}/ws/chat/"

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http_url, timeout=10, verify=ONE_TLS_CONTEXT, **kwargs)

    def person(self, name: str) -> Person:
        return Person(self, name)


# Every socket a story opened. conftest's `cut_leftover_sockets` cuts those still open when
# each test ends: one garbage-collected open is a ResourceWarning, an error in this suite,
# raised in whichever test happens to be running (or at the session's end) when it is collected.
OPENED: list[Socket] = []


class Socket:
    """A real WebSocket client with helpers to wait for a frame of a given type."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    async def send(self, frame: Any) -> None:
        await self.connection.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.connection.recv(), timeout))

    async def expect(self, kind: str, timeout: float = 5.0,
                     skip: tuple[str, ...] = ("presence", "typing", "resync")) -> dict[str, Any]:
        """The next frame of `kind`, passing over chatter in `skip`; anything else fails."""
        while True:
            frame = await self.next(timeout)
            if frame.get("type") == kind:
                if kind == "error":  # the socket form of the one error shape (docs/api.md)
                    assert isinstance(frame["code"], str) and frame["code"], frame
                    assert isinstance(frame["message"], str) and frame["message"], frame
                    for explanation in frame.get("fields", {}).values():  # each named field says what is wrong
                        assert isinstance(explanation, str) and explanation, frame
                return frame
            assert frame.get("type") in skip, f"expected {kind}, got {frame}"

    async def silent(self, seconds: float = 0.3, skip: tuple[str, ...] = ("presence",)) -> None:
        """Assert nothing but `skip` frames arrives for a while."""
        try:
            while True:
                frame = await self.next(seconds)
                assert frame.get("type") in skip, f"expected silence, got {frame}"
        except TimeoutError:
            return

    async def closed_with(self, timeout: float = 5.0) -> int:
        """Read until the server closes; the close code."""
        try:
            while True:
                await asyncio.wait_for(self.connection.recv(), timeout)
        except Exception:  # noqa: BLE001, S110 - any end of reading: the close code says how it ended
            pass
        assert self.connection.close_code is not None, "socket did not close"
        return self.connection.close_code

    async def close(self) -> None:
        await self.connection.close()


class Person:
    """A user of the story: `alice = server.person("alice"); await alice.register()`."""

    def __init__(self, server: Server, name: str) -> None:
        self.server = server
        self.username = f"{name}_{uuid.uuid4().hex[:8]}"
        self.phrase = PHRASE
        self.token: str | None = None
        self.user: dict[str, Any] | None = None
        self.sockets: list[Socket] = []

    async def register(self, invite: str | None = None) -> Person:
        invite = invite or self.server.invite
        body = {"username": self.username, "phrase": self.phrase, **({"invite": invite} if invite else {})}
        async with self.server.client() as http:
            response = await http.post("/api/register/", json=body)
        assert response.status_code == 201, response.text
        self.token, self.user = response.json()["token"], response.json()["user"]
        return self

    async def login(self) -> str:
        """A new session (another device); returns its token."""
        async with self.server.client() as http:
            response = await http.post("/api/login/", json={"username": self.username, "phrase": self.phrase})
        assert response.status_code == 200, response.text
        return response.json()["token"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        async with self.server.client() as http:
            headers = {"Authorization": f"Bearer {token or self.token}", **kwargs.pop("headers", {})}
            return await http.request(method, path, headers=headers, **kwargs)

    async def connect(self, query: str = "", token: str | None = None, ready: bool = True, **kwargs: Any) -> Socket:
        """Open a socket authenticated by header; wait for `ready` unless told not to."""
        headers = {"Authorization": f"Bearer {token or self.token}"} if (token or self.token) else {}
        headers.update(kwargs.pop("headers", {}))
        connection = await connect(self.server.ws_url + query, additional_headers=headers,
                                   open_timeout=5, **kwargs)
        socket = Socket(connection)
        OPENED.append(socket)
        self.sockets.append(socket)
        if ready:
            frame = await socket.expect("ready")
            assert frame["user"]["username"] == self.username
        return socket

    async def say(self, socket: Socket, to: Person, text: str, client_id: str | None = None) -> dict[str, Any]:
        """Send a chat frame and return the acknowledged Message."""
        frame: dict[str, Any] = {"type": "chat", "to": to.username, "message": text}
        if client_id is not None:
            frame["client_id"] = client_id
        await socket.send(frame)
        # replays after a fan-out gap may come first; clients dedupe those by id
        ack = await socket.expect("ack", skip=("presence", "typing", "chat", "resync"))
        assert ack["client_id"] == client_id  # what a client matches its pending send by (null without one)
        return ack["message"]

    def on(self, server: Server) -> Person:
        """The same person and session, reaching another worker."""
        twin = copy.copy(self)
        twin.server, twin.sockets = server, []
        return twin

    async def close_sockets(self) -> None:
        for socket in self.sockets:
            await socket.close()
        self.sockets.clear()


async def converse(alice: Person, alice_tab: Socket, bob: Person, bob_tab: Socket, text: str) -> dict[str, Any]:
    """Alice says something; Bob hears it live."""
    sent = await alice.say(alice_tab, bob, text)
    assert (await bob_tab.expect("chat", timeout=10))["message"] == sent
    return sent


async def hear_until_live(alice: Person, alice_tab: Socket, bob: Person, bob_tab: Socket) -> set[int]:
    """After an outage: Alice asks "are you back?" until Bob hears her live; every id Bob heard meanwhile.

    Bob never sends `sync`: whatever he heard came live or from the socket's own catch-up.
    """
    heard: set[int] = set()
    for attempt in range(40):
        marker = await alice.say(alice_tab, bob, f"are you back? {attempt}")
        with contextlib.suppress(asyncio.TimeoutError):
            while marker["id"] not in heard:
                heard.add((await bob_tab.expect("chat", timeout=0.5))["message"]["id"])
            return heard
    raise AssertionError("live delivery did not resume")


def unique_address() -> dict[str, str]:
    """A client address of this test's own, as a trusted proxy reports it."""
    return {"X-Forwarded-For": f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"}


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> None:
    """A refusal in the one error shape: its status, code, a message, and the field named."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    for explanation in body["error"].get("fields", {}).values():  # each named field says what is wrong
        assert isinstance(explanation, str) and explanation, body
    if field is not None:
        assert field in body["error"]["fields"], body


async def sync(socket: Socket, since: int) -> tuple[list[int], int]:
    """One `sync`: the ids of the chat frames between the request and `synced`, and `last_id`.

    Callers make sure no live chat frame can arrive meanwhile (nothing is
    published to this user), so every id counted here came from the replay.
    """
    await socket.send({"type": "sync", "since": since})
    ids: list[int] = []
    while True:
        frame = await socket.next()
        if frame["type"] == "synced":
            return ids, frame["last_id"]
        if frame["type"] == "chat":
            ids.append(frame["message"]["id"])


# ---- files ----------------------------------------------------------------

def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48), **options: Any) -> bytes:
    """A small image generated here, so no binary is committed."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(buffer, fmt, **options)
    return buffer.getvalue()


PNG = image_bytes()


def multipart(*parts: tuple[str, str | None, bytes]) -> dict[str, Any]:
    """Request kwargs for a hand-built multipart body, so hostile names arrive byte for byte."""
    body = b""
    for field, filename, content in parts:
        disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n".encode()
        body += content + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    return {"content": body, "headers": {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}}


def form(content: bytes | None, name: str = "upload.bin", purpose: str | None = None) -> dict[str, Any]:
    """An upload form: the file (if any) and its purpose (if any)."""
    parts: list[tuple[str, str | None, bytes]] = []
    if content is not None:
        parts.append(("file", name, content))
    if purpose is not None:
        parts.append(("purpose", None, purpose.encode()))
    return multipart(*parts) if parts else multipart(("note", None, b"no file here"))


async def upload(person: Person, content: bytes, name: str = "upload.bin", purpose: str | None = None) -> dict[str, Any]:
    """The person uploads a file; the File as the server will serve it."""
    response = await person.api("POST", "/api/upload-file/", **form(content, name, purpose))
    assert response.status_code == 201, response.text
    return response.json()["file"]


def found_on_disk(root: Path, needles: list[bytes]) -> dict[str, list[bytes]]:
    """What a thief with the disk finds: every file under `root` holding any needle, and which."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            content = path.read_bytes()
            if hits := [needle for needle in needles if needle in content]:
                found[path.relative_to(root).as_posix()] = hits
    return found


# ---- what an operator scrapes ---------------------------------------------

def sample(text: str, name: str, labels: str = "") -> float:
    """One sample's value from the Prometheus text format (0 when absent)."""
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def errors_counted(metrics: str) -> float:
    """Every refusal counted in `secure_link_errors_total`, whatever its code."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("secure_link_errors_total{"))


async def scrape(server: Server) -> str:
    async with server.client() as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return answer.text


# ---- fan-out stories: fresh channels, generous waits, and a link that goes silent ----

PROBE = 0.2  # a short probe interval, so probes interleave with every story's LISTENs
WAIT = 10.0  # a timeout on an event means "never arrived", not "arrived slowly"


def channel(label: str) -> str:
    """A fresh channel name: the servers are shared, so stories never reuse one."""
    return f"{label}_{uuid.uuid4().hex[:12]}"


async def next_item(subscription: Subscription) -> str | Gap:
    return await asyncio.wait_for(subscription.get(), WAIT)


async def waiting_for_a_lock(db: Any, statement_like: str) -> bool:
    """Whether a statement of this database whose text is LIKE `statement_like` waits for a lock.
    Ask from a connection outside any transaction: pg_stat_activity is read once per transaction."""
    return bool(await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                  "AND datname = current_database() AND pid <> pg_backend_pid() "
                                  "AND query LIKE $1", statement_like))


async def refuse(db: Any, trigger: str) -> None:
    """A fault at one statement, without editing the code: `trigger` completes a CREATE (when,
    on what) whose function raises 'refused by the test'. Only in a test's own database."""
    await db.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$")
    await db.execute(f"CREATE {trigger} EXECUTE FUNCTION refuse()")


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll until true: servers notice a closed connection a moment after the client closes it."""
    async def poll() -> None:
        while not await condition():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), WAIT)


class SilentLink:
    """A TCP hop that can go silent: the far end never learns the link died (a half-open socket)."""

    def __init__(self) -> None:
        self._links: list[dict[str, object]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self, open_target: Opener) -> int:
        """Listen on a free port; each accepted connection gets its own connection to the target."""
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            far_reader, far_writer = await open_target()
            link: dict[str, object] = {"silent": False, "writers": (writer, far_writer)}
            self._links.append(link)
            for source, sink in ((reader, far_writer), (far_reader, writer)):
                self._tasks.add(asyncio.create_task(self._pipe(source, sink, link)))

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    def go_silent(self) -> None:
        """Links open now swallow everything; links opened later work normally."""
        for link in self._links:
            link["silent"] = True

    async def close(self) -> None:
        """Abort every link (idempotent)."""
        if self._server is not None:
            self._server.close()
        for link in self._links:
            for writer in link["writers"]:  # type: ignore[attr-defined]
                writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    link: dict[str, object]) -> None:
        while data := await source.read(65536):
            if not link["silent"]:
                sink.write(data)
                await sink.drain()
        sink.transport.abort()


Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def real_server(url: str) -> tuple[Opener, Callable[[int], str]]:
    """How to reach the server behind `url` (TCP or unix socket), and the URL via a local port."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    socket_dir = "" if parts.hostname else query.pop("host", "")
    real_port = parts.port or int(query.pop("port", 6379 if parts.scheme.startswith("redis") else 5432))
    if socket_dir:
        path = f"{socket_dir}/.s.PGSQL.{real_port}"
        opener: Opener = lambda: asyncio.open_unix_connection(path)
    else:
        opener = lambda: asyncio.open_connection(parts.hostname, real_port)
    userinfo = parts.netloc.rpartition("@")[0]

    def via(port: int) -> str:
        netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))

    return opener, via


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    """How many answers had each status."""
    counted: dict[int, int] = {}
    for response in responses:
        counted[response.status_code] = counted.get(response.status_code, 0) + 1
    return counted
