"""What an attacker tried, told as stories: each defect of the outside review, closed.

A logout that must leave nothing behind, another site's page using the
session cookie, a revocation whose event is lost, and unsafe settings. (The
burst of wrong phrases is told with login throttling, accounts/test_throttle.py;
uploads that would fill the disk or the memory with the quotas, files/test_quotas.py.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from secure_link.fanout.events import user_channel
from secure_link.config import ConfigError, Settings
from secure_link.fanout.backends.postgres import pg_channel

from ..conftest import free_port, private_redis, running_server, settings_for, wait_for_redis
from ..story import (PNG, Person, Server, assert_error, form, upload)

LOCAL_PROXY = (ipaddress.ip_network("127.0.0.1/32"),)


# ---- nothing of a conversation outlives its clearing ----------------------

async def rows_holding(db: asyncpg.Connection, marker: str) -> list[str]:
    """Every live row of every table whose text holds the marker (a data-only dump, table by table)."""
    tables = await db.fetch("SELECT quote_ident(table_name) AS name FROM information_schema.tables "
                            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
    found = []
    for table in tables:
        hits = await db.fetchval(f"SELECT count(*) FROM {table['name']} AS t WHERE t::text LIKE '%' || $1 || '%'",
                                 marker)
        found += [table["name"]] * hits
    return found


async def test_after_a_logout_no_live_row_holds_anything_that_was_said(server: Server, db: asyncpg.Connection) -> None:
    """A message too large for NOTIFY is parked for fan-out; the clearing takes the parked copy too."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    alice_tab, bob_tab = await alice.connect(), await bob.connect()
    markers = [f"marker-{uuid.uuid4().hex}" for _ in range(3)]
    large = "ж" * 3900 + markers[0]  # ~7,900 bytes of text: its event is over NOTIFY's 8,000 bytes
    note = await upload(alice, f"{markers[2]}\n".encode(), f"{markers[2]}.txt")
    for text, attachment in ((large, None), (markers[1], None), ("see file", note["id"])):
        frame: dict[str, Any] = {"type": "chat", "to": bob.username, "message": text}
        if attachment:
            frame["attachment"] = attachment
        await alice_tab.send(frame)
        await alice_tab.expect("ack")
        await bob_tab.expect("chat")
    parked_for_bob = "SELECT count(*) FROM fanout_spill WHERE channels && $1"
    bobs_channels = [pg_channel(user_channel(bob.user["id"]))]
    assert await db.fetchval(parked_for_bob, bobs_channels) >= 1  # parked, as the review saw
    assert await rows_holding(db, markers[0]) == []  # but sealed now: the body and the parked event alike
    assert (await bob.api("POST", "/api/logout/")).status_code == 200
    for marker in markers:
        assert await rows_holding(db, marker) == []
    assert await db.fetchval(parked_for_bob, bobs_channels) == 0  # sealed or not, the parked copy went too


async def test_parked_fan_out_payloads_expire_within_seconds(database_url: str, media_root: Path,
                                                             db: asyncpg.Connection) -> None:
    settings = settings_for(database_url, media_root, housekeeping_interval=0.2)
    async with running_server(settings) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        bob_tab = await bob.connect()
        marker = f"marker-{uuid.uuid4().hex}"
        await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "ж" * 3900 + marker})
        await bob_tab.expect("chat")
        assert await db.fetchval("SELECT count(*) FROM fanout_spill") == 1  # parked (sealed)
        await db.execute("UPDATE fanout_spill SET created_at = now() - interval '11 seconds'")
        for _ in range(50):
            if not await db.fetchval("SELECT count(*) FROM fanout_spill"):
                break
            await asyncio.sleep(0.1)
        assert await db.fetchval("SELECT count(*) FROM fanout_spill") == 0
        history = (await bob.api("GET", "/api/messages/", params={"with": alice.username})).json()
        assert history["messages"][-1]["message"].endswith(marker)  # the message itself stays


# ---- another site's page with the session cookie ---------------------------

async def cookie_person(server: Server, name: str) -> tuple[Person, httpx.Cookies]:
    person = await server.person(name).register()
    return person, httpx.Cookies({"session": person.token or ""})


CHANGES = {
    "logout": ("POST", "/api/logout/", {"content": b"x", "headers": {"Content-Type": "text/plain"}}),
    "send": ("POST", "/api/send-message/", {"json": {"to": "{peer}", "message": "forged"}}),
    "profile": ("PATCH", "/api/user-profile/", {"json": {"display_name": "forged"}}),
    "upload": ("POST", "/api/upload-file/", form(PNG, "forged.png")),
    "revoke": ("DELETE", "/api/sessions/{other_session}", {}),
}


async def attempt(server: Server, change: str, cookies: httpx.Cookies | None, headers: dict[str, str],
                  peer: Person, other_session: int) -> httpx.Response:
    method, path, options = CHANGES[change]
    options = {**options, "headers": {**options.get("headers", {}), **headers}}
    if "json" in options:
        options["json"] = {k: v.format(peer=peer.username) for k, v in options["json"].items()}
    async with server.client(cookies=cookies) as http:
        return await http.request(method, path.format(other_session=other_session), **options)


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_cookie_changes_nothing_from_another_sites_page(server: Server, db: asyncpg.Connection,
                                                                change: str) -> None:
    alice, cookies = await cookie_person(server, "alice")
    bob = await server.person("bob").register()
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "kept"})
    await alice.login()
    other_session = await db.fetchval("SELECT max(id) FROM sessions WHERE user_id = $1", alice.user["id"])  # type: ignore[index]
    for foreign in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": f"http://sub.{server.address}"}, {"Sec-Fetch-Site": "same-site"}):
        refused = await attempt(server, change, cookies, foreign, bob, other_session)
        assert_error(refused, 403, "origin_refused")
    assert await db.fetchval("SELECT count(*) FROM messages WHERE sender_id = $1", alice.user["id"]) == 1  # type: ignore[index]
    assert await db.fetchval("SELECT display_name FROM users WHERE id = $1", alice.user["id"]) == alice.username  # type: ignore[index]
    assert await db.fetchval("SELECT count(*) FROM sessions WHERE user_id = $1", alice.user["id"]) == 2  # type: ignore[index]
    assert await db.fetchval("SELECT count(*) FROM files WHERE owner_id = $1", alice.user["id"]) == 0  # type: ignore[index]
    own_page = await attempt(server, change, cookies, {"Origin": server.http_url}, bob, other_session)
    assert own_page.status_code in (200, 201), own_page.text


async def test_a_cookie_still_reads_from_a_link_on_another_site(server: Server) -> None:
    """Only changes are checked: a GET followed from elsewhere (no Origin, cross-site) still reads."""
    _alice, cookies = await cookie_person(server, "alice")
    async with server.client(cookies=cookies) as http:
        for foreign in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
            for path in ("/api/user-profile/", "/api/sessions/", "/api/conversations/"):
                answer = await http.get(path, headers=foreign)
                assert answer.status_code == 200, (path, foreign, answer.text)


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_bearer_token_needs_no_origin_check(server: Server, db: asyncpg.Connection, change: str) -> None:
    """The header proves the caller chose to send it; no page can add it by itself."""
    alice = await server.person("alice").register()
    bob = await server.person("bob").register()
    await alice.login()
    other_session = await db.fetchval("SELECT max(id) FROM sessions WHERE user_id = $1", alice.user["id"])  # type: ignore[index]
    answer = await attempt(server, change, None, {"Origin": "http://evil.example", **alice.headers}, bob, other_session)
    assert answer.status_code in (200, 201), answer.text


async def test_an_allowed_origin_may_use_the_cookie(database_url: str, media_root: Path) -> None:
    settings = settings_for(database_url, media_root, cors_origins=("https://app.example",))
    async with running_server(settings) as server:
        _alice, cookies = await cookie_person(server, "alice")
        async with server.client(cookies=cookies) as http:
            answer = await http.patch("/api/user-profile/", json={"display_name": "Alice"},
                                      headers={"Origin": "https://app.example"})
        assert answer.status_code == 200, answer.text


# ---- a revocation whose event is lost ---------------------------------------

@pytest.mark.redis
async def test_a_revoked_sessions_socket_closes_even_when_the_publish_fails(
        database_url: str, media_root: Path, redis_url: str) -> None:
    """Redis stops taking PUBLISH (an ACL), its subscriber stays up: the socket still closes with 4401."""
    import shutil

    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server must be installed where REDIS_URL is set"
    port = free_port()
    with private_redis(binary, port):
        await wait_for_redis(port)
        settings = settings_for(database_url, media_root, broadcast_url=f"redis://127.0.0.1:{port}/0",
                                housekeeping_interval=0.3)
        async with running_server(settings) as server:
            alice = await server.person("alice").register()
            phone = await alice.login()
            phone_tab = await alice.connect(token=phone)
            admin = redis.Redis(port=port)
            try:
                await admin.execute_command("ACL", "SETUSER", "default", "-publish")
                with pytest.raises(redis.ResponseError):
                    await admin.publish("probe", "x")  # publishing really fails now
                sessions = (await alice.api("GET", "/api/sessions/")).json()["sessions"]
                phone_id = next(s["id"] for s in sessions if not s["current"])
                assert (await alice.api("DELETE", f"/api/sessions/{phone_id}")).status_code == 200
                assert await phone_tab.closed_with(timeout=5) == 4401
            finally:
                await admin.aclose()


# ---- settings the server refuses ---------------------------------------------

def test_a_wildcard_cors_origin_is_refused() -> None:
    with pytest.raises(ConfigError, match="wildcard"):
        Settings.from_env({"CORS_ORIGINS": "*"})
    with pytest.raises(ConfigError):
        Settings.from_env({"CORS_ORIGINS": "https://app.example, evil"})


async def run_serve(env: dict[str, str]) -> tuple[int, str]:
    import os
    import sys

    from secure_link.config import PROJECT_ROOT

    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_PEPPER", "DATABASE_URL", "CORS_ORIGINS")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "secure_link", "serve", "--port", str(free_port()), cwd=PROJECT_ROOT,
        env={**clean, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode or 0, err.decode()


async def test_a_real_database_without_a_pepper_is_refused_at_start(database_url: str) -> None:
    code, err = await run_serve({"DATABASE_URL": database_url})
    assert code != 0 and "SECRET_PEPPER" in err and "Traceback" not in err


async def test_serve_refuses_a_wildcard_cors_origin_in_one_line(database_url: str) -> None:
    code, err = await run_serve({"DATABASE_URL": database_url, "SECRET_PEPPER": "x" * 32, "CORS_ORIGINS": "*"})
    assert code != 0 and "CORS_ORIGINS" in err and "Traceback" not in err
