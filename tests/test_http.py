"""The HTTP surface around the accounts: errors, probes, CORS, OpenAPI, throttling."""

from __future__ import annotations

import ipaddress
import re
import uuid
from pathlib import Path

import asyncpg
import pytest
from starlette.routing import Route, WebSocketRoute

from secure_link import openapi, routes
from secure_link.config import Settings

from .conftest import running_server, settings_for
from .story import PHRASE, Server
from .test_accounts import assert_error

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
    assert document == openapi.document()
    for route in routes.routes:
        path = route.path.replace("{session_id:int}", "{session_id}").replace("{file_id:str}", "{file_id}")
        assert path in document["paths"], path
        if isinstance(route, Route):
            for method in route.methods - {"HEAD"}:
                assert method.lower() in document["paths"][path], (path, method)
        else:
            assert isinstance(route, WebSocketRoute)


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


async def test_failed_logins_are_throttled_per_username_and_address(server: Server, db: asyncpg.Connection) -> None:
    alice = await server.person("alice").register()
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    owner = {"X-Forwarded-For": "198.51.100.7"}
    async with server.client() as http:
        malformed = await http.post("/api/login/", json={"username": alice.username}, headers=attacker)
        assert_error(malformed, 422, "invalid_input", "phrase")  # does not count
        for _ in range(3):
            wrong = await http.post("/api/login/", json={"username": alice.username, "phrase": "wrong phrase here ok"}, headers=attacker)
            assert_error(wrong, 401, "invalid_credentials")
        blocked = await http.post("/api/login/", json={"username": alice.username, "phrase": PHRASE}, headers=attacker)
        from_home = await http.post("/api/login/", json={"username": alice.username, "phrase": PHRASE}, headers=owner)
    assert_error(blocked, 429, "rate_limited")
    assert 1 <= int(blocked.headers["retry-after"]) <= 900
    assert from_home.status_code == 200
    assert await db.fetchval("SELECT count(*) FROM login_failures WHERE address = '203.0.113.9'") == 3


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
    address = {"X-Forwarded-For": f"192.0.2.{uuid.uuid4().int % 200 + 20}"}
    async with server.client() as http:
        answers = [await http.post("/api/register/", json={"username": f"reg_{uuid.uuid4().hex[:8]}", "phrase": PHRASE},
                                   headers=address) for _ in range(5)]
    assert [a.status_code for a in answers] == [201, 201, 201, 201, 429]
    assert_error(answers[-1], 429, "rate_limited")
    assert int(answers[-1].headers["retry-after"]) >= 1

