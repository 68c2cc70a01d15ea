"""What this machine can do at best, measured beside the project's figures.

- `EchoApp`: a bare ASGI app under the same uvicorn settings as `secure-link
  serve`, with no database. It answers the frames the load generator expects
  (`ready`, an ack-like frame, a chat-like frame to the peer's socket), so the
  generator runs the very same code against it: `python -m bench.limits echo --port P`.
- `commit_rate`: the group-commit writer's `insert_messages` statement alone,
  one writer committing batches of a given size back to back, in a scratch database.
- `notify_round_trips` / `redis_round_trips`: publish-to-receive round trips of
  the two cross-worker transports, with the project's `fanout_notify` statement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import secrets
import time
from datetime import datetime, UTC
from typing import Any
from collections.abc import Awaitable, Callable

import asyncpg

from secure_link.config import Settings
from secure_link.db import load_queries

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
PAYLOAD = "x" * 300  # about the size of a serialised chat event


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class EchoApp:
    """The floor under the project: HTTP and WebSocket handling only, state in dicts."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}  # token -> User-like object
        self.outboxes: dict[str, set[asyncio.Queue[str]]] = {}
        self.ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._socket(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    def _user(self, scope: Scope) -> dict[str, Any] | None:
        """A registered token's user; any other bearer token is believed as is.

        Believing it keeps the floor free of auth work, and lets the idle ramp
        reuse the tokens the real server issued, across echo restarts.
        """
        token = dict(scope["headers"]).get(b"authorization", b"").decode().removeprefix("Bearer ")
        if not token:
            return None
        if token not in self.users:
            self.users[token] = {"id": len(self.users) + 1, "username": f"anon_{len(self.users)}",
                                 "display_name": "anon", "avatar_url": None, "created_at": _now()}
        return self.users[token]

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, answer = self._route(scope["method"], scope["path"], body, self._user(scope))
        payload = _dumps(answer).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    def _route(self, method: str, path: str, body: bytes, user: dict[str, Any] | None) -> tuple[int, Any]:
        if path == "/readyz":
            return 200, {"status": "ready"}
        if method == "POST" and path == "/api/register/":
            username = json.loads(body)["username"]
            token = secrets.token_urlsafe(32)
            self.users[token] = {"id": len(self.users) + 1, "username": username, "display_name": username,
                                 "avatar_url": None, "created_at": _now()}
            return 201, {"user": self.users[token], "token": token}
        if path == "/api/user-profile/" and user is not None:
            return 200, {"user": user}
        return 404, {"error": {"code": "not_found", "message": "Not here."}}

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        user = self._user(scope)
        if user is None:
            await send({"type": "websocket.close", "code": 4401})
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": _dumps({"type": "ready", "user": user})})
        outbox: asyncio.Queue[str] = asyncio.Queue(256)  # bounded, like the server's send queue
        self.outboxes.setdefault(user["username"], set()).add(outbox)
        writer = asyncio.create_task(_write(outbox, send))
        try:
            while (message := await receive())["type"] == "websocket.receive":
                self._on_frame(user["username"], json.loads(message["text"]), outbox)
        finally:
            self.outboxes[user["username"]].discard(outbox)
            writer.cancel()

    def _on_frame(self, sender: str, frame: dict[str, Any], outbox: asyncio.Queue[str]) -> None:
        """An ack to this socket and a chat frame to every socket of the recipient."""
        if frame.get("type") == "ping":
            outbox.put_nowait('{"type":"pong"}')
            return
        message = {"id": next(self.ids), "from": sender, "to": frame["to"], "message": frame["message"],
                   "attachment": None, "client_id": frame.get("client_id"), "sent_at": _now()}
        outbox.put_nowait(_dumps({"type": "ack", "client_id": message["client_id"], "message": message}))
        event = _dumps({"type": "chat", "message": message})
        for peer in self.outboxes.get(frame["to"], ()):
            peer.put_nowait(event)


async def _write(outbox: asyncio.Queue[str], send: Send) -> None:
    """One writer per socket, as in the server, so frames never interleave."""
    while True:
        await send({"type": "websocket.send", "text": await outbox.get()})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def serve_echo(port: int) -> None:
    """uvicorn with the keyword arguments `secure-link serve` passes (secure_link/cli.py)."""
    import uvicorn

    settings = Settings()
    uvicorn.run(EchoApp(), host="127.0.0.1", port=port, proxy_headers=False,
                ws_max_size=settings.ws_max_frame_bytes, ws_ping_interval=settings.ws_ping_interval,
                ws_ping_timeout=settings.ws_ping_interval, ws_per_message_deflate=False,
                log_level="warning", access_log=False, timeout_graceful_shutdown=10)


async def _until(deadline: float, step: Callable[[], Awaitable[None]]) -> int:
    """Repeat `step` until `deadline`; how many completed."""
    done = 0
    while time.perf_counter() < deadline:
        await step()
        done += 1
    return done


async def commit_rate(database_url: str, duration: float, batch: int, pairs: int = 50) -> float:
    """Rows per second of `insert_messages`, one writer, batches of `batch` drafts (as writer.py runs it).

    Each pair gets a conversation key row (its bytes are not a real wrapped key:
    nothing here decrypts) and each body is `PAYLOAD[:64]`'s size once sealed.
    """
    sql = load_queries()["insert_messages"].sql
    admin = await asyncpg.connect(database_url)
    try:
        users = [row["id"] for row in await admin.fetch(
            "INSERT INTO users (username, display_name, phrase_hash) "
            "SELECT 'commit_' || g || '_' || $2, 'bench', '\\x00' FROM generate_series(1, $1) g "
            "RETURNING id", 2 * pairs, secrets.token_hex(4))]
        await admin.execute("INSERT INTO master_keys (id) VALUES ('bench') ON CONFLICT DO NOTHING")
        born = {}
        for index in range(0, len(users), 2):
            low, high = sorted(users[index:index + 2])
            born[low] = born[high] = await admin.fetchval(
                "INSERT INTO conversation_keys (low_user_id, high_user_id, wrapped_key, master_key_id) "
                "VALUES ($1, $2, '\\x00', 'bench') RETURNING created_at", low, high)
    finally:
        await admin.close()
    tag, numbers, sealed = secrets.token_hex(4), itertools.count(), secrets.token_bytes(64 + 28)
    connection = await asyncpg.connect(database_url)
    try:
        async def one_batch() -> Any:
            drafts = [(users[n % len(users)], users[(n % len(users)) ^ 1], f"{tag}-{n}")
                      for n in itertools.islice(numbers, batch)]
            return await connection.fetch(sql, list(range(batch)), [d[0] for d in drafts], [d[1] for d in drafts],
                                          [sealed] * batch, [d[2] for d in drafts], [None] * batch,
                                          [born[d[0]] for d in drafts],
                                          [secrets.token_bytes(16) for _ in drafts])  # each client_id's tag

        start = time.perf_counter()
        batches = await _until(start + duration, one_batch)
        return batches * batch / (time.perf_counter() - start)
    finally:
        await connection.close()


async def _round_trips(publish: Callable[[str], Awaitable[Any]], waiting: dict[str, asyncio.Future[None]],
                       duration: float, in_flight: int) -> float:
    """Each of `in_flight` tasks publishes and waits until its own payload comes back."""
    loop = asyncio.get_running_loop()

    async def one_trip(index: int, numbers: itertools.count[int]) -> None:
        key = f"{index}:{next(numbers)}"
        waiting[key] = future = loop.create_future()
        try:
            await publish(key + ":" + PAYLOAD)
            await asyncio.wait_for(future, 10)
        finally:
            waiting.pop(key, None)

    start = time.perf_counter()
    deadline = start + duration
    async def trips(index: int) -> int:
        numbers = itertools.count()
        return await _until(deadline, lambda: one_trip(index, numbers))

    counts = await asyncio.gather(*(trips(i) for i in range(in_flight)))
    return sum(counts) / (time.perf_counter() - start)


def _resolve(waiting: dict[str, asyncio.Future[None]], payload: str) -> None:
    future = waiting.get(payload.rsplit(":", 1)[0])
    if future is not None and not future.done():
        future.set_result(None)


async def notify_round_trips(database_url: str, duration: float, in_flight: int = 64) -> float:
    """PostgreSQL NOTIFY → LISTEN round trips/s, over a publish pool of the server's size (4)."""
    sql, channel, waiting = load_queries()["fanout_notify"].sql, "bench_limit", {}
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener(channel, lambda *args: _resolve(waiting, args[3]))
        async with asyncpg.create_pool(database_url, min_size=4, max_size=4) as pool:
            return await _round_trips(lambda p: pool.execute(sql, [channel], p), waiting, duration, in_flight)
    finally:
        await listener.close()


async def redis_round_trips(redis_url: str, duration: float, in_flight: int = 64) -> float:
    """Redis PUBLISH → SUBSCRIBE round trips/s, one subscriber connection as in the server."""
    import redis.asyncio as redis

    client, channel, waiting = redis.from_url(redis_url, decode_responses=True), "bench:limit", {}
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)

    async def read() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                _resolve(waiting, message["data"])

    reader = asyncio.create_task(read())
    try:
        return await _round_trips(lambda p: client.publish(channel, p), waiting, duration, in_flight)
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        await pubsub.aclose()
        await client.aclose()


def main() -> None:
    """`python -m bench.limits echo --port P`: the echo app in its own process."""
    parser = argparse.ArgumentParser(prog="python -m bench.limits")
    parser.add_argument("what", choices=["echo"])
    parser.add_argument("--port", type=int, required=True)
    serve_echo(parser.parse_args().port)


if __name__ == "__main__":
    main()
