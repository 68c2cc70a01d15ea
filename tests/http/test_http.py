"""The HTTP surface around the accounts: errors, probes, CORS, OpenAPI, proxies, registrations per address."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import uuid
from http.cookies import Morsel, SimpleCookie
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.routing import Route, WebSocketRoute
from websockets.exceptions import InvalidStatus

from secure_link.http import openapi
from secure_link import routes
from secure_link.app import close_services, open_services
from secure_link.config import Settings

from ..conftest import database_refusing, free_port, running_server, settings_for
from ..story import PHRASE, Server, assert_error, eventually, sample, scrape, unique_address, waiting_for_a_lock

ALLOWED = "https://app.example"


@pytest.fixture(scope="module")
def settings(database_url: str, media_root: Path) -> Settings:
    return settings_for(database_url, media_root, cors_origins=(ALLOWED,), login_failures_per_15_min=3,
                        register_rate_per_min=4, trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))


async def test_unknown_paths_and_methods_answer_in_the_error_shape(server: Server) -> None:
    async with server.client() as http:
        assert_error(await http.get("/nowhere"), 404, "not_found")
        assert_error(await http.get("/api/register/"), 405, "method_not_allowed")
        assert_error(await http.put("/api/login/"), 405, "method_not_allowed")


async def test_probes(server: Server) -> None:
    async with server.client() as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).json() == {"status": "ready"}


async def test_openapi_describes_every_route(server: Server) -> None:
    async with server.client() as http:
        document = (await http.get("/api/openapi.json")).json()
    assert document["openapi"].startswith("3.") and document["info"]["title"]
    served = set()
    for route in routes.routes:
        path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
        served.add(path)
        assert path in document["paths"], path
        if isinstance(route, Route):
            for method in route.methods - {"HEAD"}:
                assert method.lower() in document["paths"][path], (path, method)
        else:
            assert isinstance(route, WebSocketRoute)
    assert set(document["paths"]) <= served, "the document describes a path nobody serves"


def test_openapi_declares_each_path_parameter_the_route_has() -> None:
    """A fuzzer or a generated client can only fill in the parameters the document names."""
    paths = openapi.document()["paths"]
    for route in routes.routes:
        template = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
        for method, operation in paths[template].items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(route.param_convertors), (template, method, declared)
            assert all(p["required"] for p in operation.get("parameters", []) if p["in"] == "path")


async def test_cors_preflight_from_an_allowed_and_a_refused_origin(server: Server) -> None:
    request_headers = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    async with server.client() as http:
        allowed = await http.options("/api/login/", headers={"Origin": ALLOWED, **request_headers})
        refused = await http.options("/api/login/", headers={"Origin": "https://evil.example", **request_headers})
        simple = await http.get("/healthz", headers={"Origin": ALLOWED})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert_error(refused, 400, "cors_refused")
    assert "access-control-allow-origin" not in refused.headers
    assert simple.headers["access-control-allow-origin"] == ALLOWED


def served_operations() -> list[tuple[str, str]]:
    """Every (path, method) the route table serves, path parameters filled in."""
    return [(re.sub(r"{\w+:id64}", "1", re.sub(r"{\w+}", "someone", route.path)), method)
            for route in routes.routes if isinstance(route, Route) for method in sorted(route.methods - {"HEAD"})]


@pytest.mark.parametrize(("path", "method"), served_operations())
async def test_a_client_on_an_allowed_origin_may_use_every_route(server: Server, path: str, method: str) -> None:
    """The preflight allowed a hand-kept list of methods that had no PUT: a client on a CORS_ORIGINS
    origin could not set a timer. The methods now come from the route table."""
    async with server.client() as http:
        preflight = await http.options(path, headers={"Origin": ALLOWED, "Access-Control-Request-Method": method,
                                                      "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert method in {m.strip() for m in preflight.headers["access-control-allow-methods"].split(",")}


async def test_x_forwarded_for_is_ignored_from_untrusted_peers(database_url: str, media_root: Path) -> None:
    settings = settings_for(database_url, media_root, login_failures_per_15_min=2)
    async with running_server(settings) as server:
        victim = await server.person("victim").register()
        async with server.client() as http:
            for hop in ("192.0.2.1", "192.0.2.2"):
                await http.post("/api/login/", json={"username": victim.username, "phrase": "nope nope nope nope"},
                                headers={"X-Forwarded-For": hop})
            spoofed = await http.post("/api/login/", json={"username": victim.username, "phrase": PHRASE},
                                      headers={"X-Forwarded-For": "192.0.2.3"})
    assert_error(spoofed, 429, "rate_limited")  # all three came from 127.0.0.1


async def test_registrations_per_address_are_limited(server: Server, db: asyncpg.Connection) -> None:
    """Four a minute from one address; another address keeps its own four."""
    first, other = unique_address(), unique_address()

    async def register_from(address: dict[str, str]) -> httpx.Response:
        async with server.client() as http:
            return await http.post("/api/register/", json={"username": f"reg_{uuid.uuid4().hex[:8]}", "phrase": PHRASE},
                                   headers=address)

    answers = [await register_from(first) for _ in range(5)]
    assert [a.status_code for a in answers] == [201, 201, 201, 201, 429]
    assert_error(answers[-1], 429, "rate_limited")
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert (await register_from(other)).status_code == 201



def session_cookie(response: httpx.Response) -> Morsel:
    """The Set-Cookie for `session`, parsed."""
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    return jar["session"]


async def test_cookies_are_secure_behind_a_trusted_https_proxy(server: Server) -> None:
    async with server.client() as client:
        plain = await client.post("/api/register/", json={"username": f"p_{uuid.uuid4().hex[:8]}", "phrase": PHRASE},
                                  headers=unique_address())
        proxied = await client.post("/api/register/", json={"username": f"s_{uuid.uuid4().hex[:8]}", "phrase": PHRASE},
                                    headers={"X-Forwarded-Proto": "https", **unique_address()})
    assert not session_cookie(plain)["secure"]
    assert session_cookie(proxied)["secure"]


async def test_cookies_are_secure_when_the_public_url_is_https(database_url: str, media_root: Path) -> None:
    settings = settings_for(database_url, media_root, public_url="https://chat.example")
    async with running_server(settings) as server:
        async with server.client() as client:
            response = await client.post("/api/register/", json={"username": f"u_{uuid.uuid4().hex[:8]}", "phrase": PHRASE})
        assert session_cookie(response)["secure"]
        alice = await server.person("alice").register()
        await alice.connect(origin="https://chat.example")  # the public origin is the server's own


async def test_the_session_list_says_which_device_and_from_where(server: Server) -> None:
    """Alice spots her phone among her sessions by its browser and address (the nearest untrusted hop)."""
    alice = await server.person("alice").register()
    async with server.client() as client:
        phone = await client.post("/api/login/", json={"username": alice.username, "phrase": PHRASE},
                                  headers={"User-Agent": "AlicePhone/2.1", "X-Forwarded-For": "192.0.2.77, 127.0.0.1"})
        bloated = await client.post("/api/login/", json={"username": alice.username, "phrase": PHRASE},
                                    headers={"User-Agent": "Bloated/1.0 " + "x" * 1000, "X-Forwarded-For": "192.0.2.78"})
    listed = (await alice.api("GET", "/api/sessions/")).json()["sessions"]
    mine = sorted((s["user_agent"], s["address"]) for s in listed if not s["current"])
    assert phone.status_code == bloated.status_code == 200
    assert mine == [("AlicePhone/2.1", "192.0.2.77"), (("Bloated/1.0 " + "x" * 1000)[:256], "192.0.2.78")]  # kept to 256


async def test_the_socket_accepts_origins_in_cors_origins(server: Server) -> None:
    alice = await server.person("alice").register()
    await alice.connect(origin=ALLOWED)
    with pytest.raises(InvalidStatus) as refused:
        await alice.connect(origin="https://evil.example")
    assert refused.value.response.status_code == 403


async def test_readyz_answers_503_while_the_database_is_away(pg_server_url: str, own_database: str,
                                                              media_root: Path) -> None:
    """A load balancer must stop sending traffic while PostgreSQL refuses us, and resume after."""
    async with running_server(settings_for(own_database, media_root)) as server:
        async with database_refusing(pg_server_url, own_database), server.client() as client:
            assert_error(await client.get("/readyz"), 503, "not_ready")
        async with server.client() as client:
            assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_a_worker_is_registered_before_it_serves(own_database: str, media_root: Path) -> None:
    """A socket's connection row names its worker: the row must exist before the first socket,
    not only after housekeeping's first heartbeat (a task that may run later, under load)."""
    services = await open_services(settings_for(own_database, media_root))
    try:
        assert await services.db.pool.fetchval("SELECT count(*) FROM workers WHERE id = $1", services.worker_id) == 1
    finally:
        await close_services(services)


async def test_a_start_whose_fan_out_is_unreachable_fails_and_leaves_no_connection(own_database: str,
                                                                                    media_root: Path) -> None:
    """A wrong BROADCAST_URL fails the start, and the database pool opened before it is closed."""
    settings = settings_for(own_database, media_root, broadcast_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisConnectionError):
        await open_services(settings)
    admin = await asyncpg.connect(own_database)
    try:
        others = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        assert await admin.fetchval(others) == 0
    finally:
        await admin.close()


async def test_a_bug_answers_500_and_closes_sockets_with_1011(own_database: str, media_root: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A table gone missing stands in for a bug: the generic 500 (no traceback); on an open
    socket, the same error frame for the frame that hit it, the socket kept; a socket that
    cannot start closes with 1011. The operator's log has the tracebacks the client was spared."""
    caplog.set_level(logging.ERROR, logger="secure_link.sockets")
    async with running_server(settings_for(own_database, media_root)) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hi"})
        open_tab = await alice.connect()
        broken = await asyncpg.connect(own_database)
        try:
            await broken.execute("ALTER TABLE conversation_reads RENAME TO conversation_reads_gone")
            await broken.execute("ALTER TABLE live_connections RENAME TO live_connections_gone")
        finally:
            await broken.close()
        answer = await alice.api("GET", "/api/conversations/")
        assert answer.status_code == 500
        assert answer.json() == {"error": {"code": "internal", "message": "Something went wrong on our side."}}
        # Starlette answers a bug from outside the middleware list: the headers are added outside it
        assert answer.headers["cache-control"] == "no-store" and answer.headers["x-frame-options"] == "DENY"
        await open_tab.send({"type": "read", "with": bob.username, "up_to": 1, "client_id": "r-1"})
        assert await open_tab.expect("error") == {"type": "error", "code": "internal", "client_id": "r-1",
                                                  "message": "Something went wrong on our side."}
        await open_tab.send({"type": "ping"})
        assert await open_tab.expect("pong") == {"type": "pong"}
        socket = await alice.connect(ready=False)
        assert await socket.closed_with() == 1011
    logged = [r for r in caplog.records if r.name == "secure_link.sockets"]  # the frame's, the sockets'
    assert len(logged) >= 2 and all(r.levelno == logging.ERROR and isinstance(r.exc_info[1], asyncpg.UndefinedTableError)
                                    for r in logged)


async def test_a_bug_on_a_socket_whose_client_has_gone_ends_with_the_bug_logged_once(
        own_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A socket whose start fails (a bug) after its client has gone: the 1011 has nowhere to go,
    and trying must not add an unhandled error in the ASGI app to the bug's own log line.
    The test holds the presence lock the start waits for, drops the client's TCP connection,
    then renames the table the start needs and lets it go on."""
    caplog.set_level(logging.ERROR)
    async with running_server(settings_for(own_database, tmp_path / "media")) as server:
        uvicorn_errors = logging.getLogger("uvicorn.error")  # its own logger does not reach the root
        uvicorn_errors.addHandler(caplog.handler)  # after the start: uvicorn's log setup drops handlers
        alice = await server.person("alice").register()
        holder, observer = await asyncpg.connect(own_database), await asyncpg.connect(own_database)
        try:
            async with holder.transaction():
                await holder.execute("SELECT pg_advisory_xact_lock(7002, $1::int)", alice.user["id"])  # type: ignore[index]
                socket = await alice.connect(ready=False)
                await eventually(lambda: waiting_for_a_lock(observer, "SELECT pg_advisory_xact_lock(7002%"))
                socket.connection.transport.abort()
                await holder.execute("ALTER TABLE live_connections RENAME TO live_connections_gone")
            await eventually(lambda: failed_starts(caplog))
            await asyncio.sleep(0.5)  # time for any error after the bug's to be logged
        finally:
            uvicorn_errors.removeHandler(caplog.handler)
            await holder.close()
            await observer.close()
    errors = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [("secure_link.sockets", "socket failed")], errors


async def failed_starts(caplog: pytest.LogCaptureFixture) -> bool:
    return any(r.name == "secure_link.sockets" for r in caplog.records)


async def test_while_the_database_refuses_connections_clients_are_told_to_come_back(
        pg_server_url: str, own_database: str, media_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An operator turned the database's connections off: not a bug but an outage. A socket is
    closed with 1013 (reconnect shortly, then sync), a request answered 503, and the log has
    a warning naming what failed."""
    caplog.set_level(logging.WARNING, logger="secure_link.sockets")
    async with running_server(settings_for(own_database, media_root)) as server:
        alice = await server.person("alice").register()
        async with database_refusing(pg_server_url, own_database):
            socket = await alice.connect(ready=False)
            assert await socket.closed_with() == 1013
            assert_error(await alice.api("GET", "/api/conversations/"), 503, "unavailable")
    (logged,) = [r for r in caplog.records if r.name == "secure_link.sockets"]
    assert_names_what_failed(logged)


async def test_a_frame_sent_during_an_outage_is_refused_and_its_socket_kept(
        pg_server_url: str, own_database: str, media_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Alice's socket was open before the database went away: her frame is refused as
    `unavailable` with when to retry, counted, and logged as a warning; the socket stays."""
    caplog.set_level(logging.WARNING, logger="secure_link.sockets")
    async with running_server(settings_for(own_database, media_root)) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        open_tab = await alice.connect()
        async with database_refusing(pg_server_url, own_database):
            counted = await scrape(server)
            await open_tab.send({"type": "read", "with": bob.username, "up_to": 1, "client_id": "r-1"})
            refused = await open_tab.expect("error")
            assert refused["code"] == "unavailable" and refused["client_id"] == "r-1" and refused["retry_after_ms"] >= 1
            unavailable = '{code="unavailable"}'
            assert sample(await scrape(server), "secure_link_errors_total", unavailable) == \
                sample(counted, "secure_link_errors_total", unavailable) + 1
            await open_tab.send({"type": "ping"})
            assert await open_tab.expect("pong") == {"type": "pong"}
    (logged,) = [r for r in caplog.records if r.name == "secure_link.sockets"]
    assert_names_what_failed(logged)


def assert_names_what_failed(record: logging.LogRecord) -> None:
    """An outage's log line: a warning, no traceback (it was expected), naming the error."""
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert re.search(r"\w+(Error|Exception)\(", record.getMessage()), record.getMessage()
