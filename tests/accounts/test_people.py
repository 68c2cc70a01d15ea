"""Finding someone before a chat, and seeing their name and avatar change live.

Alice checks a username before she opens a chat with it: a name nobody has is
refused at once, not after her first send. She sees Bob online only once they
share a conversation, as `presence` frames are told. When Bob changes his
display name or avatar, Alice's open sockets hear a `profile` frame, and so do
Bob's own other tabs; Carol, who shares nothing with him, hears nothing.
"""

from __future__ import annotations

from pathlib import Path

from ..conftest import running_server, settings_for
from ..story import PNG, Person, Server, assert_error, form


async def look_up(asker: Person, username: str) -> dict:
    answer = await asker.api("GET", f"/api/users/{username}/")
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"user", "online"}
    return answer.json()


async def test_a_username_someone_has_answers_their_public_profile(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    found = await look_up(alice, bob.username.upper())  # folded like every username
    assert found == {"user": bob.user, "online": False}
    no_slash = await alice.api("GET", f"/api/users/{bob.username}")
    assert no_slash.status_code == 200 and no_slash.json() == found


async def test_presence_is_seen_only_by_a_conversation_partner(server: Server) -> None:
    """Bob is connected, but Alice, a stranger to him, reads `online: false` until they share a
    conversation; then she sees him come and go, as presence frames would tell her."""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    bob_tab = await bob.connect()
    assert (await look_up(alice, bob.username))["online"] is False
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "hello, stranger"})
    assert (await look_up(alice, bob.username))["online"] is True
    assert (await look_up(bob, alice.username))["online"] is False  # Alice has no socket open
    await bob_tab.close()
    for _ in range(200):  # the server forgets the socket a moment after it closes
        if not (await look_up(alice, bob.username))["online"]:
            break
    assert (await look_up(alice, bob.username))["online"] is False


async def test_nobody_yourself_and_strangers_to_the_api_are_refused(server: Server) -> None:
    alice = await server.person("alice").register()
    assert_error(await alice.api("GET", "/api/users/nobody_has_this_name/"), 404, "unknown_user")
    assert_error(await alice.api("GET", f"/api/users/{alice.username}/"), 422, "invalid_recipient", "username")
    async with server.client() as http:
        assert_error(await http.get(f"/api/users/{alice.username}/"), 401, "unauthenticated")


async def test_lookups_share_the_send_budget(database_url: str, media_root: Path) -> None:
    """CHAT_RATE_PER_S=1: a burst of two, then 429 with Retry-After."""
    async with running_server(settings_for(database_url, media_root, chat_rate_per_s=1)) as limited:
        alice, bob = await limited.person("alice").register(), await limited.person("bob").register()
        for _ in range(2):
            await look_up(alice, bob.username)
        refused = await alice.api("GET", f"/api/users/{bob.username}/")
        assert_error(refused, 429, "rate_limited")
        assert int(refused.headers["retry-after"]) >= 1


async def test_a_new_display_name_reaches_partners_and_own_tabs_only(server: Server) -> None:
    alice, bob, carol = [await server.person(name).register() for name in ("alice", "bob", "carol")]
    await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "hi Alice"})
    alice_tab, bob_other_tab, carol_tab = await alice.connect(), await bob.connect(), await carol.connect()
    changed = await bob.api("PATCH", "/api/user-profile/", json={"display_name": "Bob the Builder"})
    assert changed.status_code == 200, changed.text
    user = changed.json()["user"]
    assert user["display_name"] == "Bob the Builder"
    for socket in (alice_tab, bob_other_tab):
        assert await socket.expect("profile") == {"type": "profile", "user": user}
    await carol_tab.silent()


async def test_a_new_avatar_reaches_partners_with_its_url(server: Server) -> None:
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "show me your face"})
    alice_tab = await alice.connect()
    uploaded = await bob.api("POST", "/api/upload-file/", **form(PNG, "me.png", "avatar"))
    assert uploaded.status_code == 201, uploaded.text
    frame = await alice_tab.expect("profile")
    assert frame["user"]["username"] == bob.username
    assert frame["user"]["avatar_url"] == uploaded.json()["file"]["url"]
    attachment = await bob.api("POST", "/api/upload-file/", **form(PNG, "not-an-avatar.png"))
    assert attachment.status_code == 201
    await alice_tab.silent()  # an attachment changes nobody's profile


async def test_without_a_partner_a_change_is_heard_by_nobody_else(server: Server) -> None:
    """A user with no conversation still hears their own change on their other tab."""
    dana, erin = await server.person("dana").register(), await server.person("erin").register()
    dana_tab, erin_tab = await dana.connect(), await erin.connect()
    assert (await dana.api("PATCH", "/api/user-profile/", json={"display_name": "Dana"})).status_code == 200
    assert (await dana_tab.expect("profile"))["user"]["display_name"] == "Dana"
    await erin_tab.silent()
