"""A crowd at the front door: thousands of authenticated sockets through nginx, from many addresses.

Honest clients come from many loopback addresses (127.0.0.0/8 is all this machine's),
a few accounts each and a few sockets per account, so no per-address or per-account
limit is bent to make room for them. One process holds them all: each socket is a
real TLS WebSocket that authenticated (its `ready` came), and the server's pings are
answered while it is held. Sockets are opened a bounded number at a time and cut
(transport aborted) at the end, which both nginx and the app see as a dropped client.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import collections
import contextlib
import dataclasses
import json
import resource
import ssl
import time
import uuid
from typing import Any
from collections.abc import Callable, Iterator

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .clients import ProxiedServer
from ..story import PHRASE

OPENING_AT_ONCE = 64   # handshakes in flight: enough to keep nginx and four app workers busy on two cores


@dataclasses.dataclass
class Account:
    username: str
    token: str
    address: str


def raise_file_limit(needed: int) -> int:
    """This process holds every socket: the soft limit up to the hard one (it cannot pass it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= needed, f"need {needed} descriptors, hard limit {hard}"
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def client(base_url: str, tls: ssl.SSLContext, address: str, **kwargs: Any) -> httpx.AsyncClient:
    """HTTP from one source address."""
    transport = httpx.AsyncHTTPTransport(verify=tls, local_address=address)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=30, **kwargs)


async def register(base_url: str, tls: ssl.SSLContext, address: str, count: int, prefix: str,
                   invite: str) -> list[Account]:
    """`count` accounts registered from `address` through the front door, with an invite's uses."""
    accounts = []
    async with client(base_url, tls, address) as http:
        for _ in range(count):
            username = f"{prefix}_{uuid.uuid4().hex[:10]}"
            answer = await http.post("/api/register/", json={"username": username, "phrase": PHRASE, "invite": invite})
            assert answer.status_code == 201, (address, answer.status_code, answer.text)
            accounts.append(Account(username, answer.json()["token"], address))
    return accounts


async def open_socket(ws_url: str, tls: ssl.SSLContext, address: str, token: str | None) -> ClientConnection:
    """One socket from `address`; with a token, only once the server says `ready`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connection = await connect(ws_url, ssl=tls, additional_headers=headers, local_addr=(address, 0),
                               open_timeout=30, ping_interval=None, max_queue=4)
    if token:
        try:
            while (frame := json.loads(await asyncio.wait_for(connection.recv(), 30)))["type"] != "ready":
                assert frame["type"] in ("presence", "resync"), frame
        except BaseException:
            connection.transport.abort()
            raise
    return connection


@dataclasses.dataclass
class Crowd:
    """Every socket held, what opening them took, and how the others failed."""

    sockets: list[ClientConnection] = dataclasses.field(default_factory=list)
    failures: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    seconds: float = 0.0

    async def fill(self, ws_url: str, tls: ssl.SSLContext, accounts: list[Account], per_account: int) -> None:
        gate = asyncio.Semaphore(OPENING_AT_ONCE)

        async def one(account: Account) -> None:
            async with gate:
                try:
                    self.sockets.append(await open_socket(ws_url, tls, account.address, account.token))
                except InvalidStatus as refusal:
                    self.failures[f"HTTP {refusal.response.status_code}"] += 1
                except (TimeoutError, InvalidHandshake, ConnectionClosed, OSError) as exc:
                    self.failures[type(exc).__name__] += 1

        started = time.monotonic()
        await asyncio.gather(*(one(account) for account in accounts for _ in range(per_account)))
        self.seconds = time.monotonic() - started

    def alive(self) -> int:
        """Sockets still open (none closed by the server or dropped meanwhile)."""
        return sum(1 for connection in self.sockets if connection.close_code is None
                   and not connection.transport.is_closing())

    def cut(self) -> None:
        for connection in self.sockets:
            connection.transport.abort()
        self.sockets.clear()


@contextlib.contextmanager
def crowd() -> Iterator[Crowd]:
    """A crowd that is cut however the story ends. While it opens, each TLS connection gets
    a read buffer of one TLS record (16 KiB) instead of asyncio's 256 KiB (SSLProtocol.max_size,
    taken when a connection is made): 5,000 sockets held 1.5 GB in this process, not the servers."""
    held, default = Crowd(), asyncio.sslproto.SSLProtocol.max_size
    asyncio.sslproto.SSLProtocol.max_size = 16 * 1024
    try:
        yield held
    finally:
        asyncio.sslproto.SSLProtocol.max_size = default
        held.cut()


# ---- one address taking far more than its share ------------------------------------

async def flood_sockets(ws_url: str, tls: ssl.SSLContext, address: str,
                        tokens: list[str]) -> tuple[list[ClientConnection], collections.Counter]:
    """A socket for each token, all at once, from one address: those let in (authenticated),
    and how many got each answer (101, or a refusal's status, error code and Retry-After)."""
    seen: collections.Counter = collections.Counter()
    opened: list[ClientConnection] = []

    async def one(token: str) -> None:
        try:
            opened.append(await open_socket(ws_url, tls, address, token))
            seen["101"] += 1
        except InvalidStatus as refusal:
            response = refusal.response
            code = json.loads(response.body or b"{}").get("error", {}).get("code")
            seen[f"{response.status_code} {code} retry-after={response.headers.get('Retry-After')}"] += 1

    await asyncio.gather(*(one(token) for token in tokens))
    return opened, seen


async def flood_requests(http: httpx.AsyncClient, method: str, path: str, attempts: int, at_once: int,
                         body: Callable[[int], Any] | None = None,
                         **kwargs: Any) -> tuple[collections.Counter, dict[str, httpx.Response]]:
    """`attempts` requests, `at_once` at a time, from one client (`body(n)`: the nth one's
    JSON): how many got each answer, and the first answer of each kind."""
    seen: collections.Counter = collections.Counter()
    first: dict[str, httpx.Response] = {}
    gate = asyncio.Semaphore(at_once)

    async def one(n: int) -> None:
        async with gate:
            answer = await http.request(method, path, **({"json": body(n)} if body else {}), **kwargs)
        code = answer.json().get("error", {}).get("code") if answer.status_code >= 400 else None
        kind = f"{answer.status_code} {code}" if code else str(answer.status_code)
        seen[kind] += 1
        first.setdefault(kind, answer)

    await asyncio.gather(*(one(n) for n in range(attempts)))
    return seen, first


# ---- the stories beside the crowd -------------------------------------------------

async def flood_from(public: ProxiedServer, address: str, accounts: list[Account], per_account: int) -> dict[str, Any]:
    """One address: every account's sockets at once, 600 authenticated API requests 50 at
    a time, 40 logins with wrong phrases 10 at a time."""
    tls = public.tls
    assert tls is not None
    token = {"Authorization": f"Bearer {accounts[0].token}"}
    async with client(public.http_url, tls, address) as http:
        sockets, requests, logins = await asyncio.gather(
            flood_sockets(public.ws_url, tls, address, [a.token for a in accounts for _ in range(per_account)]),
            flood_requests(http, "GET", "/api/user-profile/", 600, 50, headers=token),
            flood_requests(http, "POST", "/api/login/", 40, 10,  # a name each: the app counts per name too
                           body=lambda n: {"username": f"nobody_{n}", "phrase": "wrong words here"}))
    return {"sockets": sockets, "requests": requests[0], "logins": logins[0]}


async def honest_pair(public: ProxiedServer, alice: Account, bob: Account) -> dict[str, float]:
    """Alice logs in again from her address and chats with Bob, from his: seconds each step took."""
    tls, seconds = public.tls, {}
    assert tls is not None
    started = time.monotonic()
    async with client(public.http_url, tls, alice.address) as http:
        login = await http.post("/api/login/", json={"username": alice.username, "phrase": PHRASE})
        assert login.status_code == 200, login.text
        seconds["login"] = time.monotonic() - started
        token = login.json()["token"]
        alice_tab = await open_socket(public.ws_url, tls, alice.address, token)
        bob_tab = await open_socket(public.ws_url, tls, bob.address, bob.token)
        seconds["two sockets"] = time.monotonic() - started - seconds["login"]
        try:
            await alice_tab.send(json.dumps({"type": "chat", "to": bob.username, "message": "still here?",
                                             "client_id": "honest-1"}))
            while (frame := json.loads(await asyncio.wait_for(bob_tab.recv(), 30)))["type"] != "chat":
                pass
            assert frame["message"]["message"] == "still here?", frame
            seconds["delivered"] = time.monotonic() - started - seconds["login"] - seconds["two sockets"]
            profile = await http.get("/api/user-profile/", headers={"Authorization": f"Bearer {token}"})
            assert profile.status_code == 200, profile.text
        finally:
            alice_tab.transport.abort()
            bob_tab.transport.abort()
    return {step: round(value, 2) for step, value in seconds.items()}
