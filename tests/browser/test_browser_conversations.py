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

from .. import story
from .browser_kit import DESKTOP, HIDE, PHONE_DARK, Person, composer, new_person, png, start_chat
from ..story import Server

pytestmark = pytest.mark.xdist_group("browser")


async def twin(server: Server, person: Person) -> story.Person:
    """The same account over the API (a session of its own), to send from outside the browser."""
    other = server.person("twin")
    other.username = person.username
    other.token = await other.login()
    return other


async def someone(server: Server, name: str) -> story.Person:
    return await server.person(name).register()



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
        await expect(alice.log()).to_contain_text(f"No messages yet. Say hello to {carol.username}")
        await alice.accessible("an empty conversation")
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
        await alice.say("meanwhile, a word")  # text goes while the file uploads
        await alice.sees("meanwhile, a word")
        await expect(progress).to_be_visible()

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
        assert [m["message"] for m in history.json()["messages"]] == ["hello Bob", "meanwhile, a word"]  # no file
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
        await alice.accessible("a history loading")
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
        await expect(alice.page.get_by_role("status")).to_contain_text("Offline")
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


def presence_of(person: Person):  # type: ignore[no-untyped-def]
    return person.page.get_by_role("region").locator("header .presence")


async def test_presence_and_profiles_change_while_people_look(browser: Browser, server: Server) -> None:
    """Alice starts a conversation with Bob, who is online and only watching his list: each sees
    the other online at once. Alice's new avatar and name reach Bob's list without a reload.
    When Alice logs out, Bob's open chat says she is offline."""
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    bob = await new_person(browser, server, "bob", **PHONE_DARK)
    try:
        await alice.register()
        await bob.register()
        await start_chat(alice, bob.username)
        await expect(presence_of(alice)).to_have_text("offline")  # no conversation yet: not told
        await alice.say("hi Bob")
        await expect(presence_of(alice)).to_have_text("online")
        alice_in_bobs_list = bob.page.get_by_role("button", name=re.compile(alice.username))
        await expect(alice_in_bobs_list).to_contain_text("online")

        await alice.page.get_by_role("button", name="Account").click()
        async with alice.page.expect_file_chooser() as chooser:
            await alice.page.get_by_role("button", name="Change avatar").click()
        await (await chooser.value).set_files(png("me.png"))
        await expect(alice_in_bobs_list.locator("img")).to_have_attribute("src", re.compile("^/media/"))
        await alice.page.get_by_label("Display name").fill("Alice Liddell")
        await alice.page.get_by_role("button", name="Save name").click()
        await expect(alice.page.get_by_text("Saved.")).to_be_visible()
        await expect(alice_in_bobs_list).to_contain_text("Alice Liddell")
        await alice.page.get_by_role("region", name="Account", exact=True).evaluate("panel => panel.scrollTo(0, 0)")
        await alice.accessible("the account: profile, notifications, sessions")
        await alice.shoot("18-alice-profile-and-notifications")

        await alice_in_bobs_list.click()
        await expect(bob.page.get_by_role("heading", name=re.compile("Alice Liddell"))).to_be_visible()
        await expect(presence_of(bob)).to_have_text("online")
        await alice.page.get_by_role("button", name="Log out").click()
        await alice.page.get_by_role("dialog").get_by_role("button", name="Erase and log out").click()
        await expect(bob.log().get_by_text("This conversation was erased by a logout or a deleted account.")).to_be_visible()
        await expect(presence_of(bob)).to_have_text("offline")
    finally:
        await alice.context.close()
        await bob.context.close()
    assert expected_failures(alice) == [] and expected_failures(bob) == []


async def test_each_conversation_has_an_address(browser: Browser, server: Server) -> None:
    """On a phone, Bob opens Alice's chat: its address is his to reload or bookmark, and Back
    returns to his list, still in the app; Forward opens the chat again."""
    alice = await someone(server, "alice")
    bob = await new_person(browser, server, "bob", **PHONE_DARK)
    try:
        await bob.register()
        await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": "bookmark me"})
        await bob.page.get_by_role("button", name=re.compile(alice.username)).click()
        await expect(bob.page).to_have_url(re.compile(f"/chat/{alice.username}$"))
        await bob.page.reload()
        await expect(bob.page.get_by_role("heading", name=alice.username)).to_be_visible()
        await bob.sees("bookmark me")
        await bob.page.go_back()
        await expect(bob.page).to_have_url(re.compile("/$"))
        await expect(bob.page.get_by_role("button", name=re.compile(alice.username))).to_be_visible()
        await expect(bob.page.get_by_role("heading", name=alice.username)).to_be_hidden()
        await bob.page.go_forward()
        await expect(bob.page.get_by_role("heading", name=alice.username)).to_be_visible()
        await bob.page.get_by_role("button", name="Back to conversations").click()
        await expect(bob.page).to_have_url(re.compile("/$"))

        bookmark = await bob.context.new_page()  # a new tab, straight at the address
        await bookmark.goto(f"/chat/{alice.username}")
        await expect(bookmark.get_by_role("heading", name=alice.username)).to_be_visible()
        await expect(bookmark.get_by_role("log").get_by_text("bookmark me", exact=True)).to_be_visible()
        await bookmark.goto("/account")
        await expect(bookmark.get_by_role("heading", name="Account", exact=True)).to_be_visible()
    finally:
        await bob.context.close()
    assert expected_failures(bob) == []


async def send_many(sender: story.Person, to: str, count: int, text: str = "message") -> None:
    for n in range(count):
        answer = await sender.api("POST", "/api/send-message/", json={"to": to, "message": f"{text} {n}"})
        assert answer.status_code == 201, answer.text


async def test_a_long_conversation_keeps_few_rows_in_the_page(browser: Browser, server: Server) -> None:
    """300 messages arrive live while Alice reads: the page holds a window of them, not all 300.
    Scrolled back, she reads older ones paged in; a new message while she is away from the
    bottom is counted on the button that takes her back to the newest."""
    bob = await someone(server, "bob")
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    try:
        await alice.register()
        await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "the first"})
        await alice.page.get_by_role("button", name=re.compile(bob.username)).click()
        await alice.sees("the first")
        await send_many(bob, alice.username, 300)
        await alice.sees("message 299")
        rows = alice.log().locator("li[data-id]")
        assert 60 <= await rows.count() <= 150, await rows.count()
        await expect(alice.page.get_by_role("button", name=re.compile("^Jump to the newest"))).to_have_count(0)

        for _ in range(20):  # scroll to the top until the first message is in the page
            await alice.log().evaluate("log => log.scrollTo(0, 0)")
            if await alice.log().get_by_text("the first", exact=True).count():
                break
            await alice.page.wait_for_timeout(100)
        await expect(alice.log().get_by_text("the first", exact=True)).to_be_visible()
        assert await rows.count() <= 150, await rows.count()
        jump = alice.page.get_by_role("button", name=re.compile("^Jump to the newest"))
        await expect(jump).to_be_visible()
        await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "are you there?"})
        await expect(jump).to_have_accessible_name("Jump to the newest message, 1 new")
        await alice.accessible("a long conversation read back")
        await alice.shoot("19-alice-reading-back")
        carol = await someone(server, "carol")
        await start_chat(alice, carol.username)  # away, and back: the place she read at is kept
        await alice.page.get_by_role("button", name=re.compile(bob.username)).click()
        await expect(alice.log().get_by_text("the first", exact=True)).to_be_in_viewport()
        await jump.click()
        await expect(alice.log().get_by_text("are you there?", exact=True)).to_be_in_viewport()
        await expect(jump).to_have_count(0)
    finally:
        await alice.context.close()
    assert expected_failures(alice) == []


# A Notification that records what the page shows, and a permission that only a click can ask for.
NOTIFICATIONS = """
window.__shown = [];
window.__asked = 0;
window.__tones = 0;
class RecordedNotification {
  static permission = "default";
  static async requestPermission() {
    window.__asked += 1;
    RecordedNotification.permission = navigator.userActivation.isActive ? "granted" : "denied";
    return RecordedNotification.permission;
  }
  constructor(title, options) { window.__shown.push({ title, body: options?.body ?? "" }); this.onclick = null; }
  close() {}
}
window.Notification = RecordedNotification;
const start = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) { window.__tones += 1; return start.apply(this, args); };
"""

async def test_a_hidden_tab_counts_in_its_title_and_notifies(browser: Browser, server: Server) -> None:
    """Alice enables notifications with the button that says so (nothing is asked on load), then
    hides her tab with Bob's chat open. Bob's messages count in her title and each notifies her,
    naming him; their text only once she chooses it. Shown again, the title is clear and Bob
    sees his messages read."""
    bob = await someone(server, "bob")
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    try:
        await alice.page.add_init_script(NOTIFICATIONS)
        await alice.page.reload()
        await alice.register()
        await bob.api("POST", "/api/send-message/", json={"to": alice.username, "message": "hello"})
        await expect(alice.page).to_have_title("(1) Secure Link")
        await alice.page.get_by_role("button", name=re.compile(bob.username)).click()
        await expect(alice.page).to_have_title("Secure Link")
        assert await alice.page.evaluate("window.__asked") == 0  # never on load

        await alice.page.get_by_role("button", name="Account").click()
        await alice.page.get_by_role("button", name="Enable notifications").click()
        notify = alice.page.get_by_label("Notify me of new messages while this tab is hidden")
        await expect(notify).to_be_checked()
        show_text = alice.page.get_by_label(re.compile("^Show the message's text"))
        await expect(show_text).not_to_be_checked()  # private by default
        await alice.page.get_by_label("Play a sound for new messages while this tab is hidden").check()
        await alice.accessible("notification settings")
        await alice.page.get_by_role("button", name=re.compile(bob.username)).click()

        bob_tab = await bob.connect()
        await alice.page.evaluate(HIDE, True)
        sent = [await say(bob, alice, text) for text in ("are you there?", "it's urgent")]
        await expect(alice.page).to_have_title("(2) Secure Link")
        shown = await alice.page.evaluate("window.__shown")
        assert shown == [{"title": bob.username, "body": "New message"}] * 2, shown
        assert await alice.page.evaluate("window.__tones") >= 2

        await alice.page.evaluate(HIDE, False)
        await expect(alice.page).to_have_title("Secure Link")
        while (await bob_tab.expect("read", skip=("presence", "typing", "profile", "chat")))["up_to"] < sent[-1]["id"]:
            pass  # Bob hears that Alice has read both, now that she looks
        await alice.page.get_by_role("button", name="Account").click()
        await show_text.check()
        await alice.page.evaluate(HIDE, True)
        await say(bob, alice, "the code is 1234")
        await alice.page.wait_for_function("window.__shown.length === 3")
        assert (await alice.page.evaluate("window.__shown"))[2] == {"title": bob.username, "body": "the code is 1234"}
    finally:
        await alice.context.close()
    assert expected_failures(alice) == []


async def say(sender: story.Person, to: Person, text: str) -> dict[str, Any]:
    answer = await sender.api("POST", "/api/send-message/", json={"to": to.username, "message": text})
    assert answer.status_code == 201, answer.text
    return answer.json()


PASTE = """([name, type, bytes]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([new Uint8Array(bytes)], name, { type }));
  const box = document.getElementById("message-box");
  box.focus();
  box.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
}"""

DROP = """([name, type, bytes]) => {
  const transfer = new DataTransfer();
  transfer.items.add(new File([new Uint8Array(bytes)], name, { type }));
  const log = document.querySelector("[role=log]");
  for (const kind of ["dragenter", "dragover", "drop"]) {
    log.dispatchEvent(new DragEvent(kind, { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }
}"""

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


async def test_what_people_expect_of_a_chat(browser: Browser, server: Server) -> None:
    """Carol's first screen shows her username to share. Bob writes while she is away: his messages
    wait under "New messages", after today's date, each with its full date on hover, his link
    clickable and safe. Her box grows with a long message; she pastes and drops files, each shown
    before it goes; a photo opens full size in the page. Offline, a banner says what waits, with
    Retry. Her sessions are named as devices."""
    carol = await new_person(browser, server, "carol", **PHONE_DARK)
    try:
        await carol.register()
        first_run = carol.page.get_by_role("region", name="No conversations yet")
        await expect(first_run).to_contain_text(f"Your username is {carol.username}")
        await expect(first_run.get_by_role("button", name="Copy your username")).to_be_visible()
        await carol.accessible("the first run, on a phone, dark")
        await carol.shoot("20-carol-first-run-phone-dark")

        bob = await someone(server, "bob")
        await say(bob, carol, "before you looked")
        conversation = carol.page.get_by_role("button", name=re.compile(bob.username))
        await conversation.click()
        await carol.sees("before you looked")
        await carol.page.get_by_role("button", name="Back to conversations").click()
        for text in ("one", "two", "see https://example.org/news?x=1, and javascript:alert(1)"):
            await say(bob, carol, text)
        await expect(conversation).to_contain_text("3 unread")
        await conversation.click()
        items = carol.log().locator("li")
        texts = [text.strip() for text in await items.all_inner_texts()]
        assert texts[0] == "Today" and texts.index("New messages") == 2, texts  # after "before you looked"
        sent_at = carol.log().locator("li[data-id]").first.locator("time")
        assert re.search(r"\d{4}", await sent_at.get_attribute("title") or ""), "no full date on hover"
        link = carol.log().get_by_role("link", name="https://example.org/news?x=1")
        await expect(link).to_have_attribute("href", "https://example.org/news?x=1")
        await expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
        await expect(carol.log().get_by_role("link")).to_have_count(1)  # javascript: stays text
        await carol.accessible("new messages, a date and a link, on a phone, dark")
        await carol.shoot("21-carol-new-messages-phone-dark")

        box = composer(carol)
        one_line = (await box.bounding_box() or {})["height"]
        await box.fill("a long thought\n" * 5)
        assert (await box.bounding_box() or {})["height"] > one_line * 2, "the box did not grow"
        await box.fill("")

        await carol.page.evaluate(PASTE, ["pasted.png", "image/png", list(png("pasted.png")["buffer"])])
        await expect(carol.page.get_by_role("img", name="Preview of pasted.png")).to_be_visible()
        await carol.page.get_by_role("button", name="Remove pasted.png").click()
        await carol.page.evaluate(DROP, ["dropped.png", "image/png", list(png("dropped.png")["buffer"])])
        await expect(carol.page.get_by_role("img", name="Preview of dropped.png")).to_be_visible()
        await box.fill("caught it")
        await box.press("Enter")
        image = carol.log().get_by_role("img", name="dropped.png")
        await expect(image).to_be_visible()
        await carol.sees("caught it")
        await image.click()
        viewer = carol.page.get_by_role("dialog", name="Image: dropped.png")
        await expect(viewer.get_by_role("img", name="dropped.png")).to_have_attribute("src", re.compile(r"^/media/[^/]+$"))
        await carol.accessible("an image in the viewer, on a phone, dark")
        await carol.shoot("22-carol-image-viewer-phone-dark")
        await carol.page.keyboard.press("Escape")
        await expect(viewer).to_be_hidden()

        await carol.context.set_offline(True)
        await box.fill("from the tunnel")
        await box.press("Enter")
        banner = carol.page.get_by_text("Connection lost, reconnecting…")
        await expect(banner).to_be_visible()
        await expect(carol.page.get_by_text("1 message waits to be sent")).to_be_visible()
        await expect(carol.page.get_by_role("button", name="Retry now")).to_be_visible()
        await carol.accessible("the reconnect banner, on a phone, dark")
        await carol.shoot("23-carol-reconnecting-phone-dark")
        await carol.page.get_by_role("button", name="Retry now").click()  # still offline: it says so again
        await expect(banner).to_be_visible()
        await carol.context.set_offline(False)
        await expect(banner).to_be_hidden()
        await expect(carol.log().locator("[aria-busy=true]")).to_have_count(0)

        async with server.client(headers={"User-Agent": FIREFOX}) as http:
            answer = await http.post("/api/login/", json={"username": carol.username, "phrase": story.PHRASE})
            assert answer.status_code == 200
        await carol.page.goto("/account")
        await expect(carol.page.get_by_text("Firefox on Linux")).to_be_visible()
        await expect(carol.page.get_by_role("button", name=re.compile("^Revoke Firefox on Linux"))).to_be_visible()
    finally:
        await carol.context.close()
    assert expected_failures(carol) == []


async def test_a_conversation_opens_at_its_first_unread_message(browser: Browser, server: Server) -> None:
    """Seventy unread, more than a page: Carol starts reading at the first of them, paged in for her."""
    alice = await someone(server, "alice")
    carol = await new_person(browser, server, "carol", viewport=DESKTOP)
    try:
        await carol.register()
        await send_many(alice, carol.username, 70, "note")
        conversation = carol.page.get_by_role("button", name=re.compile(alice.username))
        await expect(conversation).to_contain_text("70 unread")
        await conversation.click()
        marker = carol.log().locator("li.unread-marker")
        await expect(marker).to_be_in_viewport()
        await expect(marker.locator("xpath=following-sibling::li[1]")).to_contain_text("note 0")
        await expect(carol.log().get_by_text("note 0", exact=True)).to_be_in_viewport()
        await expect(conversation).not_to_contain_text("unread")
    finally:
        await carol.context.close()
    assert expected_failures(carol) == []


async def test_the_client_arrives_compressed(browser: Browser, server: Server) -> None:
    """Chromium asks for brotli and gets the build's .br copy of each script and stylesheet."""
    context = await browser.new_context(base_url=server.http_url)
    try:
        page = await context.new_page()
        answers = []
        page.on("response", lambda answer: answers.append(answer) if "/assets/" in answer.url else None)
        await page.goto("/")
        await expect(page.get_by_role("button", name="Log in")).to_be_visible()  # decoded, and it runs
        assert {answer.url.rsplit(".", 1)[-1] for answer in answers} == {"js", "css"}
        for answer in answers:
            headers = await answer.all_headers()
            assert headers.get("content-encoding") == "br", (answer.url, headers)
            assert "accept-encoding" in headers.get("vary", "").lower()
    finally:
        await context.close()
