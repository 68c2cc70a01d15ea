"""Story helpers: people who register, log in, open sockets and chat (after flaskr's AuthActions)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from secure_link.config import Settings

PHRASE = "correct horse battery staple"


@dataclasses.dataclass
class Server:
    """A running server: where to reach it and the settings it runs with."""

    address: str
    settings: Settings
    pid: int | None = None  # set when the server runs in its own process

    @property
    def http_url(self) -> str:
        return f"http://{self.address}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.address}/ws/chat/"

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http_url, timeout=10, **kwargs)

    def person(self, name: str) -> "Person":
        return Person(self, name)


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
                return frame
            assert frame.get("type") in skip, f"expected {kind}, got {frame}"

    async def silent(self, seconds: float = 0.3, skip: tuple[str, ...] = ("presence",)) -> None:
        """Assert nothing but `skip` frames arrives for a while."""
        try:
            while True:
                frame = await self.next(seconds)
                assert frame.get("type") in skip, f"expected silence, got {frame}"
        except asyncio.TimeoutError:
            return

    async def closed_with(self, timeout: float = 5.0) -> int:
        """Read until the server closes; the close code."""
        try:
            while True:
                await asyncio.wait_for(self.connection.recv(), timeout)
        except Exception:
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

    async def register(self) -> "Person":
        async with self.server.client() as http:
            response = await http.post("/api/register/", json={"username": self.username, "phrase": self.phrase})
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
        self.sockets.append(socket)
        if ready:
            frame = await socket.expect("ready")
            assert frame["user"]["username"] == self.username
        return socket

    async def say(self, socket: Socket, to: "Person", text: str, client_id: str | None = None) -> dict[str, Any]:
        """Send a chat frame and return the acknowledged Message."""
        frame: dict[str, Any] = {"type": "chat", "to": to.username, "message": text}
        if client_id is not None:
            frame["client_id"] = client_id
        await socket.send(frame)
        # replays after a fan-out gap may come first; clients dedupe those by id
        ack = await socket.expect("ack", skip=("presence", "typing", "chat", "resync"))
        return ack["message"]

    async def close_sockets(self) -> None:
        for socket in self.sockets:
            await socket.close()
        self.sockets.clear()
