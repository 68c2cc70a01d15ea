"""What the browser tests share: Debian's Chromium driven by Playwright, people with a browser
context each, axe-core scans and screenshots (var/screens, or SECURE_LINK_SCREENS: `make screens`
writes docs/screens)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any
from collections.abc import AsyncIterator, Iterator

import pytest
from PIL import Image
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, async_playwright, expect

from secure_link.config import PROJECT_ROOT, Settings

from ..story import PHRASE, Server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
AXE = PROJECT_ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
SCREENS = Path(os.environ.get("SECURE_LINK_SCREENS") or PROJECT_ROOT / "var" / "screens")
DESKTOP = {"width": 1000, "height": 640}
PHONE = {"width": 390, "height": 720}
PHONE_DARK: dict[str, Any] = {"viewport": PHONE, "color_scheme": "dark", "is_mobile": True, "has_touch": True}


HOW_TO_GET = {"/usr/bin/chromium": "sudo apt-get install chromium",
              "the built web client": "install Node.js 20+ with npm, then `make web`",
              "web/node_modules/axe-core": "install Node.js 20+ with npm, then `make web`"}


def _require(condition: bool, what: str) -> None:
    """Missing parts fail in CI (which installs them) and skip elsewhere."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing (make test installs it)")
    pytest.skip(f"{what} is missing: {HOW_TO_GET.get(what, 'run `make test`')}")


@pytest.fixture(scope="module")
async def browser(settings: Settings) -> AsyncIterator[Browser]:
    """One Chromium for the module; Playwright stops it and its driver in `finally`."""
    _require(CHROMIUM.exists(), "/usr/bin/chromium")
    _require((settings.web_root / "index.html").exists(), "the built web client")
    _require(AXE.exists(), "web/node_modules/axe-core")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


# Runs in every frame before the page's own scripts (through DevTools, so the page's policy does not
# apply to it): each violation of the policy is reported to the test at once, and survives reloads.
REPORT_VIOLATIONS = """document.addEventListener("securitypolicyviolation", (event) =>
  window.reportViolation(`${event.effectiveDirective} blocked ${event.blockedURI || "inline"} in ${document.URL}`));"""


class Person:
    """One person: a browser context of their own, every error their page logs, and every
    violation of the page's Content-Security-Policy (which Chromium logs as an error too)."""

    def __init__(self, name: str, context: BrowserContext, page: Page) -> None:
        self.username = f"{name}_{os.urandom(3).hex()}"
        self.context, self.page = context, page
        self.errors: list[str] = []
        self.violations: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} at {message.location.get('url')}")

    def log(self):  # type: ignore[no-untyped-def]
        return self.page.get_by_role("log")

    async def register(self) -> None:
        await self.page.get_by_label("Username").fill(self.username)
        await self.page.get_by_label("Phrase").fill(PHRASE)
        await self.page.get_by_role("button", name="Register").click()
        await expect(self.page.get_by_role("status")).to_have_text("Connected")

    async def log_in(self, phrase: str = PHRASE) -> None:
        await self.page.get_by_label("Username").fill(self.username)
        await self.page.get_by_label("Phrase").fill(phrase)
        await self.page.get_by_role("button", name="Log in").click()
        await expect(self.page.get_by_role("status")).to_have_text("Connected")

    async def open_chat(self, peer: Person) -> None:
        await self.page.get_by_label("Start a conversation with").fill(peer.username)
        await self.page.get_by_label("Start a conversation with").press("Enter")
        await expect(self.page.get_by_role("heading", name=peer.username)).to_be_visible()

    async def say(self, text: str) -> None:
        """Type and send with the keyboard alone."""
        box = self.page.get_by_label("Message", exact=True)
        await box.fill(text)
        await box.press("Enter")

    async def sees(self, text: str, count: int = 1) -> None:
        await expect(self.log().get_by_text(text, exact=True)).to_have_count(count)

    async def shoot(self, name: str) -> None:
        SCREENS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SCREENS / f"{name}.png"))

    async def accessible(self, screen: str) -> None:
        """axe-core finds no serious or critical violation on what is shown now (axe is loaded by an
        init script: the page's policy refuses a script tag added to it, as it should)."""
        result = await self.page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
        bad = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]])
               for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert not bad, f"{screen}: {bad}"


# Everyone a story made: `no_policy_violations` checks them all once the story ends.
PEOPLE: list[Person] = []


@pytest.fixture(autouse=True)
def no_policy_violations() -> Iterator[None]:
    """No story may break the page's Content-Security-Policy: each violation is a failure (the
    story that provokes one on purpose clears what it provoked)."""
    PEOPLE.clear()
    yield
    broken = {person.username: person.violations for person in PEOPLE if person.violations}
    PEOPLE.clear()
    assert not broken, f"Content-Security-Policy violations: {broken}"


async def new_person(browser: Browser, server: Server, name: str, **options: Any) -> Person:
    context = await browser.new_context(base_url=server.http_url, **options)
    person = Person(name, context, await context.new_page())
    PEOPLE.append(person)
    await context.expose_function("reportViolation", lambda violation: person.violations.append(violation))
    await context.add_init_script(REPORT_VIOLATIONS)
    await context.add_init_script(path=str(AXE))
    await person.page.goto("/")
    return person


# Hides or shows the page as a switch of tabs would (Chromium headless never hides one itself).
HIDE = """(hidden) => {
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => hidden ? "hidden" : "visible" });
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def png(name: str) -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (40, 120, 200)).save(buffer, "PNG")
    return {"name": name, "mimeType": "image/png", "buffer": buffer.getvalue()}


async def start_chat(person: Person, username: str) -> None:
    field = person.page.get_by_label("Start a conversation with")
    await field.fill(username)
    await field.press("Enter")
    await expect(person.page.get_by_role("heading", name=username)).to_be_visible()


def composer(person: Person):  # type: ignore[no-untyped-def]
    return person.page.get_by_label("Message", exact=True)
