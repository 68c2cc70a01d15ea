"""The operator's side (contract v1.2): `secure-link invites …` and `secure-link users …`.

Each command runs as an operator runs it, in its own process, against the database a
running server uses; suspending and deleting reach that server's sockets at once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from secure_link.config import Settings

from ..conftest import run_cli, running_server
from ..story import PHRASE, Server, assert_error, image_bytes, upload


@pytest.fixture(scope="module")
async def gated(settings: Settings) -> AsyncIterator[Server]:
    """The module's database in invite mode: only the operator's invites let the first people in."""
    async with running_server(settings.replace(registration="invite", public_url="https://chat.example")) as server:
        yield server


def env(server: Server) -> dict[str, str]:
    """What the operator's shell holds: the server's database (the pepper and key file: the tests')."""
    return {"DATABASE_URL": server.settings.database_url or "", "PUBLIC_URL": "https://chat.example"}


async def test_the_operator_invites_the_first_person_lists_and_revokes(gated: Server) -> None:
    code, out, err = await run_cli("invites", "create", "--uses", "2", "--expires", "2d", **env(gated))
    assert code == 0, err
    lines = dict(line.split(":", 1) for line in out.strip().splitlines())
    invite = lines["code"].strip()
    assert lines["link"].strip() == f"https://chat.example/?invite={invite}" and lines["uses"].strip() == "2"
    first = await gated.person("first").register(invite=invite)
    code, out, _ = await run_cli("invites", "list", "--json", **env(gated))
    listed = {item["code"]: item for item in json.loads(out)}
    assert code == 0 and listed[invite]["uses_left"] == 1 and listed[invite]["created_by"] is None
    theirs = (await first.api("POST", "/api/invites/", json={})).json()["code"]
    code, out, _ = await run_cli("invites", "list", **env(gated))
    assert code == 0 and out.splitlines()[0].split() == ["CODE", "USES", "LEFT", "EXPIRES", "CREATED", "BY"]
    assert any(line.startswith(theirs) and line.rstrip().endswith(first.username) for line in out.splitlines())
    code, out, _ = await run_cli("invites", "revoke", theirs, **env(gated))
    assert code == 0 and out.strip() == f"revoked {theirs}"
    assert_error(await first.api("DELETE", f"/api/invites/{theirs}/"), 404, "not_found")  # gone for its maker too


@pytest.mark.parametrize("args", [
    ("invites", "create", "--expires", "forever"),
    ("invites", "create", "--expires", "59s"),
    ("invites", "create", "--expires", "31d"),
    ("invites", "create", "--uses", "0"),
    ("invites", "create", "--uses", "101"),
    ("invites", "revoke", "not-a-live-code"),
    ("users", "suspend", "nobody_at_all"),
    ("users", "unsuspend", "nobody_at_all"),
    ("users", "delete", "nobody_at_all", "--yes"),
])
async def test_bad_input_exits_non_zero_with_one_line(gated: Server, args: tuple[str, ...]) -> None:
    code, out, err = await run_cli(*args, **env(gated))
    assert code != 0 and out == ""
    assert len([line for line in err.splitlines() if line.strip() and not line.startswith(("Usage:", "Try "))]) == 1, err


async def test_users_list_shows_each_account_with_its_figures(server: Server) -> None:
    alice = await server.person("alice").register()
    await alice.login()
    await upload(alice, image_bytes(), "photo.png")
    code, out, err = await run_cli("users", "list", "--json", **env(server))
    assert code == 0, err
    row = next(item for item in json.loads(out) if item["username"] == alice.username)
    assert row["live_sessions"] == 2 and row["bytes_stored"] > 0 and row["suspended"] is False
    assert row["last_seen"] and row["created_at"] == alice.user["created_at"]
    code, out, _ = await run_cli("users", "list", **env(server))
    assert out.splitlines()[0].split() == ["USERNAME", "CREATED", "LAST", "SEEN", "SESSIONS", "BYTES", "SUSPENDED"]
    assert any(line.startswith(alice.username) for line in out.splitlines())


async def test_a_suspension_closes_sockets_and_refuses_logins_until_lifted(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    tab = await alice.connect()
    code, _, err = await run_cli("users", "suspend", alice.username.upper(), **env(server))
    assert code == 0, err
    assert await tab.closed_with(timeout=2.0) == 4401
    assert_error(await alice.api("GET", "/api/user-profile/"), 401, "unauthenticated")
    async with server.client() as http:
        refused = await http.post("/api/login/", json={"username": alice.username, "phrase": PHRASE})
        wrong = await http.post("/api/login/", json={"username": alice.username, "phrase": "not hers at all"})
    assert_error(refused, 403, "account_suspended")
    assert_error(wrong, 401, "invalid_credentials")  # told only once the phrase is right
    assert json.loads((await run_cli("users", "list", "--json", **env(server)))[1])
    code, _, _ = await run_cli("users", "unsuspend", alice.username, **env(server))
    assert code == 0 and await alice.login()
    assert (await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "hi"})).status_code == 201


async def test_the_operator_deletes_an_account_as_its_owner_would(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "bye"})
    alice_tab, bob_tab = await alice.connect(), await bob.connect()
    code, out, err = await run_cli("users", "delete", alice.username, "--yes", **env(server))
    assert code == 0, err
    assert "1 messages" in out and "retired" in out
    assert await alice_tab.closed_with(timeout=2.0) == 4401
    assert (await bob_tab.expect("cleared", skip=("presence",))) == {"type": "cleared", "with": alice.username}
    async with server.client() as http:
        again = await http.post("/api/register/", json={"username": alice.username, "phrase": PHRASE})
    assert_error(again, 409, "username_taken")


async def test_deleting_asks_first_without_yes(server: Server) -> None:
    alice = await server.person("alice").register()
    code, _, err = await run_cli("users", "delete", alice.username, **env(server))  # no terminal: no answer
    assert code != 0 and "Aborted" in err
    assert (await alice.api("GET", "/api/user-profile/")).status_code == 200
