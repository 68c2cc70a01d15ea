"""The web client as people live in it all day (issue 27), in Debian's Chromium against the real server.

Each story below is one of the issue's defects or expectations, told as Alice, Bob and
Carol would meet it: a draft that must not follow Alice into Carol's chat, a history
that fails to load, a logout attempted offline, a username nobody has, presence and
avatars that must change while they look, an address per conversation, a long
conversation, and being told of messages while the tab is hidden. Every new screen is
scanned with axe-core and photographed; nothing may be logged as an error on the way
but what a story provokes on purpose (an aborted request, which Chromium logs).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import Browser, Route, expect

from . import story
from .browser_kit import DESKTOP, PHONE, Person, browser, new_person, png  # noqa: F401 (browser: a fixture)
from .story import Server

pytestmark = pytest.mark.xdist_group("browser")

PHONE_DARK: dict[str, Any] = {"viewport": PHONE, "color_scheme": "dark", "is_mobile": True, "has_touch": True}


async def twin(server: Server, person: Person) -> story.Person:
    """The same account over the API (a session of its own), to send from outside the browser."""
    other = server.person("twin")
    other.username = person.username
    other.token = await other.login()
    return other


async def someone(server: Server, name: str) -> story.Person:
    return await server.person(name).register()


async def start_chat(person: Person, username: str) -> None:
    field = person.page.get_by_label("Start a conversation with")
    await field.fill(username)
    await field.press("Enter")
    await expect(person.page.get_by_role("heading", name=username)).to_be_visible()


def composer(person: Person):  # type: ignore[no-untyped-def]
    return person.page.get_by_label("Message", exact=True)


def expected_failures(person: Person) -> list[str]:
    """Errors the page logged, less the failed loads a story caused on purpose."""
    return [error for error in person.errors if "net::ERR_" not in error and "Failed to load resource" not in error]


async def test_a_draft_and_an_upload_stay_with_their_conversation(browser: Browser, server: Server) -> None:
    """Alice writes to Bob, goes to Carol: Carol's box is empty, and Bob's draft waits for her return.
    A slow upload to Bob shows its name, percent and Cancel in Bob's chat only; Carol's Attach works."""
    bob, carol = await someone(server, "bob"), await someone(server, "carol")
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    try:
        await alice.register()
        await start_chat(alice, bob.username)
        await alice.say("hello Bob")  # so Bob is listed, to click back to
        await composer(alice).fill("for Bob only")
        await start_chat(alice, carol.username)
        await expect(composer(alice)).to_have_value("")
        await alice.page.get_by_role("button", name=re.compile(bob.username)).click()
        await expect(composer(alice)).to_have_value("for Bob only")

        cdp = await alice.context.new_cdp_session(alice.page)  # a slow line: 40 KB/s up
        await cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                            "downloadThroughput": -1, "uploadThroughput": 40_000})
        async with alice.page.expect_file_chooser() as chooser:
            await alice.page.get_by_role("button", name="Attach").click()
        await (await chooser.value).set_files({"name": "notes.txt", "mimeType": "text/plain",
                                               "buffer": b"a line of notes\n" * 25_000})
        await expect(alice.page.get_by_role("group", name="File to send: notes.txt")).to_be_visible()
        await alice.page.get_by_role("button", name="Send").click()
        progress = alice.page.get_by_role("progressbar", name="Sending notes.txt")
        await expect(progress).to_be_visible()
        await expect(alice.page.get_by_text(re.compile(r"^\d+ %$"))).to_be_visible()
        await expect(alice.page.get_by_role("button", name="Attach")).to_be_disabled()
        await alice.accessible("an upload under way")
        await alice.shoot("14-alice-upload-progress")

        await start_chat(alice, carol.username)
        await expect(progress).to_have_count(0)
        await expect(alice.page.get_by_role("button", name="Attach")).to_be_enabled()
        await expect(composer(alice)).to_have_value("")

        await alice.page.get_by_role("button", name=re.compile(bob.username)).click()
        await expect(progress).to_be_visible()
        await alice.page.get_by_role("button", name="Cancel").click()
        await expect(progress).to_have_count(0)
        await expect(alice.page.get_by_role("group", name="File to send: notes.txt")).to_be_visible()  # to send again
        await cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                            "downloadThroughput": -1, "uploadThroughput": -1})
        history = await bob.api("GET", "/api/messages/", params={"with": alice.username})
        assert [m["message"] for m in history.json()["messages"]] == ["hello Bob"]  # nothing was sent
    finally:
        await alice.context.close()
    assert expected_failures(alice) == []


async def test_a_failed_or_slow_history_says_so_and_keeps_the_unread_count(browser: Browser, server: Server) -> None:
    """Bob wrote three messages. Alice's first try to read them fails (the network drops the
    request): she is told, with Retry, and the list still counts three unread. The retry is slow:
    she sees it loading. Then the messages, and the count goes. A timer and a session that cannot
    be reached say so too."""
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    try:
        await alice.register()
        bob = await someone(server, "bob")
        for n in range(3):
            await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": f"news {n}"})
        await alice.page.reload()  # the messages are history now, not live frames
        conversation = alice.page.get_by_role("button", name=re.compile(bob.username))
        await expect(conversation).to_contain_text("3 unread")

        await alice.page.route("**/api/messages/?*", lambda route: route.abort("internetdisconnected"))
        await conversation.click()
        problem = alice.page.get_by_role("alert").filter(has_text="The messages could not be loaded")
        await expect(problem).to_contain_text("could not be reached")
        await expect(conversation).to_contain_text("3 unread")
        await alice.accessible("a history that failed to load")
        await alice.shoot("15-alice-history-failed")

        async def slowly(route: Route) -> None:
            await asyncio.sleep(1.5)
            await route.continue_()
        await alice.page.unroute("**/api/messages/?*")
        await alice.page.route("**/api/messages/?*", slowly)
        await problem.get_by_role("button", name="Retry").click()
        await expect(alice.log().get_by_text("Loading messages…")).to_be_visible()
        await expect(alice.log()).to_have_attribute("aria-busy", "true")
        await alice.sees("news 2")
        await expect(conversation).not_to_contain_text("unread")
        await expect(problem).to_have_count(0)
        await alice.page.unroute("**/api/messages/?*")

        await alice.page.route("**/timer/", lambda route: route.abort("internetdisconnected"))
        await alice.page.get_by_role("button", name=re.compile(r"^Timer: ")).click()
        dialog = alice.page.get_by_role("dialog", name="Disappearing messages")
        await expect(dialog.get_by_role("alert")).to_contain_text("Who set the timer could not be loaded")
        await dialog.get_by_role("button", name="Cancel").click()
        await alice.page.unroute("**/timer/")

        await twin(server, alice)  # another session, to revoke
        await alice.page.get_by_role("button", name="Account").click()
        await alice.page.route("**/api/sessions/*", lambda route: route.abort("internetdisconnected")
                               if route.request.method == "DELETE" else route.fallback())
        await alice.page.get_by_role("button", name=re.compile("^Revoke ")).click()
        await expect(alice.page.get_by_role("alert")).to_contain_text("is still logged in: the server could not be reached")
    finally:
        await alice.context.close()
    assert expected_failures(alice) == []


async def test_logging_out_offline_erases_nothing_and_says_so(browser: Browser, server: Server) -> None:
    """Offline, Alice's logout cannot reach the server: the dialog says nothing was erased and
    she is still logged in; back online, her conversation is all there and she can log out."""
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    try:
        await alice.register()
        bob = await someone(server, "bob")
        await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "keep this"})
        await alice.page.get_by_role("button", name=re.compile(bob.username)).click()
        await alice.sees("keep this")
        await alice.context.set_offline(True)
        await expect(alice.page.get_by_role("status")).to_have_text("Offline")
        await alice.page.get_by_role("button", name="Log out").click()
        dialog = alice.page.get_by_role("dialog")
        await dialog.get_by_role("button", name="Erase and log out").click()
        refusal = dialog.get_by_role("alert")
        await expect(refusal).to_contain_text("You are offline, so nothing was erased and you are still logged in")
        await alice.accessible("a logout refused offline")
        await alice.shoot("16-alice-logout-offline")
        await dialog.get_by_role("button", name="Cancel").click()
        await alice.context.set_offline(False)
        await expect(alice.page.get_by_role("status")).to_have_text("Connected")
        await alice.sees("keep this")
        history = await bob.api("GET", "/api/messages/", params={"with": alice.username})
        assert [m["message"] for m in history.json()["messages"]] == ["keep this"]
        await alice.page.get_by_role("button", name="Log out").click()
        await expect(dialog.get_by_role("alert")).to_have_count(0)  # the old refusal is not shown again
        await dialog.get_by_role("button", name="Erase and log out").click()
        await expect(alice.page.get_by_role("button", name="Log in")).to_be_visible()
    finally:
        await alice.context.close()
    assert expected_failures(alice) == []


async def test_a_username_nobody_has_opens_nothing(browser: Browser, server: Server) -> None:
    """A name nobody has, one's own, and an address naming nobody: each is said at once, and no
    conversation is listed or opened."""
    alice = await new_person(browser, server, "alice", **PHONE_DARK)
    try:
        await alice.register()
        field = alice.page.get_by_label("Start a conversation with")
        await field.fill("nobody_has_this_name")
        await field.press("Enter")
        await expect(alice.page.get_by_role("alert")).to_contain_text("Nobody has the username “nobody_has_this_name”")
        await expect(field).to_have_attribute("aria-invalid", "true")
        await expect(alice.page.get_by_role("navigation").get_by_role("listitem")).to_have_count(0)
        await expect(alice.page.get_by_role("heading", name="nobody_has_this_name")).to_have_count(0)
        await alice.accessible("a username nobody has, on a phone, dark")
        await alice.shoot("17-alice-unknown-username-phone-dark")
        await field.fill(alice.username.upper())
        await field.press("Enter")
        await expect(alice.page.get_by_role("alert")).to_contain_text("is you")
        await alice.page.goto("/chat/nobody_has_this_name")
        await expect(alice.page.get_by_role("alert")).to_contain_text("Nobody has the username")
        await expect(alice.page).to_have_url(re.compile(r"/$"))
        await expect(alice.page.get_by_role("navigation").get_by_role("listitem")).to_have_count(0)
    finally:
        await alice.context.close()
    assert expected_failures(alice) == []
