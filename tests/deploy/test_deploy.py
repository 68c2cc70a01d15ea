"""The deploy kit for real: nginx with the shipped site in front of two app hosts.

Follows docs/deploy.md, "Several hosts": deploy/bootstrap-db creates the
database, each host runs the unit as systemd would (its user, ExecStart,
environment and sandbox, read from deploy/secure-link.service) with
deploy/secure-link.env filled in, deploy/render-site renders the site, and nginx
serves it on the kit's main config (tests/deploy/lab.py builds the machines,
tests/deploy/unit.py the unit's sandbox). Through nginx, Alice and Bob register,
land on different hosts, chat, share a file (stored encrypted, sent decrypted by
whichever host), and cannot fake their address; every answer carries its security
headers once, assets come compressed and secrets never, TLS 1.2 refuses weak
suites; 5,000 sockets stay open while one greedy address is turned away
(tests/deploy/crowd.py); neither host writes outside the unit's writable paths;
then host A dies by SIGKILL mid-conversation and nobody loses a message.
Needs root, `ip`, `unshare`, strace, nginx, openssl, redis-server: in CI their absence fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from secure_link.config import PROJECT_ROOT, Settings

from . import lab as lab_parts
from . import crowd as crowd_module
from . import unit as deploy_unit
from ..conftest import missing_in_ci, required_tool, stop_process
from .clients import (ProxiedServer, Talk, connect_on, each_once, framing_refused, raw_https, sent_as_is,
                             settled_counts, socket_counts, sync_all, talk)
from .lab import GATEWAY, HOSTS, Proxy
from ..story import Person, Server, image_bytes

# One xdist worker runs the module: one lab per machine (fixed names and addresses, a lock).
pytestmark = [pytest.mark.deploy, pytest.mark.xdist_group("deploy-lab")]

# Stored as received (not re-encoded, but encrypted), so what is served must be these bytes.
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@dataclasses.dataclass
class Lab:
    folder: Path
    database_url: str
    proxy: Proxy
    public: ProxiedServer
    hosts: dict[str, lab_parts.AppHost]
    env_files: dict[str, Path]
    sandboxes: dict[str, deploy_unit.Sandbox]
    database_admin: dict[str, str]  # libpq variables of a superuser (bootstrap-db runs with them)
    nginx: subprocess.Popen

    def behind(self, path: str) -> Path:
        """Where a path under one of the unit's shared writable paths really is (both hosts see it)."""
        return self.sandboxes["a"].behind(path)


def require_lab_tools() -> None:
    """Root and the tools; missing ones fail in CI and skip, saying which, elsewhere."""
    missing = [what for ok, what in [
        (os.geteuid() == 0, "root (for ip netns)"),
        *((shutil.which(tool) is not None, tool)
          for tool in ("ip", "ss", "nginx", "openssl", "redis-server", "unshare", "strace")),
    ] if not ok]
    if missing:
        missing_in_ci(f"the deploy lab needs {', '.join(missing)}")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab_tools()
    folder = PROJECT_ROOT / "var" / f"deploy-test-{os.getpid()}"
    unit = deploy_unit.Unit.read()
    with contextlib.ExitStack() as stack:
        folder.mkdir(parents=True)
        folder.chmod(0o755)  # nginx's workers (www-data) go through it to their temp folders
        stack.callback(shutil.rmtree, folder, True)
        stack.enter_context(lab_parts.exclusive_lab())
        stack.enter_context(lab_parts.private_network())
        database = stack.enter_context(lab_parts.private_postgres(folder))
        broadcast = stack.enter_context(lab_parts.private_redis(folder))
        deploy_unit.ensure_user(unit)
        stack.enter_context(deploy_unit.mount_points(unit))
        # MEDIA_ROOT and MASTER_KEY_FILE stay as shipped: each host's sandbox mounts lab folders
        # at the unit's writable paths. Both hosts share the media folder (NFS in docs/deploy.md)
        # and the state folder (as hosts that copied the first one's master key would);
        # the first host to start creates the key.
        shared = {"DATABASE_URL": database.url, "BROADCAST_URL": broadcast,
                      "TRUSTED_PROXIES": GATEWAY, "PUBLIC_URL": f"https://{lab_parts.SERVER_NAME}",
                      "SECRET_PEPPER": os.urandom(16).hex()}
        env_files = {host: lab_parts.env_file(folder / f"{host}.env", SECURE_LINK_HOST=address, **shared)
                     for host, address in HOSTS.items()}
        media = _template_env()["MEDIA_ROOT"]
        sandboxes = {host: deploy_unit.sandbox(unit, folder, host, shared=(media, *unit.state_directories))
                     for host in HOSTS}
        web_root = lab_parts.web_build(folder)
        hosts = {host: stack.enter_context(lab_parts.app_host(host, sandboxes[host], env_files[host], folder,
                                                              BCRYPT_ROUNDS="4", SECURE_LINK_WEB_ROOT=str(web_root)))
                 for host in HOSTS}
        proxy = lab_parts.render_site(folder, env_files["a"], web_root)  # while the hosts start
        front = stack.enter_context(lab_parts.nginx(folder, proxy))
        for host, running in hosts.items():
            lab_parts.wait_for_app(HOSTS[host], lab_parts.APP_PORT, running.process, log=running.log)
        tls = ssl.create_default_context(cafile=str(proxy.cert))
        invite = lab_parts.first_invite("a", sandboxes["a"], env_files["a"], folder)
        public = ProxiedServer(f"127.0.0.1:{proxy.https_port}", Settings(), invite=invite, tls=tls)
        yield Lab(folder, database.url, proxy, public, hosts, env_files, sandboxes, database.admin_env, front)


# ---- the story through nginx ---------------------------------------------------

async def test_chat_media_and_addresses_through_nginx(lab: Lab) -> None:
    spoof = {"X-Forwarded-For": "203.0.113.66"}
    alice = lab.public.person("alice")
    async with lab.public.client() as http:
        response = await http.post("/api/register/", headers=spoof,
                                   json={"username": alice.username, "phrase": alice.phrase,
                                         "invite": lab.public.invite})
    assert response.status_code == 201, response.text
    alice.token, alice.user = response.json()["token"], response.json()["user"]
    bob = await lab.public.person("bob").register()

    alice_tab, alice_host, _ = await connect_on(alice, lab.public.tls)
    bob_tab, bob_host, attempts = await connect_on(bob, lab.public.tls, avoid=alice_host)
    assert {alice_host, bob_host} == set(HOSTS)
    assert attempts == 1, "least_conn should have sent the second socket to the idle host"

    sent = await alice.say(alice_tab, bob, "from host " + alice_host)
    assert (await bob_tab.expect("chat", timeout=10))["message"] == sent
    reply = await bob.say(bob_tab, alice, "and back from host " + bob_host)
    assert (await alice_tab.expect("chat", timeout=10))["message"] == reply

    # The client's own X-Forwarded-For is dropped; the app believes nginx's view of it.
    sessions = (await alice.api("GET", "/api/sessions/", headers=spoof)).json()["sessions"]
    assert [s["address"] for s in sessions] == ["127.0.0.1"]

    uploaded = await alice.api("POST", "/api/upload-file/", files={"file": ("notes.pdf", PDF, "application/pdf")})
    assert uploaded.status_code == 201, uploaded.text
    file = uploaded.json()["file"]
    with_file = await alice.api("POST", "/api/send-message/",
                                json={"to": bob.username, "message": "the notes", "attachment": file["id"]})
    assert with_file.status_code == 201, with_file.text
    await media_is_streamed_decrypted(lab, bob, file, PDF)
    await bob_tab.close()
    await alice_tab.close()


async def media_is_streamed_decrypted(lab: Lab, viewer: Person, file: dict, content: bytes) -> None:
    """Each app host sends the plaintext itself (no X-Accel-Redirect: nginx cannot decrypt);
    through nginx, headers and ranges arrive intact; the disk holds only ciphertext."""
    for address in HOSTS.values():
        async with httpx.AsyncClient(base_url=f"http://{address}:{lab_parts.APP_PORT}") as direct:
            answer = await direct.get(file["url"], headers=viewer.headers)
        assert answer.status_code == 200 and answer.content == content
        assert "x-accel-redirect" not in answer.headers
    served = await viewer.api("GET", file["url"])
    assert served.status_code == 200, served.text
    assert served.content == content
    assert served.headers["x-content-type-options"] == "nosniff"
    headers = each_once(served.headers.multi_items(), "a download")  # the app's CSP, not nginx's beside it
    assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'; sandbox"
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
    assert served.headers["content-disposition"].startswith("attachment;")
    assert served.headers["cache-control"] == "no-store"
    ranged = await viewer.api("GET", file["url"], headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == content[:4]
    stranger = await lab.public.person("eve").register()
    assert (await stranger.api("GET", file["url"])).status_code == 404
    stored = [path.read_bytes() for path in lab.behind(_env(lab)["MEDIA_ROOT"]).rglob("*") if path.is_file()]
    assert stored and not any(b"%PDF" in data or b"/Catalog" in data for data in stored)


async def test_nginx_refuses_in_the_api_error_shape(lab: Lab) -> None:
    async with lab.public.client() as http:
        metrics = await http.get("/metrics")
    assert metrics.status_code == 404 and metrics.json()["error"]["code"] == "not_found"
    limit = int(_env(lab)["MAX_UPLOAD_BYTES"]) + 64 * 1024
    assert f"client_max_body_size {limit};" in lab.proxy.site.read_text()
    status, body, _ = raw_https(lab.proxy.https_port, lab.public.tls, f"POST /api/upload-file/ HTTP/1.1\r\nHost: {lab_parts.SERVER_NAME}\r\n"
                                  f"Content-Length: {limit + 1}\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n")
    assert status == 413 and json.loads(body)["error"]["code"] == "too_large"
    async with httpx.AsyncClient() as plain:
        redirect = await plain.get(f"http://127.0.0.1:{lab.proxy.http_port}/api/user-profile/",
                                   headers={"Host": lab_parts.SERVER_NAME})
    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"https://{lab_parts.SERVER_NAME}/api/user-profile/"


# (certificate, TLS 1.2 suite or TLS 1.3, accepted): RSA key exchange has no forward secrecy,
# CBC suites are the padding-oracle family (Lucky13); only ECDHE with an AEAD is left for 1.2.
SUITES = [
    ("rsa", "AES128-SHA", False),                     # RSA key exchange, CBC
    ("rsa", "AES256-GCM-SHA384", False),              # RSA key exchange, AEAD
    ("rsa", "ECDHE-RSA-AES128-SHA", False),           # ECDHE, CBC
    ("rsa", "ECDHE-RSA-AES128-SHA256", False),        # ECDHE, CBC
    ("rsa", "ECDHE-RSA-AES128-GCM-SHA256", True),
    ("rsa", "ECDHE-RSA-CHACHA20-POLY1305", True),
    ("ec", "ECDHE-ECDSA-AES256-SHA", False),          # ECDHE, CBC
    ("ec", "ECDHE-ECDSA-AES256-GCM-SHA384", True),
    ("ec", "ECDHE-ECDSA-CHACHA20-POLY1305", True),
    ("ec", "TLS 1.3", True),
    ("rsa", "TLS 1.3", True),
]


def test_tls_1_2_takes_only_ecdhe_with_aead(lab: Lab) -> None:
    """openssl s_client offers one suite at a time: to the lab's site (an ECDSA certificate,
    as certbot makes by default) and to the same site rendered with an RSA one."""
    rsa_folder = lab.folder / "rsa-site"
    rsa_folder.mkdir()
    rsa_site = lab_parts.render_site(rsa_folder, lab.env_files["a"], lab.proxy.web_root, key_type="rsa")
    with lab_parts.nginx(rsa_folder, rsa_site):
        ports = {"ec": lab.proxy.https_port, "rsa": rsa_site.https_port}
        seen = [(key, suite, lab_parts.handshake(ports[key], *(["-tls1_3"] if suite == "TLS 1.3" else
                                                                 ["-tls1_2", "-cipher", suite])))
                for key, suite, _ in SUITES]
    assert seen == SUITES


async def test_unfinished_requests_never_reach_the_app_hosts(lab: Lab) -> None:
    """Slowloris: 300 connections whose headers never end. nginx holds them (and closes
    them after client_header_timeout); the app hosts never see one; others are served."""
    before = {host: lab_parts.websockets_on(host) for host in HOSTS}
    slow: list[socket.socket] = []
    try:
        for _ in range(300):
            connection = socket.create_connection(("127.0.0.1", lab.proxy.http_port), timeout=5)
            connection.sendall(f"GET /healthz HTTP/1.1\r\nHost: {lab_parts.SERVER_NAME}\r\nX-Slow: ".encode())
            slow.append(connection)
        async with lab.public.client() as http:
            answer = await http.get("/healthz")
        assert answer.status_code == 200
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"])  # nginx's $request_id, via the app
        assert {host: lab_parts.websockets_on(host) for host in HOSTS} == before
    finally:
        for connection in slow:
            connection.close()
    assert "client_header_timeout 10s;" in lab.proxy.site.read_text()


# ---- headers and compression --------------------------------------------------------

async def test_every_answer_carries_each_security_header_once(lab: Lab) -> None:
    """The app's answers, nginx's static files and nginx's own refusals alike (add_header at
    one level only: a location with one of its own would drop the others). Media keep the
    app's stricter CSP: see media_is_streamed_decrypted; 503 and 429 in their tests."""
    async with lab.public.client() as http:
        answers = {
            "the page, from the app": await http.get("/", headers={"Accept": "text/html"}),
            "an API refusal, from the app": await http.get("/api/user-profile/"),
            "an asset, from nginx": await http.get("/assets/app-3f2a1b.js"),
            "a missing asset, nginx's 404": await http.get("/assets/nothing-here.js"),
            "/metrics, nginx's 404": await http.get("/metrics"),
        }
    assert [answer.status_code for answer in answers.values()] == [200, 401, 200, 404, 404]
    for what, answer in answers.items():
        framing_refused(answer.headers.multi_items(), what)
    limit = int(_env(lab)["MAX_UPLOAD_BYTES"]) + 64 * 1024
    status, _, headers = raw_https(lab.proxy.https_port, lab.public.tls, f"POST /api/upload-file/ HTTP/1.1\r\nHost: {lab_parts.SERVER_NAME}\r\n"
                                        f"Content-Length: {limit + 1}\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n")
    assert status == 413
    framing_refused(headers, "nginx's 413")


async def test_assets_come_compressed_and_answers_with_secrets_never(lab: Lab) -> None:
    """The build's .gz as it is (gzip_static), other static files compressed on the way
    (gzip), never a proxied answer: compressing secrets beside text an attacker can
    choose leaks the secrets through the answer's size (BREACH). The main config has
    Debian's `gzip on`, which would compress the page."""
    assets = lab.proxy.web_root / "assets"
    person = await lab.public.person("zipped").register()
    async with lab.public.client() as http:
        script, script_sent = await sent_as_is(http, "GET", "/assets/app-3f2a1b.js", "gzip")
        style, style_sent = await sent_as_is(http, "GET", "/assets/style-9c8d7e.css", "gzip, br")
        plain, plain_sent = await sent_as_is(http, "GET", "/assets/app-3f2a1b.js", "identity")
        page, page_sent = await sent_as_is(http, "GET", "/", "gzip")
        login, login_sent = await sent_as_is(http, "POST", "/api/login/", "gzip",
                                             json={"username": person.username, "phrase": person.phrase})
    assert script.headers["content-encoding"] == "gzip" and script.headers["vary"] == "Accept-Encoding"
    assert script_sent == (assets / "app-3f2a1b.js.gz").read_bytes(), "not the build's own .gz"
    assert style.headers["content-encoding"] == "gzip"
    assert gzip.decompress(style_sent) == (assets / "style-9c8d7e.css").read_bytes()
    assert "content-encoding" not in plain.headers and plain_sent == (assets / "app-3f2a1b.js").read_bytes()
    assert page.headers["content-type"].startswith("text/html") and page_sent.startswith(b"<!doctype html>")
    assert "content-encoding" not in page.headers
    assert login.status_code == 200 and "content-encoding" not in login.headers
    assert json.loads(login_sent)["token"]


# ---- the front door under a crowd -------------------------------------------------------

# Honest clients: 125 addresses, each two accounts with 20 sockets (WS_MAX_SOCKETS_PER_USER):
# 40 per address, under the site's 64 per address; one flooding address; one honest pair.
CROWD, ACCOUNTS_PER_ADDRESS, SOCKETS_PER_ACCOUNT = 5000, 2, 20
CROWD_ADDRESSES = [f"127.0.0.{n}" for n in range(10, 10 + CROWD // (ACCOUNTS_PER_ADDRESS * SOCKETS_PER_ACCOUNT))]
FLOODER, HONEST = "127.0.0.250", ("127.0.0.201", "127.0.0.202")


def site_limit(lab: Lab, pattern: str) -> int:
    """A number from the rendered site, so the test and the site cannot disagree silently."""
    return int(re.search(pattern, lab.proxy.site.read_text()).group(1))  # type: ignore[union-attr]


async def test_past_its_share_an_address_gets_429_in_the_error_shape(lab: Lab) -> None:
    """One address asks faster than the site's rate and burst allow: the excess is answered
    by nginx, 429 `rate_limited` with Retry-After and the security headers, while another
    address asking at the same time is served."""
    burst = site_limit(lab, r"zone=secure_link_requests burst=(\d+)")
    rate = site_limit(lab, r"zone=secure_link_requests:\S+ rate=(\d+)r/s")
    async with crowd_module.client(lab.public.http_url, lab.public.tls, "127.0.0.240") as greedy, \
            crowd_module.client(lab.public.http_url, lab.public.tls, "127.0.0.241") as other:
        started = time.monotonic()
        (seen, first), (calm, _) = await asyncio.gather(
            crowd_module.flood_requests(greedy, "GET", "/healthz", 2 * burst, 50),
            crowd_module.flood_requests(other, "GET", "/healthz", 20, 5))
        seconds = time.monotonic() - started
    assert set(seen) == {"200", "429 rate_limited"} and seen["200"] <= burst + 1 + rate * seconds, (seen, seconds)
    assert calm == {"200": 20}, calm
    refused = first["429 rate_limited"]
    assert refused.json()["error"] == {"code": "rate_limited",
                                       "message": "Too many requests from your address; try again shortly."}
    assert refused.headers.get_list("retry-after") == ["1"]
    framing_refused(refused.headers.multi_items(), "nginx's 429")


async def test_logins_from_one_address_are_paced(lab: Lab) -> None:
    """Guessing phrases costs the app a bcrypt hash each: past a burst, one address may try
    one login every two seconds (the app's own limits count failures per name and address)."""
    burst = site_limit(lab, r"zone=secure_link_logins burst=(\d+)")
    async with crowd_module.client(lab.public.http_url, lab.public.tls, "127.0.0.242") as guesser:
        started = time.monotonic()
        seen, first = await crowd_module.flood_requests(
            guesser, "POST", "/api/login/", burst + 20, 10, body=lambda n: {"username": f"guess_{n}", "phrase": "not it at all"})
        seconds = time.monotonic() - started
        async with lab.public.client() as elsewhere:  # another address logs in meanwhile
            person = await lab.public.person("paced").register()
            login = await elsewhere.post("/api/login/", json={"username": person.username, "phrase": person.phrase})
    assert set(seen) == {"401 invalid_credentials", "429 rate_limited"}, seen
    assert seen["401 invalid_credentials"] <= burst + 1 + seconds / 2, (seen, seconds)
    assert first["429 rate_limited"].headers.get_list("retry-after") == ["1"]
    assert login.status_code == 200, login.text


@pytest.mark.slow
async def test_the_front_door_holds_5000_sockets_while_one_address_is_turned_away(lab: Lab) -> None:
    """Through nginx (TLS, the shipped site and main config, two workers): 5,000 sockets that
    authenticated stay open while one address opens far more than its share, floods the API and
    the login, and is refused in the error shape; meanwhile another address logs in and chats."""
    crowd_module.raise_file_limit(CROWD + 1000)
    public, tls, ws_url = lab.public.http_url, lab.public.tls, lab.public.ws_url
    per_address = site_limit(lab, r"limit_conn secure_link_sockets (\d+);")
    burst = site_limit(lab, r"zone=secure_link_requests burst=(\d+)")
    rate = site_limit(lab, r"zone=secure_link_requests:\S+ rate=(\d+)r/s")
    assert ACCOUNTS_PER_ADDRESS * SOCKETS_PER_ACCOUNT < per_address < 15 * SOCKETS_PER_ACCOUNT
    gate = asyncio.Semaphore(16)
    inviter = await lab.public.person("inviter").register()  # the shipped kit takes people by invite
    invites = [(await inviter.api("POST", "/api/invites/", json={"uses": 100})).json()["code"] for _ in range(4)]
    uses = {address: invites[n % 3] for n, address in enumerate(CROWD_ADDRESSES)}  # 84, 84 and 82 of 100

    async def accounts_of(address: str, count: int, prefix: str) -> list[crowd_module.Account]:
        async with gate:
            return await crowd_module.register(public, tls, address, count, prefix, uses.get(address, invites[3]))

    started = time.monotonic()
    groups = await asyncio.gather(*(accounts_of(address, ACCOUNTS_PER_ADDRESS, "crowd") for address in CROWD_ADDRESSES),
                                  accounts_of(FLOODER, 15, "flood"), *(accounts_of(a, 1, "honest") for a in HONEST))
    registered = time.monotonic() - started
    crowd_accounts, flood_accounts, (alice,), (bob,) = [a for g in groups[:-3] for a in g], *groups[-3:]
    before = await settled_counts()
    with crowd_module.crowd() as held:
        await held.fill(ws_url, tls, crowd_accounts, SOCKETS_PER_ACCOUNT)
        assert not held.failures and held.alive() == CROWD, f"{held.alive()} open, the others: {held.failures}"
        proxied = sum(socket_counts().values()) - sum(before.values())
        assert proxied == CROWD, f"the app hosts hold {proxied} sockets through nginx"
        flood_started = time.monotonic()
        flood, honest = await asyncio.gather(
            crowd_module.flood_from(lab.public, FLOODER, flood_accounts, SOCKETS_PER_ACCOUNT),
            crowd_module.honest_pair(lab.public, alice, bob))
        flood_seconds = time.monotonic() - flood_started
        sockets_in, sockets_seen = flood["sockets"]
        assert len(sockets_in) == per_address and sockets_seen == {
            "101": per_address, "429 rate_limited retry-after=1": 15 * SOCKETS_PER_ACCOUNT - per_address}, sockets_seen
        assert set(flood["requests"]) == {"200", "429 rate_limited"}, flood["requests"]
        assert flood["requests"]["200"] <= burst + 1 + rate * flood_seconds, flood["requests"]
        assert set(flood["logins"]) == {"401 invalid_credentials", "429 rate_limited"}, flood["logins"]
        still = held.alive()
        workers = lab_parts.children(lab.nginx.pid)
        memory = {"nginx": lab_parts.rss_mib(workers), **{host: lab_parts.rss_mib(lab_parts.namespace_pids(host))
                                                          for host in HOSTS}}
        descriptors = [len(os.listdir(f"/proc/{pid}/fd")) for pid in workers]
        for connection in sockets_in:
            connection.transport.abort()
    assert still == CROWD, f"{CROWD - still} of the crowd's sockets were dropped during the flood"
    print(f"\n{CROWD} sockets through nginx from {len(CROWD_ADDRESSES)} addresses ({len(crowd_accounts)} accounts, "
          f"registered in {registered:.1f} s): opened in {held.seconds:.1f} s; RSS MiB {memory}; "
          f"nginx workers' descriptors {descriptors}; flood "
          f"from {FLOODER} over {flood_seconds:.1f} s: sockets {dict(sockets_seen)}, API {dict(flood['requests'])}, "
          f"logins {dict(flood['logins'])}; honest {json.dumps(honest)}")
    for _ in range(1200):  # the hosts let 5,000 sockets go (presence rows, one transaction each)
        if socket_counts() == before:
            break
        await asyncio.sleep(0.05)
    assert await settled_counts() == before


def _env(lab: Lab) -> dict[str, str]:
    from dotenv import dotenv_values

    return {k: v or "" for k, v in dotenv_values(lab.env_files["a"]).items()}


# ---- bootstrap-db ----------------------------------------------------------------

# Records each command line, then runs the real program (found after its own folder on PATH).
RECORDER = """#!/bin/sh
printf '%s\\n' "$0 $*" >> "$ARGV_LOG"
here=$(dirname "$0")
PATH=$(printf '%s' "$PATH" | sed "s|^$here:||") exec "$(basename "$0")" "$@"
"""


async def test_bootstrap_db_keeps_the_password_off_every_command_line(lab: Lab) -> None:
    """`ps` shows every process's arguments to every user: the password must travel some
    other way. Each psql, createuser and createdb bootstrap-db runs is recorded; none holds
    the password, and the role it made logs in with it, odd characters and all."""
    wrappers, log = lab.folder / "recorders", lab.folder / "argv.log"
    wrappers.mkdir()
    for program in ("psql", "createuser", "createdb"):
        (wrappers / program).write_text(RECORDER)
        (wrappers / program).chmod(0o755)
    password = "it's a \"long\" pass:word; $HOME `id` \\ -v x=1"
    env = {**lab.database_admin, "PATH": f"{wrappers}:{lab.database_admin['PATH']}", "ARGV_LOG": str(log),
           "DB_NAME": "probe_db", "DB_OWNER": "probe_owner", "DB_PASSWORD": password}
    lab_parts.run(str(PROJECT_ROOT / "deploy" / "bootstrap-db"), env=env)
    lines = log.read_text().splitlines()
    assert any("/psql " in line for line in lines) and any("/createuser " in line for line in lines), lines
    assert not [line for line in lines if "pass:word" in line or "long" in line], lines
    address = lab.database_url.rsplit("@", 1)[1].split("/")[0]
    connection = await asyncpg.connect(f"postgresql://probe_owner@{address}/probe_db", password=password)
    try:
        assert await connection.fetchval("SELECT count(*) FROM users") == 0  # the schema, owned by the role
    finally:
        await connection.close()


# ---- Procfile ------------------------------------------------------------------

async def test_procfile_serves_on_port_with_database_url(lab: Lab) -> None:
    """The PaaS line, run by a shell as Heroku-like hosts do, inside host B's namespace."""
    line = next(l for l in (PROJECT_ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    command = line.removeprefix("web:").strip()
    port = 5000
    # A PaaS's config vars: the database it attaches, and the pepper and master key serve refuses
    # to start without (the key as a file the platform mounts for the app's user: here a copy of
    # the lab's, owned by this process's user, as serve requires of a secret file).
    mounted = Path(tempfile.mkdtemp(prefix="sl-paas-")) / "master-key"
    shutil.copyfile(lab.behind(_env(lab)["MASTER_KEY_FILE"]), mounted)
    mounted.chmod(0o600)
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PORT": str(port),
           "DATABASE_URL": lab.database_url, "SECRET_PEPPER": os.urandom(16).hex(),
           "MASTER_KEY_FILE": str(mounted),
           "BCRYPT_ROUNDS": "4", "SECURE_LINK_LOG_LEVEL": "warning"}
    process = subprocess.Popen(["ip", "netns", "exec", lab_parts.namespace("b"), "bash", "-c", f"exec {command}"],  # noqa: ASYNC220 - Popen returns at once; the process is stopped by PID
                               env=env, cwd=PROJECT_ROOT)
    try:
        lab_parts.wait_for_app(HOSTS["b"], port, process)
        server = Server(f"{HOSTS['b']}:{port}", Settings())
        person = await server.person("paas").register()
    finally:
        stop_process(process)
        shutil.rmtree(mounted.parent, ignore_errors=True)
    # serve ends a graceful stop on SIGTERM with 128 + 15, as a process the signal killed would
    assert process.returncode == 128 + signal.SIGTERM, f"{shlex.join(['bash', '-c', command])}: {process.returncode}"
    connection = await asyncpg.connect(lab.database_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM users WHERE username = $1", person.username) == 1
    finally:
        await connection.close()


async def test_sigkill_of_a_host_mid_conversation_loses_nothing(lab: Lab) -> None:
    alice, bob = await lab.public.person("alice").register(), await lab.public.person("bob").register()
    alice_tab, doomed, _ = await connect_on(alice, lab.public.tls)
    bob_tab, survivor, _ = await connect_on(bob, lab.public.tls, avoid=doomed)
    sides = [Talk(alice, bob, alice_tab, doomed), Talk(bob, alice, bob_tab, survivor)]
    count, interval = 40, 0.06
    killed = asyncio.Event()
    talking = [asyncio.create_task(talk(side, lab.public.tls, count, interval, killed)) for side in sides]
    await asyncio.sleep(count * interval / 2)
    killed.set()
    killed_at = time.monotonic()
    pids = lab_parts.kill_namespace(doomed)
    assert len(pids) >= 3, f"host {doomed}: expected the server and its two workers, found {pids}"
    await asyncio.gather(*talking)
    for side in sides:
        await sync_all(side)

    moved = sides[0].reconnected_at
    assert moved is not None, "Alice's socket on the killed host was never dropped"
    assert sides[1].reconnected_at is None, "Bob's socket on the surviving host was dropped"
    assert await settled_counts() == {survivor: 2}, "both sockets should now be on the surviving host"
    database = await asyncpg.connect(lab.database_url)
    try:
        for side, other in (sides, sides[::-1]):
            stored = {row["client_id"]: row["id"] for row in await database.fetch(
                "SELECT m.client_id, m.id FROM messages m JOIN users u ON u.id = m.sender_id WHERE u.username = $1",
                side.person.username)}
            assert stored == side.acked, "every client_id stored once, as acknowledged"
            assert other.received == {v: k for k, v in side.acked.items()}, "lost or doubled on delivery"
        figures = {side.person.username.split("_")[0]: {
            "sent": len(side.sent), "acked": len(side.acked), "unacked_at_kill": side.unacked_at_kill,
            "delivered": len(other.received), "lost": len(set(side.acked.values()) - set(other.received)),
            "frames": other.frames_received} for side, other in (sides, sides[::-1])}
    finally:
        await database.close()
    assert not sides[0].errors and not sides[1].errors, (sides[0].errors, sides[1].errors)
    print(f"\nhost {doomed} killed (pids {pids}); Alice moved to {survivor} in "
          f"{moved - killed_at:.2f} s; {json.dumps(figures)}")
    for side in sides:
        await side.socket.close()


def test_the_units_sandbox_lets_it_write_only_its_writable_paths(lab: Lab) -> None:
    """The lab's copy of the unit's sandbox is what it claims (or no test here would mean
    anything): read-only everywhere, writable only at the unit's paths, homes closed;
    the unit's user and umask; and strace sees every refused write."""
    unit, sandbox = deploy_unit.Unit.read(), lab.sandboxes["a"]
    trace = lab.folder / "probe.trace"
    folders = [*unit.writable, "/tmp", str(PROJECT_ROOT), "/etc", "/var/lib", "/srv", "/root", "/home"]
    command = sandbox.command(lab.folder / "probe.json", lab.env_files["a"], argv=[sys.executable, "-c", deploy_unit.WRITE_PROBE, *folders])
    answer = json.loads(lab_parts.run(*deploy_unit.traced(command, trace), env=deploy_unit.environment_for_sandbox()))
    assert answer["uid"] == pwd.getpwnam(unit.value("User")).pw_uid
    private = oct(0o666 & ~int(unit.value("UMask"), 8))
    homes = {home: answer["seen"].pop(home) for home in ("/root", "/home")}
    assert answer["seen"] == {**{path: private for path in [*unit.writable, "/tmp"]},
                              str(PROJECT_ROOT): "OSError", "/etc": "OSError", "/var/lib": "OSError", "/srv": "OSError"}
    # closed (an interpreter installed under /root is bound in read-only: tests/deploy/unit_sandbox.py)
    assert homes["/home"] == "PermissionError" and homes["/root"] in ("PermissionError", "OSError"), homes
    refused = deploy_unit.refused_writes(trace)
    for folder in (str(PROJECT_ROOT), "/etc", "/var/lib", "/srv", "/home"):
        assert any(f'"{folder}/probe-' in line for line in refused), (folder, refused)


async def test_the_hosts_wrote_nothing_outside_the_units_writable_paths(lab: Lab) -> None:
    """Every write either host tried since it started, through a story that touches each
    kind of file (an image and its thumbnail, a document, a logout erasing them): none was
    refused. The runtime folder holds the workers' metrics, the state folder the key."""
    alice, bob = await lab.public.person("alice").register(), await lab.public.person("bob").register()
    for name, content, kind in (("photo.png", image_bytes(), "image/png"), ("notes.pdf", PDF, "application/pdf")):
        uploaded = await alice.api("POST", "/api/upload-file/", files={"file": (name, content, kind)})
        assert uploaded.status_code == 201, uploaded.text
        sent = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": name,
                                                                   "attachment": uploaded.json()["file"]["id"]})
        assert sent.status_code == 201, sent.text
    assert (await alice.api("POST", "/api/logout/")).status_code == 200
    for host, running in lab.hosts.items():
        assert "ENOENT" in running.trace.read_text(), f"host {host}: strace logged no failed call at all"
        assert deploy_unit.refused_writes(running.trace) == [], f"host {host} wrote outside its writable paths"
        runtime = lab.sandboxes[host].behind(deploy_unit.Unit.read().environment["PROMETHEUS_MULTIPROC_DIR"])
        assert any(runtime.glob("*.db")), f"host {host}: no metrics in its runtime folder"
    assert lab.behind(_env(lab)["MASTER_KEY_FILE"]).is_file()


async def test_with_every_host_down_nginx_answers_503(lab: Lab) -> None:
    """Runs last: it kills what is left. The JSON shape and Retry-After, not a 502 page."""
    for host in HOSTS:
        lab_parts.kill_namespace(host)
    async with lab.public.client() as http:
        response = await http.get("/api/user-profile/")
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "unavailable"
    assert response.headers.get_list("retry-after") == ["5"]
    framing_refused(response.headers.multi_items(), "nginx's 503")


# ---- the systemd unit ------------------------------------------------------------

def test_the_unit_is_hardened_and_writes_only_media_and_its_key() -> None:
    analyze = required_tool("systemd-analyze")
    unit_path = PROJECT_ROOT / "deploy" / "secure-link.service"
    unit = dict(line.split("=", 1) for line in unit_path.read_text().splitlines()
                if "=" in line and not line.startswith("#") and not line.startswith("SystemCallFilter"))
    template = _template_env()
    assert unit["ProtectSystem"] == "strict"
    assert unit["ReadWritePaths"] == template["MEDIA_ROOT"], "the media folder, and nothing else, is writable"
    assert template["MASTER_KEY_FILE"] == f"/var/lib/{unit['StateDirectory']}/master-key", "but the key's folder"
    assert unit["UMask"] == "0077" and unit["StateDirectoryMode"] == "0700"
    assert unit["User"] != "root" and "DynamicUser" not in unit
    assert "--workers" in unit["ExecStart"]
    report = subprocess.run([analyze, "security", "--offline=yes", str(unit_path)],
                            capture_output=True, text=True, timeout=60, check=False).stdout
    exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", report).group(1))  # type: ignore[union-attr]
    assert exposure <= 2.0, report


def _template_env() -> dict[str, str]:
    from dotenv import dotenv_values

    return {k: v or "" for k, v in dotenv_values(PROJECT_ROOT / "deploy" / "secure-link.env").items()}
