"""The web client in a real browser: Debian's Chromium driven by Playwright.

Two browser contexts are two people, Alice on a desktop-sized window and Bob on
a phone-sized one in dark mode, against the real server serving the built
client. They register, chat both ways live, see typing and read receipts, send
an image, reload, lose the network, and log out; with v1.1's timers they set a
timer, watch messages disappear, and delete one for everyone. Each screen is scanned with
axe-core and photographed (into var/screens, or SECURE_LINK_SCREENS: `make
screens` writes docs/screens). Nothing may be logged as an error on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable

import pytest
from playwright.async_api import Browser, expect

from secure_link.config import PROJECT_ROOT

from .browser_kit import DESKTOP, PHONE, Person, new_person, png
from ..story import PHRASE, Server

# One xdist worker runs the module: one Chromium, and the screenshots and metrics it writes.
pytestmark = pytest.mark.xdist_group("browser")

METRICS = PROJECT_ROOT / "var" / "browser-metrics.json"
USABLE_LOGIN = """() => {
  const button = [...document.querySelectorAll("button")].find((b) => b.textContent === "Log in");
  return button && !button.disabled && document.querySelector("input[name=phrase]") ? performance.now() : null;
}"""


async def first_load_ms(browser: Browser, server: Server) -> float:
    """Milliseconds from navigation start to a login form that takes input, in a fresh context."""
    context = await browser.new_context(base_url=server.http_url, viewport=DESKTOP)
    try:
        page = await context.new_page()
        await page.goto("/", wait_until="commit")
        usable = await page.wait_for_function(USABLE_LOGIN, polling="raf")
        await expect(page.get_by_text("at least 3 words")).to_be_visible()  # phrase rules before submit
        return await usable.json_value()
    finally:
        await context.close()


async def test_first_load_shows_a_usable_login_screen(browser: Browser, server: Server) -> None:
    """The figures for the issue's target (under 1 s) are recorded, not asserted: timing is no test.
    The first load in a just-started browser also pays for its renderer process."""
    cold = await first_load_ms(browser, server)
    warm = [await first_load_ms(browser, server) for _ in range(3)]
    METRICS.parent.mkdir(exist_ok=True)
    METRICS.write_text(json.dumps({"first_load_cold_browser_ms": round(cold),
                                   "first_load_warm_browser_ms": [round(ms) for ms in warm]}))


async def test_server_errors_are_shown_by_field(browser: Browser, server: Server) -> None:
    person = await new_person(browser, server, "shorty", viewport=DESKTOP)
    try:
        await person.page.get_by_label("Username").fill(person.username)
        await person.page.get_by_label("Phrase").fill("too short")
        await person.page.get_by_role("button", name="Register").click()
        phrase = person.page.get_by_label("Phrase")
        await expect(phrase).to_have_attribute("aria-invalid", "true")
        described = await phrase.get_attribute("aria-describedby") or ""
        error_id = described.split()[-1]
        await expect(person.page.locator(f"[id='{error_id}']")).to_contain_text(re.compile("character|word"))
        await person.accessible("login with an error")
        await person.shoot("02-field-error")
    finally:
        await person.context.close()
    # Only the answer this test asked for may show in the console (Chromium logs a 4xx as an error).
    assert all("status of 422" in error for error in person.errors), person.errors


async def test_two_people_chat_in_two_browsers(browser: Browser, server: Server) -> None:
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    bob = await new_person(browser, server, "bob", viewport=PHONE, color_scheme="dark", is_mobile=True, has_touch=True)
    try:
        await alice.accessible("login")
        await alice.shoot("01-login")
        await alice.register()
        await bob.register()
        await chat_both_ways(alice, bob)
        await send_an_image(alice, bob)
        await reload_keeps_history(bob, alice)
        await offline_and_back(bob, alice)
        await account_and_sessions(alice, bob, server)
        await logout_clears_both_sides(alice, bob)
    finally:
        await alice.context.close()
        await bob.context.close()
    assert alice.errors == [] and bob.errors == []


async def chat_both_ways(alice: Person, bob: Person) -> None:
    await alice.open_chat(bob)
    await alice.say("Hi Bob, it's Alice")
    await alice.sees("Hi Bob, it's Alice")
    conversation = bob.page.get_by_role("button", name=re.compile(alice.username))
    await expect(conversation).to_contain_text("1 unread")
    await bob.accessible("conversation list on a phone, dark")
    await bob.shoot("03-bob-conversations-phone-dark")
    await conversation.click()
    await bob.sees("Hi Bob, it's Alice")
    await expect(alice.log().get_by_text("Read")).to_be_visible()  # Bob's receipt
    await bob.page.get_by_label("Message", exact=True).press_sequentially("typing", delay=20)
    await expect(alice.page.get_by_text(f"{bob.username} is typing…")).to_be_visible()
    await alice.shoot("04-alice-sees-bob-typing")
    await bob.page.get_by_label("Message", exact=True).press("Enter")
    await alice.sees("typing")
    await bob.say("Hello Alice!")
    await alice.sees("Hello Alice!")
    await bob.sees("Hello Alice!")
    await expect(alice.page.get_by_text(f"{bob.username} is typing…")).to_be_hidden()
    await alice.accessible("chat")
    await bob.accessible("chat on a phone, dark")
    await bob.shoot("05-bob-chat-phone-dark")


async def send_an_image(alice: Person, bob: Person) -> None:
    """Attach stages the file with a preview; the message box holds its caption until Send."""
    async with alice.page.expect_file_chooser() as chooser:
        await alice.page.get_by_role("button", name="Attach").click()
    await (await chooser.value).set_files(png("harbour.png"))
    await expect(alice.page.get_by_role("img", name="Preview of harbour.png")).to_be_visible()
    await alice.page.get_by_label("Message", exact=True).fill("The harbour this morning")
    await alice.accessible("a file staged with its caption")
    await alice.shoot("06a-alice-staged-image")
    await alice.page.get_by_role("button", name="Send").click()
    await bob.sees("The harbour this morning")
    for person in (alice, bob):
        image = person.log().get_by_role("img", name="harbour.png")
        await expect(image).to_be_visible()
        await expect(image).to_have_attribute("src", re.compile(r"^/media/.+/thumbnail$"))
        # decode() waits for the bytes (visible is not loaded, on a busy machine) and rejects a broken image
        assert await image.evaluate("img => img.decode().then(() => img.naturalWidth > 0, () => false)"), \
            "thumbnail did not load"
    await alice.shoot("06-alice-image")


async def reload_keeps_history(bob: Person, alice: Person) -> None:
    """The chat has an address of its own: a reload comes back to it, history and all."""
    await bob.page.reload()
    await expect(bob.page.get_by_role("heading", name=alice.username)).to_be_visible()
    for text in ("Hi Bob, it's Alice", "typing", "Hello Alice!"):
        await bob.sees(text)
    await expect(bob.log().get_by_role("img", name="harbour.png")).to_be_visible()


async def offline_and_back(bob: Person, alice: Person) -> None:
    """Bob loses the network while Alice sends, and writes one himself; back online, each shows once."""
    await bob.context.set_offline(True)
    await expect(bob.page.get_by_role("status")).to_contain_text("Offline")
    for n in range(3):
        await alice.say(f"while you were away {n}")
    await bob.say("sent from a tunnel")
    await expect(bob.log().get_by_text("sent from a tunnel", exact=True)).to_be_visible()
    await expect(bob.log().locator("[aria-busy=true]")).to_have_count(1)  # pending until its ack
    await bob.shoot("07-bob-offline-pending")
    await bob.context.set_offline(False)
    await expect(bob.page.get_by_role("status")).to_have_text("Connected")
    for n in range(3):
        await bob.sees(f"while you were away {n}")
    await expect(bob.log().locator("[aria-busy=true]")).to_have_count(0)
    await alice.sees("sent from a tunnel")
    await bob.sees("sent from a tunnel")
    ids = await bob.log().locator("li[data-id]").evaluate_all("items => items.map(i => Number(i.dataset.id))")
    assert ids == sorted(set(ids)), f"messages out of order or doubled: {ids}"


async def account_and_sessions(alice: Person, bob: Person, server: Server) -> None:
    """Alice sees her sessions, revokes one left on another device, and changes her avatar."""
    async with server.client() as http:
        other = await http.post("/api/login/", json={"username": alice.username, "phrase": PHRASE})
        assert other.status_code == 200, other.text
    await alice.page.get_by_role("button", name="Account").click()
    await expect(alice.page.get_by_text("This device")).to_be_visible()
    await alice.page.get_by_role("button", name="Revoke").click()
    await expect(alice.page.get_by_role("button", name="Revoke")).to_have_count(0)
    async with server.client() as http:
        revoked = await http.get("/api/user-profile/", headers={"Authorization": f"Bearer {other.json()['token']}"})
    assert revoked.status_code == 401
    async with alice.page.expect_file_chooser() as chooser:
        await alice.page.get_by_role("button", name="Change avatar").click()
    await (await chooser.value).set_files(png("me.png"))
    await expect(alice.page.locator(".me img")).to_have_attribute("src", re.compile("^/media/"))
    await alice.accessible("account")
    await alice.page.get_by_role("region", name="Account", exact=True).evaluate("panel => panel.scrollTo(0, 0)")
    await alice.shoot("08-alice-account")
    await alice.page.get_by_role("button", name=re.compile(bob.username)).click()
    await alice.sees("sent from a tunnel")


async def logout_clears_both_sides(alice: Person, bob: Person) -> None:
    await alice.page.get_by_role("button", name="Log out").click()
    dialog = alice.page.get_by_role("dialog")
    await expect(dialog).to_contain_text("for you and for the people you talk to")
    await alice.accessible("logout dialog")
    await alice.shoot("09-alice-logout-warning")
    await dialog.get_by_role("button", name="Erase and log out").click()
    await expect(alice.page.get_by_role("button", name="Log in")).to_be_visible()
    await expect(bob.log().get_by_text("This conversation was erased by a logout or a deleted account.")).to_be_visible()
    await expect(bob.log().locator("li[data-id]")).to_have_count(0)
    await bob.accessible("cleared chat")
    await bob.shoot("10-bob-cleared-phone-dark")


def timer_button(person: Person):  # type: ignore[no-untyped-def]
    return person.page.get_by_role("button", name=re.compile(r"^Timer: "))


async def set_timer(person: Person, choice: str, seconds: str | None = None, screen: str | None = None) -> None:
    """Open the timer dialog, pick a length (`Other` takes `seconds`), and save."""
    await timer_button(person).click()
    dialog = person.page.get_by_role("dialog", name="Disappearing messages")
    await dialog.get_by_label(choice, exact=True).check()
    if seconds is not None:
        await dialog.get_by_label("Seconds", exact=True).fill(seconds)
    if screen:
        await person.accessible(screen)
        await person.shoot(screen)
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog).to_be_hidden()


async def delete_for_everyone(person: Person, text: str, screen: str | None = None) -> None:
    await person.log().locator("li", has_text=text).get_by_role("button", name="Delete").click()
    dialog = person.page.get_by_role("dialog", name="Delete this message for everyone?")
    await expect(dialog).to_contain_text(text)
    if screen:
        await person.accessible(screen)
        await person.shoot(screen)
    await dialog.get_by_role("button", name="Delete for everyone").click()
    await expect(dialog).to_be_hidden()


async def test_disappearing_messages_and_delete_for_everyone(browser: Browser, server: Server) -> None:
    """Alice sets a timer, Bob's client learns it live; a message counts down on both sides, one
    is deleted for everyone, and one sent under a 2-second timer disappears from both screens."""
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    bob = await new_person(browser, server, "bob", viewport=PHONE, color_scheme="dark", is_mobile=True, has_touch=True)
    try:
        await alice.register()
        await bob.register()
        await alice.open_chat(bob)
        await bob.open_chat(alice)
        await set_timer(alice, "30 seconds", screen="11-alice-timer-dialog")
        for person in (alice, bob):
            await expect(timer_button(person)).to_have_text("Timer: 30 seconds")
        await expect(bob.page.get_by_text(re.compile(f"^New messages disappear 30 seconds .* Set by {alice.username}"))) \
            .to_be_visible()

        await alice.say("counting down")
        for person in (alice, bob):
            await person.sees("counting down")
            countdown = person.log().locator("li", has_text="counting down").locator(".expires time")
            await expect(countdown).to_have_text(re.compile(r"^0:[0-3]\d$"))
        await bob.accessible("a message counting down, on a phone, dark")
        await bob.shoot("12-bob-countdown-phone-dark")
        await delete_for_everyone(bob, "counting down", screen="13-bob-delete-for-everyone-phone-dark")
        for person in (alice, bob):
            await person.sees("counting down", count=0)

        await set_timer(alice, "Other", seconds="2")
        for person in (alice, bob):
            await expect(timer_button(person)).to_have_text("Timer: 2 seconds")
        await alice.say("this will vanish")
        await bob.sees("this will vanish")
        for person in (alice, bob):  # within 2 s, and a clock tick, of sending; the `deleted` frame may come later
            await expect(person.log().get_by_text("this will vanish", exact=True)).to_have_count(0, timeout=4_000)

        await set_timer(bob, "Off (never)")
        await expect(timer_button(alice)).to_have_text("Timer: off")
        await alice.say("this one stays")
        await bob.sees("this one stays")
        await expect(bob.log().locator("li", has_text="this one stays").locator(".expires time")).to_have_count(0)
    finally:
        await alice.context.close()
        await bob.context.close()
    assert alice.errors == [] and bob.errors == []


async def test_keyboard_login_and_history_paging_in_on_scroll(browser: Browser, server: Server) -> None:
    """Sixty messages, read on another device: the newest fifty show first, the rest page in when
    the log is scrolled to the top. (Unread ones would open at the first unread: test_browser_conversations.)"""
    alice, bob = await server.person("alice").register(), await server.person("bob").register()
    for n in range(60):
        answer = await alice.api("POST", "/api/send-message/", json={"to": bob.username, "message": f"note {n}"})
        assert answer.status_code == 201, answer.text
    elsewhere = await bob.connect()
    await elsewhere.send({"type": "read", "with": alice.username, "up_to": answer.json()["id"]})
    await elsewhere.send({"type": "ping"})
    await elsewhere.expect("pong")  # the receipt is stored: frames are handled in order
    person = await new_person(browser, server, "bob", viewport=PHONE)
    try:
        await expect(person.page.get_by_label("Username")).to_be_visible()  # React has rendered
        await person.page.keyboard.press("Tab")
        await expect(person.page.get_by_label("Username")).to_be_focused()  # the first stop
        await person.page.keyboard.type(bob.username)
        await person.page.keyboard.press("Tab")
        await person.page.keyboard.type(bob.phrase)
        await person.page.keyboard.press("Enter")      # the form's first button: Log in
        conversation = person.page.get_by_role("button", name=re.compile(alice.username))
        await expect(conversation).to_contain_text("note 59")
        await expect(conversation).not_to_contain_text("unread")
        await conversation.focus()
        await person.page.keyboard.press("Enter")
        items = person.log().locator("li[data-id]")
        await expect(items).to_have_count(50)
        await expect(items.first).to_contain_text("note 10")
        await person.log().evaluate("log => log.scrollTo(0, 0)")
        await expect(items).to_have_count(60)
        await expect(items.first).to_contain_text("note 0")
        await expect(person.log().get_by_role("button", name="Show older messages")).to_have_count(0)
    finally:
        await person.context.close()
    assert person.errors == []


async def test_the_policy_is_in_force_and_reported(browser: Browser, server: Server) -> None:
    """The check that the client breaks no rule must be able to fail: a script added inline to the
    page is refused, reported, and does not run."""
    person = await new_person(browser, server, "carol", viewport=DESKTOP)
    try:
        await expect(person.page.get_by_label("Username")).to_be_visible()
        with contextlib.suppress(Exception):  # Playwright waits for the refused script's load event
            await person.page.add_script_tag(content="window.injected = true")
        await soon(lambda: bool(person.violations))
        assert person.violations[0].startswith("script-src-elem blocked inline"), person.violations
        assert await person.page.evaluate("() => window.injected") is None
        person.violations.clear()  # provoked on purpose: not a failure of this story
    finally:
        await person.context.close()


async def soon(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Until the browser has reported what `condition` looks for."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


FRAMER = """<!doctype html><title>Win a prize</title><p>Click the button to claim your prize!</p>
<iframe id=victim src="{target}" width=800 height=600></iframe>"""


@contextlib.asynccontextmanager
async def another_origin(html: str) -> AsyncIterator[str]:
    """A page on another port of the same host: the same site as the server, another origin."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = html.encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    framer = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{framer.sockets[0].getsockname()[1]}/"
    finally:
        framer.close()
        await framer.wait_closed()


async def test_a_page_of_another_origin_cannot_frame_the_client(browser: Browser, server: Server) -> None:
    """The review's attack: Alice is logged in; a page on another port of the same host frames the
    client under a decoy, to have her click Log out (which erases both sides). The frame stays empty."""
    alice = await new_person(browser, server, "alice", viewport=DESKTOP)
    try:
        await alice.register()
        async with another_origin(FRAMER.format(target=server.http_url + "/")) as decoy:
            framing = await alice.context.new_page()
            refused: list[str] = []
            framing.on("console", lambda message: refused.append(message.text))
            await framing.goto(decoy)
            await expect(framing.get_by_text("claim your prize")).to_be_visible()
            await soon(lambda: any("frame-ancestors 'none'" in text for text in refused))
            victim = framing.frame_locator("#victim")
            await expect(victim.get_by_role("button", name="Log out")).to_have_count(0)
            await expect(victim.get_by_label("Username")).to_have_count(0)
        await expect(alice.page.get_by_role("status")).to_have_text("Connected")  # her own tab is untouched
    finally:
        await alice.context.close()
