"""What an attacker tried, told as stories: each defect of the outside review, closed.

A burst of wrong phrases, a logout that must leave nothing behind, uploads
that would fill the disk or the memory, another site's page using the
session cookie, a revocation whose event is lost, and unsafe settings.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
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

from .conftest import free_port, private_redis, running_server, server_process, settings_for, wait_for_redis
from .story import (BOUNDARY, PHRASE, PNG, Person, Server, assert_error, eventually, form, image_bytes, upload,
                    waiting_for_a_lock)

LOCAL_PROXY = (ipaddress.ip_network("127.0.0.1/32"),)


# ---- a burst of wrong phrases ---------------------------------------------

async def login_burst(server: Server, attempts: list[tuple[str, str, str]]) -> list[httpx.Response]:
    """Every (username, phrase, address) at once, each from its claimed address (a trusted proxy's header)."""
    async with server.client(limits=httpx.Limits(max_connections=200)) as http:
        return await asyncio.gather(*(
            http.post("/api/login/", json={"username": name, "phrase": phrase},
                      headers={"X-Forwarded-For": address})
            for name, phrase, address in attempts))


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counted: dict[int, int] = {}
    for response in responses:
        counted[response.status_code] = counted.get(response.status_code, 0) + 1
    return counted


async def test_a_concurrent_burst_of_wrong_phrases_hashes_at_most_the_limit(
        database_url: str, media_root: Path, db: asyncpg.Connection) -> None:
    """40 wrong phrases at once for Alice: 10 are checked (401), 30 turned away unhashed (429).
    Each reservation waits for its address's lock (held here until they queue on it), so each
    sees every attempt before it: unlocked, a burst's reservations could all see room."""
    settings = settings_for(database_url, media_root, login_failures_per_15_min=10, bcrypt_queue=100,
                            trusted_proxies=LOCAL_PROXY)
    async with running_server(settings) as server:
        alice = await server.person("alice").register()
        holder = await asyncpg.connect(database_url)
        try:
            async with holder.transaction():  # the address's lock, held until the burst queues on it
                await holder.execute("SELECT pg_advisory_xact_lock(7004, hashtext($1))", "203.0.113.7")
                bursting = asyncio.create_task(
                    login_burst(server, [(alice.username, "wrong horse battery staple", "203.0.113.7")] * 40))
                await eventually(lambda: waiting_for_a_lock(db, "SELECT pg_advisory_xact_lock(7004%"))
        finally:
            await holder.close()
        burst = await bursting
        assert statuses(burst) == {401: 10, 429: 30}
        assert all(int(r.headers["Retry-After"]) >= 1 for r in burst if r.status_code == 429)
        counted = await db.fetchval("SELECT count(*) FROM login_failures WHERE username = $1", alice.username)
        assert counted == 10
        # the owner, from elsewhere, is not locked out
        elsewhere = await login_burst(server, [(alice.username, PHRASE, "198.51.100.1")])
        assert elsewhere[0].status_code == 200


async def test_one_address_trying_many_names_at_once_is_held_to_ten_times_the_limit(
        database_url: str, media_root: Path) -> None:
    settings = settings_for(database_url, media_root, login_failures_per_15_min=10, bcrypt_queue=200,
                            trusted_proxies=LOCAL_PROXY)
    async with running_server(settings) as server:
        names = [f"nobody_{uuid.uuid4().hex[:8]}" for _ in range(150)]
        burst = await login_burst(server, [(name, PHRASE, "203.0.113.8") for name in names])
        assert statuses(burst) == {401: 100, 429: 50}


async def test_a_full_hashing_line_turns_logins_away_at_once_and_they_do_not_count(
        database_url: str, media_root: Path, db: asyncpg.Connection) -> None:
    """One bcrypt slot and one place in line: the rest of a burst gets 503 `busy` at once."""
    settings = settings_for(database_url, media_root, bcrypt_rounds=10, bcrypt_concurrency=1, bcrypt_queue=1,
                            login_failures_per_15_min=10, trusted_proxies=LOCAL_PROXY)
    async with running_server(settings) as server:
        names = [f"flood_{uuid.uuid4().hex[:8]}" for _ in range(8)]
        burst = await login_burst(server, [(name, PHRASE, f"203.0.113.{n}") for n, name in enumerate(names)])
        counts = statuses(burst)
        assert set(counts) <= {401, 503} and counts.get(503, 0) >= 1, counts
        for response in burst:
            if response.status_code == 503:
                assert_error(response, 503, "busy")
                assert int(response.headers["Retry-After"]) >= 1
        counted = await db.fetchval("SELECT count(*) FROM login_failures WHERE username = ANY($1::text[])", names)
        assert counted == counts[401]


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


# ---- uploads: a quota, a rate, and memory -----------------------------------

async def test_unsent_uploads_stop_at_the_quota_and_sending_frees_it(database_url: str, media_root: Path) -> None:
    settings = settings_for(database_url, media_root, upload_quota_bytes=2500)
    async with running_server(settings) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        first = await upload(alice, b"a" * 1000 + b"\n", "one.txt")
        await upload(alice, b"b" * 1000 + b"\n", "two.txt")
        before = sorted(path for path in media_root.rglob("*") if path.is_file())
        over = await alice.api("POST", "/api/upload-file/", **form(b"c" * 1000 + b"\n", "three.txt"))
        assert_error(over, 413, "quota_exceeded")
        photo = await alice.api("POST", "/api/upload-file/", **form(image_bytes(size=(640, 480)), "photo.png"))
        assert_error(photo, 413, "quota_exceeded")  # an image: refused with its thumbnail written too
        # refused only once stored (2002 bytes passed the first check): what was stored is gone again
        assert sorted(path for path in media_root.rglob("*") if path.is_file()) == before
        assert (await bob.api("POST", "/api/upload-file/", **form(b"d" * 1000 + b"\n", "bobs.txt"))).status_code == 201
        sent = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "here",
                                                                   "attachment": first["id"]})
        assert sent.status_code == 201
        await upload(alice, b"c" * 1000 + b"\n", "three.txt")  # the sent file is the conversation's now


@pytest.mark.parametrize(("quota", "sizes", "expected"), [
    (0, [1001, 1001, 1001], [201, 201, 201]),  # 0 = off
    (2002, [1001, 1001, 1001], [201, 201, 413]),  # filling it exactly is within it
    (1, [2], [413]),  # a one-byte quota is a quota
])
async def test_the_upload_quota_at_its_edges(database_url: str, media_root: Path, quota: int,
                                              sizes: list[int], expected: list[int]) -> None:
    settings = settings_for(database_url, media_root, upload_quota_bytes=quota)
    async with running_server(settings) as server:
        alice = await server.person("alice").register()
        answers = [await alice.api("POST", "/api/upload-file/", **form(b"q" * (size - 1) + b"\n", f"{n}.txt"))
                   for n, size in enumerate(sizes)]
        assert [answer.status_code for answer in answers] == expected
        for refused in (answer for answer in answers if answer.status_code == 413):
            assert_error(refused, 413, "quota_exceeded")
            assert f"quota of {quota} bytes" in refused.json()["error"]["message"]


async def test_a_full_quota_refuses_an_upload_from_its_headers_before_its_body(database_url: str,
                                                                             media_root: Path) -> None:
    """With the quota already full, the upload is refused before its body is read: the client
    is not made to send, nor the server to store, what cannot be kept. This body never ends."""
    settings = settings_for(database_url, media_root, upload_quota_bytes=1)
    async with running_server(settings) as server:
        alice = await server.person("alice").register()
        await upload(alice, b"\n", "one.txt")  # one byte fills it exactly
        host, port = server.address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(f"POST /api/upload-file/ HTTP/1.1\r\nHost: {server.address}\r\n"
                         f"Authorization: Bearer {alice.token}\r\n"
                         f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                         f"Content-Length: 1000000\r\n\r\n--{BOUNDARY}\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)[1])  # type: ignore[index]
            body = json.loads(await reader.readexactly(length))
        finally:
            writer.close()
            await writer.wait_closed()
        assert head.startswith(b"HTTP/1.1 413 "), head
        assert body["error"]["code"] == "quota_exceeded"


async def test_concurrent_uploads_cannot_overshoot_the_quota(database_url: str, media_root: Path,
                                                             db: asyncpg.Connection) -> None:
    settings = settings_for(database_url, media_root, upload_quota_bytes=5000)
    async with running_server(settings) as server:
        alice = await server.person("alice").register()
        answers = await asyncio.gather(*(alice.api("POST", "/api/upload-file/", **form(b"x" * 1000 + b"\n", f"{n}.txt"))
                                         for n in range(12)))
        assert statuses(answers) == {201: 4, 413: 8}
        stored = await db.fetchval("SELECT sum(size) FROM files WHERE owner_id = $1", alice.user["id"])  # type: ignore[index]
        assert stored == 4 * 1001


async def test_uploads_past_the_rate_get_429_quota_exceeded(database_url: str, media_root: Path) -> None:
    settings = settings_for(database_url, media_root, upload_rate_per_min=3)
    async with running_server(settings) as server:
        alice, bob = await server.person("alice").register(), await server.person("bob").register()
        for n in range(3):
            await upload(alice, PNG, f"{n}.png")
        refused = await alice.api("POST", "/api/upload-file/", **form(PNG, "3.png"))
        assert_error(refused, 429, "quota_exceeded")
        assert int(refused.headers["Retry-After"]) >= 1
        await upload(bob, PNG, "bobs.png")  # the budget is Alice's alone


def peak_and_now_kib(pid: int) -> tuple[int, int]:
    """VmHWM (the process's peak resident memory) and VmRSS, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])


def huge_png() -> bytes:
    """6320 x 6320 pixels (just under the default MAX_IMAGE_PIXELS) in ~110 KiB: 160 MB once decoded."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (6320, 6320), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
async def test_image_decodes_are_one_per_user_and_bound_a_workers_memory(database_url: str, settings: Settings) -> None:
    """With the default limits a worker stays under 450 MiB however many 40 Mpx images arrive.

    One decoded 40 Mpx image is 160 MB. One user's two at once are decoded
    one after the other (peak: one image); three users' at once, two at a time
    (IMAGE_CONCURRENCY); afterwards the memory goes back to the system.
    """
    big = huge_png()

    async def upload_big(person: Person) -> None:  # a loaded CI machine may take seconds per decode
        answer = await person.api("POST", "/api/upload-file/", timeout=120, **form(big, "big.png"))
        assert answer.status_code == 201, answer.text

    async with server_process(database_url, database_url, settings) as server:
        assert server.pid is not None
        alice, bob, carol = [await server.person(name).register() for name in ("alice", "bob", "carol")]
        baseline = peak_and_now_kib(server.pid)[1]
        await asyncio.gather(upload_big(alice), upload_big(alice))
        one_user_peak = peak_and_now_kib(server.pid)[0]
        assert one_user_peak - baseline < 240 * 1024, (baseline, one_user_peak)  # one image, not two
        await asyncio.gather(*(upload_big(person) for person in (alice, bob, carol)))
        peak, after = peak_and_now_kib(server.pid)
        assert peak < 450 * 1024, peak
        assert after - baseline < 64 * 1024, (baseline, after)


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
