"""Who may reach you (contract v1.2) in the web client, in Debian's Chromium against the real server.

Alice invites Bob with a link from her account; Bob opens it and registers with its code
already filled in, and Carol, with the same link spent, is told why by the code's field.
A closed server says so instead of offering Register. Alice blocks Bob from their chat: she
is asked first and told what a block does, Bob's next message is refused and says so, and
both composers say why they are disabled until she unblocks him. Alice changes her phrase:
her phone's session ends and its login screen says so. Alice deletes her account: she is
told everything it erases, asked her phrase again, and shown what went; Bob's copy of their
conversation goes with it. A send retried after its message was deleted simply goes.
Every new screen is scanned with axe-core and photographed; nothing may be logged as an
error on the way but what a story provokes on purpose.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.async_api import Browser, WebSocketRoute, expect

from secure_link.config import Settings

from .. import story
from ..conftest import running_server
from ..story import PHRASE, Server
from .browser_kit import DESKTOP, HIDE, PHONE_DARK, Person, composer, new_person, start_chat

pytestmark = pytest.mark.xdist_group("browser")

NEW_PHRASE = "violet lanterns drift downstream"
CLIPBOARD = ["clipboard-read", "clipboard-write"]


def refused(person: Person) -> list[int]:
    """The statuses of the refusals the page met, in order: Chromium logs each 4xx answer to a
    fetch as an error. Anything else the page logged fails the story."""
    statuses = [re.search(r"Failed to load resource: the server responded with a status of (\d+)", error)
                for error in person.errors]
    assert all(statuses), person.errors
    return [int(status.group(1)) for status in statuses if status]


async def member(server: Server, person: Person) -> story.Person:
    """The browser person's account, made over the API (on an open server sharing the database)."""
    account = server.person("member")
    account.username = person.username
    return await account.register()



async def open_account(person: Person) -> None:
    await person.page.get_by_role("button", name="Account").click()
    await expect(person.page.get_by_role("heading", name="Account", exact=True)).to_be_visible()


async def fill_registration(person: Person) -> None:
    await person.page.get_by_label("Username").fill(person.username)
    await person.page.get_by_label("Phrase", exact=True).fill(PHRASE)
    await person.page.get_by_role("button", name="Register").click()


async def test_an_invite_link_lets_one_person_register(browser: Browser, server: Server, settings: Settings) -> None:
    """On a server that takes people by invite, Alice makes a link in her account and copies it.
    Bob opens it: the code is filled in, and he is in. Carol opens the spent link: the code's field
    says why she is not. A link Alice revokes lets nobody in."""
    async with running_server(settings.replace(registration="invite")) as gated:
        alice = await new_person(browser, gated, "alice", viewport=DESKTOP, permissions=CLIPBOARD)
        bob = await new_person(browser, gated, "bob", **PHONE_DARK)
        carol = await new_person(browser, gated, "carol", viewport=DESKTOP)
        try:
            await member(server, alice)
            await alice.log_in()
            await open_account(alice)
            invites = alice.page.get_by_role("region", name="Invites")
            await invites.get_by_role("button", name="Invite someone").click()
            link = invites.get_by_role("textbox", name=re.compile("^the invite link ending in"))
            await expect(link).to_have_count(1)
            url = await link.input_value()
            assert url.startswith(f"{gated.http_url}/?invite="), url
            await expect(invites).to_contain_text("1 use left")
            await invites.get_by_role("button", name=re.compile("^Copy the invite link")).click()
            await expect(invites).to_contain_text("Copied the invite link ending in")
            assert await alice.page.evaluate("navigator.clipboard.readText()") == url
            await invites.scroll_into_view_if_needed()
            await alice.accessible("the account's invites")
            await alice.shoot("24-alice-invites")

            await bob.page.goto(url)
            code = bob.page.get_by_label("Invite code")
            await expect(code).to_have_value(url.split("=", 1)[1])
            await expect(bob.page.get_by_text("You were invited.")).to_be_visible()
            await bob.accessible("an invite link opened, on a phone, dark")
            await bob.shoot("25-bob-invited-phone-dark")
            await fill_registration(bob)
            await expect(bob.page.get_by_role("status")).to_have_text("Connected")
            await expect(bob.page).to_have_url(f"{gated.http_url}/")  # the code leaves the address

            await carol.page.goto(url)
            await fill_registration(carol)
            code = carol.page.get_by_label("Invite code")
            await expect(code).to_have_attribute("aria-invalid", "true")
            await expect(code).to_have_accessible_description(  # the server's words, by the field
                re.compile("unknown, revoked, expired or used up"))
            await expect(carol.page.get_by_role("button", name="Log in")).to_be_visible()  # still outside
            await carol.accessible("a spent invite refused")
            await carol.shoot("26-carol-spent-invite")

            await alice.page.reload()
            await expect(invites.get_by_role("button", name="Invite someone")).to_be_visible()
            await expect(link).to_have_count(0)  # used up: no longer live
            await invites.get_by_role("button", name="Invite someone").click()
            revoked = await link.input_value()
            await invites.get_by_role("button", name=re.compile("^Revoke the invite link")).click()
            await expect(invites).to_contain_text("it can no longer be used")
            await expect(link).to_have_count(0)
            async with gated.client() as http:
                answer = await http.post("/api/register/", json={"username": "dora_from_the_link", "phrase": PHRASE,
                                                                 "invite": revoked.split("=", 1)[1]})
            assert answer.status_code == 403 and answer.json()["error"]["code"] == "invite_invalid", answer.text
        finally:
            for person in (alice, bob, carol):
                await person.context.close()
    assert refused(alice) == [] and refused(bob) == []
    assert refused(carol) == [403]  # the spent invite


async def test_a_closed_server_offers_no_registration(browser: Browser, server: Server, settings: Settings) -> None:
    """Registration closed: the login screen says so instead of offering Register; logging in works."""
    async with running_server(settings.replace(registration="closed")) as closed:
        dave = await new_person(browser, closed, "dave", **PHONE_DARK)
        try:
            await member(server, dave)
            await expect(dave.page.get_by_text("Registration is closed on this server")).to_be_visible()
            await expect(dave.page.get_by_role("button", name="Register")).to_have_count(0)
            await dave.accessible("registration closed, on a phone, dark")
            await dave.shoot("27-dave-registration-closed-phone-dark")
            await dave.log_in()
        finally:
            await dave.context.close()
    assert refused(dave) == []


async def test_blocking_asks_first_and_says_why_nothing_can_be_sent(browser: Browser, server: Server) -> None:
    """Alice blocks Bob from their chat: asked first, told what it does. Her composer, and her
    other tab once she looks at it, say she blocked him; Bob's next message is refused and says
    so, and his composer says why. Her account lists him. She unblocks him: both write again."""
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    bob = await new_person(browser, server, "bob", **PHONE_DARK)
    try:
        await alice.register()
        await bob.register()
        await start_chat(alice, bob.username)
        await alice.say("hello Bob")
        await bob.page.get_by_role("button", name=re.compile(alice.username)).click()
        await bob.sees("hello Bob")
        other_tab = await alice.context.new_page()
        await other_tab.goto(f"/chat/{bob.username}")
        await expect(other_tab.get_by_role("button", name="Block")).to_be_visible()

        await alice.page.get_by_role("button", name="Block").click()
        dialog = alice.page.get_by_role("dialog", name=f"Block {bob.username}?")
        await expect(dialog).to_contain_text("Neither of you will be able to send the other messages")
        await expect(dialog).to_contain_text("Your conversation stays as it is")
        await alice.accessible("the block dialog")
        await alice.shoot("28-alice-block-dialog")
        await dialog.get_by_role("button", name=f"Block {bob.username}").click()
        await expect(dialog).to_be_hidden()
        await expect(alice.page.get_by_role("button", name="Unblock")).to_be_visible()
        await expect(composer(alice)).to_be_disabled()
        await expect(composer(alice)).to_have_accessible_description(
            f"You blocked {bob.username}, so neither of you can send messages. Unblock {bob.username} to write again.")
        await expect(alice.page.get_by_role("button", name="Send")).to_be_disabled()
        await expect(alice.page.get_by_role("button", name="Attach")).to_be_disabled()

        await bob.say("are you still there?")
        await expect(bob.log()).to_contain_text("Not sent: One of you has blocked the other")
        await expect(composer(bob)).to_be_disabled()
        await expect(composer(bob)).to_have_accessible_description(
            f"{alice.username} has blocked you, so you cannot send them messages.")
        await bob.accessible("a conversation blocked by the other, on a phone, dark")
        await bob.shoot("29-bob-blocked-phone-dark")
        assert await texts_between(server, alice, bob) == ["hello Bob"]  # nothing stored

        await other_tab.evaluate(HIDE, True)  # the other tab learns of the block when it is looked at again
        await other_tab.evaluate(HIDE, False)
        await expect(other_tab.get_by_role("button", name="Unblock")).to_be_visible()
        await expect(other_tab.get_by_label("Message", exact=True)).to_be_disabled()
        await other_tab.close()

        await open_account(alice)
        blocked = alice.page.get_by_role("region", name="Blocked people")
        await expect(blocked).to_contain_text(bob.username)
        await expect(blocked.get_by_role("button", name=f"Unblock {bob.username}")).to_be_visible()
        await alice.page.get_by_role("navigation").get_by_role("button", name=re.compile(bob.username)).click()
        await alice.page.get_by_role("button", name="Unblock", exact=True).click()
        dialog = alice.page.get_by_role("dialog", name=f"Unblock {bob.username}?")
        await dialog.get_by_role("button", name=f"Unblock {bob.username}").click()
        await expect(composer(alice)).to_be_enabled()
        await expect(composer(bob)).to_be_enabled()  # Alice's presence comes back: nothing stands between them
        await bob.say("back again")
        await alice.sees("back again")
    finally:
        await alice.context.close()
        await bob.context.close()
    assert refused(alice) == [] and refused(bob) == []


async def texts_between(server: Server, person: Person, peer: Person) -> list[str]:
    """The conversation as the server holds it, read in a session of the person's own."""
    account = server.person("api")
    account.username = person.username
    history = await account.api("GET", "/api/messages/", token=await account.login(), params={"with": peer.username})
    return [message["message"] for message in history.json()["messages"]]


async def test_changing_the_phrase_ends_the_other_sessions(browser: Browser, server: Server) -> None:
    """Alice changes her phrase on her desktop: a wrong current phrase and a mistyped new one are
    said by their fields. Once it is changed, her phone's session ends, and its login screen says
    so; the old phrase no longer opens it, the new one does."""
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    phone = await new_person(browser, server, "alice-phone", **PHONE_DARK)
    try:
        await alice.register()
        phone.username = alice.username
        await phone.log_in()
        await open_account(alice)
        section = alice.page.get_by_role("region", name="Phrase")
        current, new, again = (section.get_by_label("Current phrase"), section.get_by_label("New phrase", exact=True),
                               section.get_by_label("New phrase, again"))
        await current.fill("not my phrase at all")
        await new.fill(NEW_PHRASE)
        await again.fill(NEW_PHRASE)
        await section.get_by_role("button", name="Change phrase").click()
        await expect(current).to_have_attribute("aria-invalid", "true")
        await current.fill(PHRASE)
        await again.fill(NEW_PHRASE + " too")
        await section.get_by_role("button", name="Change phrase").click()
        await expect(again).to_have_attribute("aria-invalid", "true")
        await expect(current).not_to_have_attribute("aria-invalid", "true")
        await alice.accessible("a new phrase mistyped")
        await section.scroll_into_view_if_needed()
        await alice.shoot("33-alice-change-phrase")
        await again.fill(NEW_PHRASE)
        await section.get_by_role("button", name="Change phrase").click()
        await expect(section).to_contain_text("Your phrase is changed.")
        await expect(current).to_have_value("")

        ended = phone.page.get_by_role("status")
        await expect(ended).to_contain_text("Your session has ended")
        await expect(phone.page.get_by_role("button", name="Log in")).to_be_visible()
        await phone.accessible("a session ended elsewhere, on a phone, dark")
        await phone.shoot("30-alice-session-ended-phone-dark")
        await expect(alice.page.get_by_role("status")).to_have_text("Connected")  # the session that asked stays
        await phone.page.get_by_label("Phrase").fill(PHRASE)
        await phone.page.get_by_role("button", name="Log in").click()
        await expect(phone.page.get_by_role("alert")).to_be_visible()  # the old phrase opens nothing
        await phone.log_in(NEW_PHRASE)
    finally:
        await alice.context.close()
        await phone.context.close()
    assert refused(alice) == [401]  # the wrong phrase
    assert refused(phone) == [401]  # the old phrase


async def test_deleting_the_account_says_what_it_erases_and_what_went(browser: Browser, server: Server) -> None:
    """Alice deletes her account: the dialog lists what goes, for whom, and that her name is
    retired, and asks her phrase again. A wrong phrase is said by its field; the right one takes
    her to the login screen, which says what was erased. Her other device's session ends; Bob's
    copy of their conversation goes, her name is nobody's, and nobody can take it."""
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    laptop = await new_person(browser, server, "alice-laptop", viewport=DESKTOP)
    bob = await new_person(browser, server, "bob", **PHONE_DARK)
    try:
        await alice.register()
        await bob.register()
        laptop.username = alice.username
        await laptop.log_in()
        await start_chat(alice, bob.username)
        await alice.say("before I go")
        await bob.page.get_by_role("button", name=re.compile(alice.username)).click()
        await bob.sees("before I go")

        await open_account(alice)
        await alice.page.get_by_role("button", name="Delete account…").click()
        dialog = alice.page.get_by_role("dialog", name="Delete your account?")
        await expect(dialog).to_contain_text("for you and for the people you talk to")
        await expect(dialog).to_contain_text(f"Your username {alice.username} can never be registered again")
        await expect(dialog.get_by_role("button", name="Delete my account")).to_be_disabled()  # not before the phrase
        phrase = dialog.get_by_label("Your phrase")
        await phrase.fill("not my phrase at all")
        await dialog.get_by_role("button", name="Delete my account").click()
        await expect(phrase).to_have_attribute("aria-invalid", "true")
        await alice.accessible("the delete-account dialog, a wrong phrase")
        await alice.shoot("31-alice-delete-account")
        await phrase.fill(PHRASE)
        await dialog.get_by_role("button", name="Delete my account").click()

        said = alice.page.get_by_role("status")
        await expect(said).to_have_text(f"Your account “{alice.username}” was deleted, and with it 1 message and 0 files, "
                                        "for you and for the people you talked to.")
        await alice.accessible("the login screen after a deletion")
        await alice.shoot("32-alice-account-deleted")
        await expect(laptop.page.get_by_role("status")).to_contain_text("Your session has ended")
        await expect(bob.log()).to_contain_text("This conversation was erased by a logout or a deleted account.")
        await bob.page.goto(f"/chat/{alice.username}")
        await expect(bob.page.get_by_role("alert")).to_contain_text(f"Nobody has the username “{alice.username}”")

        await alice.page.get_by_label("Username").fill(alice.username)
        await alice.page.get_by_label("Phrase").fill(PHRASE)
        await alice.page.get_by_role("button", name="Register").click()
        await expect(alice.page.get_by_label("Username")).to_have_accessible_description(re.compile("is taken$"))  # retired
        await expect(alice.page.get_by_role("button", name="Log in")).to_be_visible()
    finally:
        for person in (alice, laptop, bob):
            await person.context.close()
    assert refused(alice) == [401, 409]  # the wrong phrase, the retired name
    assert refused(laptop) == []
    assert refused(bob) == [404]  # the lookup of a name nobody has


async def test_a_retried_send_whose_message_was_deleted_just_goes(browser: Browser, server: Server) -> None:
    """Alice's message is stored but its ack is lost; Bob deletes it for everyone meanwhile. When
    her page reconnects and sends it again, the server answers `gone`: the message leaves her
    screen, and nothing says "Not sent"."""
    bob = await story.Person(server, "bob").register()
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    routes: list[tuple[WebSocketRoute, WebSocketRoute]] = []
    lost: list[dict[str, Any]] = []

    def relay(page_side: WebSocketRoute) -> None:
        """Between the page and the server: passes every frame but the first ack of "soon deleted"."""
        server_side = page_side.connect_to_server()
        routes.append((page_side, server_side))

        def from_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "ack" and frame["message"]["message"] == "soon deleted" and not lost:
                lost.append(frame)
                return
            page_side.send(message)
        server_side.on_message(from_server)

    try:
        await alice.page.route_web_socket("**/ws/chat/", relay)
        await alice.register()
        await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "hi Alice"})
        await alice.page.get_by_role("button", name=re.compile(bob.username)).click()
        await alice.sees("hi Alice")
        await alice.say("soon deleted")
        pending = alice.log().locator("li[aria-busy=true]")
        await expect(pending).to_contain_text("soon deleted")
        for _ in range(100):  # the ack is on its way, and is lost: it was stored
            if lost:
                break
            await alice.page.wait_for_timeout(50)
        assert lost, "no ack came for the send"
        answer = await bob.api("DELETE", f"/api/messages/{lost[0]['message']['id']}/")
        assert answer.status_code == 200, answer.text
        page_side, server_side = routes[-1]
        await server_side.close()
        await page_side.close(code=1012)  # as a restart would: the page reconnects and sends it again
        await expect(alice.page.get_by_role("status")).to_have_text("Connected")
        await expect(alice.log().get_by_text("soon deleted")).to_have_count(0)
        await expect(alice.log()).not_to_contain_text("Not sent")
        await expect(alice.page.get_by_text("wait to be sent")).to_have_count(0)
        assert len(routes) >= 2  # it did reconnect
    finally:
        await alice.context.close()
    assert refused(alice) == []
