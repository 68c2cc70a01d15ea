"""Clients of the deploy lab: where their sockets land, a client that outlives its host,
and answers read as sent (every header, the body before decompression, a lying request).

Which host took a socket is read from the hosts themselves: each namespace's
established connections on the app's port (nginx opens one per socket and,
with no upstream keepalive, keeps none for answered requests). A `Talk` sends
on a schedule and, when its socket drops, reconnects through nginx, `sync`s and
resends what was not acknowledged with the same `client_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import socket
import ssl
import time
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from . import lab as lab_parts
from .lab import HOSTS
from ..story import Person, Server, Socket


@dataclasses.dataclass
class ProxiedServer(Server):
    """The public face: nginx over TLS (the lab's own certificate is the only one trusted)."""

    tls: ssl.SSLContext | None = None

    @property
    def http_url(self) -> str:
        return f"https://{self.address}"

    @property
    def ws_url(self) -> str:
        return f"wss://{self.address}/ws/chat/"

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http_url, timeout=10, verify=self.tls, **kwargs)


# ---- where a socket landed ---------------------------------------------------

def socket_counts() -> dict[str, int]:
    return {host: lab_parts.websockets_on(host) for host in HOSTS if host_alive(host)}


def host_alive(host: str) -> bool:
    return bool(lab_parts.namespace_pids(host))


async def settled_counts() -> dict[str, int]:
    """Counts that hold still for 50 ms: an answered request's connection may take a moment to close."""
    counts = socket_counts()
    for _ in range(40):
        await asyncio.sleep(0.05)
        again = socket_counts()
        if again == counts:
            return counts
        counts = again
    raise AssertionError(f"socket counts kept changing: {counts}")


async def landed(before: dict[str, int]) -> str:
    """The host whose count of proxied sockets grew by one (and no other changed)."""
    for _ in range(40):
        now = socket_counts()
        grown = [host for host in now if now[host] == before.get(host, 0) + 1]
        if len(grown) == 1 and all(now[h] == before.get(h, 0) for h in now if h != grown[0]):
            return grown[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no single host took the socket: before {before}, now {socket_counts()}")


async def connect_on(person: Person, tls: ssl.SSLContext, avoid: str | None = None) -> tuple[Socket, str, int]:
    """Open a socket through nginx; if it lands on `avoid`, close and retry (bounded).
    Returns the socket, its host and the attempts it took."""
    for attempt in range(1, 6):
        before = await settled_counts()
        socket_ = await person.connect(ssl=tls)
        host = await landed(before)
        if host != avoid:
            return socket_, host, attempt
        await socket_.close()
        for _ in range(40):
            if socket_counts() == before:
                break
            await asyncio.sleep(0.05)
    raise AssertionError(f"five sockets in a row landed on host {avoid}")


# ---- a host dies ---------------------------------------------------------------

@dataclasses.dataclass
class Talk:
    """One side of the conversation: what it sent, what was acknowledged, what it received."""

    person: Person
    peer: Person
    socket: Socket
    host: str
    sent: dict[str, str] = dataclasses.field(default_factory=dict)       # client_id -> text
    acked: dict[str, int] = dataclasses.field(default_factory=dict)      # client_id -> message id
    received: dict[int, str] = dataclasses.field(default_factory=dict)   # message id -> client_id (from peer)
    frames_received: int = 0
    unacked_at_kill: int = 0
    reconnected_at: float | None = None
    errors: list[dict] = dataclasses.field(default_factory=list)


async def talk(side: Talk, tls: ssl.SSLContext, count: int, interval: float, killed: asyncio.Event) -> None:
    """Send `count` messages; on a lost socket reconnect through nginx, sync, and resend
    every unacknowledged message with its client_id (safe: the server stores it once)."""
    next_send = time.monotonic()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (len(side.sent) < count or len(side.acked) < len(side.sent)):
        try:
            if len(side.sent) < count and time.monotonic() >= next_send:
                client_id = f"{side.person.username}-{len(side.sent)}"
                side.sent[client_id] = f"#{len(side.sent)}"
                await side.socket.send({"type": "chat", "to": side.peer.username, "message": side.sent[client_id],
                                        "client_id": client_id})
                next_send += interval
            wait = max(0.01, next_send - time.monotonic()) if len(side.sent) < count else 1.0
            with contextlib.suppress(asyncio.TimeoutError):
                take(side, await side.socket.next(timeout=wait))
        except ConnectionClosed:
            if killed.is_set():
                side.unacked_at_kill = len(side.sent) - len(side.acked)
            await reconnect(side, tls)
    assert len(side.acked) == len(side.sent) == count, f"{side.person.username}: not all acknowledged"


def take(side: Talk, frame: dict[str, Any]) -> None:
    if frame["type"] == "ack":
        side.acked[frame["client_id"]] = frame["message"]["id"]
    elif frame["type"] == "chat" and frame["message"]["from"] == side.peer.username:
        side.frames_received += 1
        side.received[frame["message"]["id"]] = frame["message"]["client_id"]
    elif frame["type"] == "error":
        side.errors.append(frame)


async def reconnect(side: Talk, tls: ssl.SSLContext) -> None:
    for _ in range(50):
        with contextlib.suppress(OSError, ConnectionClosed, asyncio.TimeoutError):
            side.socket = await side.person.connect(ssl=tls)
            side.reconnected_at = time.monotonic()
            await side.socket.send({"type": "sync", "since": 0})
            for client_id, text in side.sent.items():
                if client_id not in side.acked:
                    await side.socket.send({"type": "chat", "to": side.peer.username, "message": text,
                                            "client_id": client_id})
            return
        await asyncio.sleep(0.1)
    raise AssertionError("could not reconnect through nginx for 5 s")


async def sync_all(side: Talk) -> None:
    """A final `sync` from the start: whatever the socket missed live arrives now."""
    await side.socket.send({"type": "sync", "since": 0})
    for _ in range(10_000):
        frame = await side.socket.next(timeout=10)
        if frame["type"] == "synced":
            return
        take(side, frame)
    raise AssertionError("no synced")


# ---- answers as sent ------------------------------------------------------------

SECURITY_HEADERS = ("strict-transport-security", "content-security-policy", "x-frame-options",
                    "referrer-policy", "x-content-type-options")


def each_once(headers: list[tuple[str, str]], what: str) -> dict[str, str]:
    """Each security header exactly once (the app sends its own on pages and API answers:
    two CSPs would both apply, two X-Frame-Options are ignored by some browsers)."""
    found = {name: [value for key, value in headers if key.lower() == name] for name in SECURITY_HEADERS}
    assert all(len(values) == 1 for values in found.values()), f"{what}: {found}"
    return {name: values[0] for name, values in found.items()}


def framing_refused(headers: list[tuple[str, str]], what: str) -> None:
    """No page of ours in another site's frame (a hidden Log out button), nor a referrer."""
    values = each_once(headers, what)
    assert "frame-ancestors 'none'" in values["content-security-policy"], (what, values)
    assert values["x-frame-options"] == "DENY" and values["referrer-policy"] == "no-referrer", (what, values)
    assert values["x-content-type-options"] == "nosniff", (what, values)


async def sent_as_is(http: httpx.AsyncClient, method: str, path: str, encoding: str,
                     **kwargs: object) -> tuple[httpx.Response, bytes]:
    """An answer and its body as sent, not decompressed."""
    async with http.stream(method, path, headers={"Accept-Encoding": encoding}, **kwargs) as answer:  # type: ignore[arg-type]
        return answer, b"".join([chunk async for chunk in answer.aiter_raw()])


def raw_https(port: int, tls_context: ssl.SSLContext, request: str) -> tuple[int, str, list[tuple[str, str]]]:
    """A request whose headers lie about the body (httpx would send the body): status, body, headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            tls_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = [(name.strip().lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])]
    return int(lines[0].split()[1]), body.decode(), headers


def _length(answer: bytes) -> int:
    match = re.search(rb"(?i)content-length:\s*(\d+)", answer)
    return int(match.group(1)) if match else 0
